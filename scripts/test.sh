#!/usr/bin/env bash
# The whole test suite: lint, types, then pytest. Sets up .venv first if it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || bash scripts/setup.sh
.venv/bin/ruff check src tests examples benchmarks
.venv/bin/mypy src
.venv/bin/python -m pytest "$@"
