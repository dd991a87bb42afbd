#!/usr/bin/env bash
# Set up, then run the whole test suite (CPU). Extra flags go to pytest.
set -euo pipefail
cd "$(dirname "$0")"
bash setup.sh
.venv/bin/python -m pytest -q "$@"
