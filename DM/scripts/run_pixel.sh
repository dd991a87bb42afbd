#!/usr/bin/env bash
# pixel + distribution matching. Flags not given take their paper defaults from hyper_params.py; anything
# passed to this script is added to (and overrides) the command line, e.g.
#   bash run_pixel.sh --dataset CIFAR10 --ipc 10 --device cuda
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/launch.sh  # PYTHON, TORCHRUN (several processes)
exec "${LAUNCH[@]}" DM/main_DM.py --synset pixel --dataset "${DATASET:-CIFAR10}" --ipc "${IPC:-1}" --model ConvNet "$@"
