#!/usr/bin/env bash
# Create .venv (if needed) and install pixtill with its development tools into it.
# Everything the demo and the tests need is installed here, so a fresh clone needs nothing else.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[dev]"
