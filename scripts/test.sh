#!/usr/bin/env bash
# Set up (scripts/setup.sh), type-check and run the whole test suite. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m ruff check conveyor_integrations tests scripts examples
.venv/bin/python -m mypy
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
