#!/usr/bin/env bash
# DDiF + gradient matching (DC). Flags not given take their paper defaults from hyper_params.py; anything
# passed to this script is added to (and overrides) the command line, e.g.
#   bash run_DDiF.sh --dataset CIFAR10 --ipc 10 --device cuda
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/launch.sh  # PYTHON, TORCHRUN (several processes)
exec "${LAUNCH[@]}" DC/main_DC.py --synset ddif --dataset "${DATASET:-CIFAR10}" --ipc "${IPC:-1}" --model ConvNet "$@"
