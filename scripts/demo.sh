#!/usr/bin/env bash
# Set up .venv (first run only) and run the offline example over sample images.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || bash scripts/setup.sh
.venv/bin/python examples/caption_sample_images.py "$@"
