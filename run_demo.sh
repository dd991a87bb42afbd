#!/usr/bin/env bash
# The main job: set up, then distil Fashion-MNIST (ipc 1, DM) with DDiF, FreD and pixel, evaluate them and
# the random-real baseline, print the accuracy table. Extra flags go to DM/demo.py (e.g. --device cuda).
set -euo pipefail
cd "$(dirname "$0")"
bash setup.sh
export THP_MEM_ALLOC_ENABLE=1
.venv/bin/python -m DM.demo "$@"
