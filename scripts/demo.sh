#!/usr/bin/env bash
# Set up .venv (first run only) and run `pixtill demo`: an offline pipeline over sample images
# (captions, a question per image, an image generated from each caption) that writes a dataset.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || bash scripts/setup.sh
.venv/bin/pixtill demo "$@"
