#!/usr/bin/env bash
# Create .venv (if needed) and install pixtill, its local-model extras and its development tools.
# Everything the demo and the tests need is installed here, so a fresh clone needs nothing else.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
# Headless Chromium and its driver for the viewer's browser tests (Debian packages; skipped when
# present, and when this is not a root shell on an apt system: those tests then skip themselves).
if ! command -v chromedriver >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 \
    && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null
fi
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
# torch first and pinned: the CPU wheel on this kind of machine. Any other torch spec pulls
# gigabytes of CUDA packages; with 2.13.0 installed, the `local` extra adds nothing torch-wise.
.venv/bin/python -m pip install --quiet "torch==2.13.0"
.venv/bin/python -m pip install --quiet -e ".[dev,local,quality,ocr,ray]"
