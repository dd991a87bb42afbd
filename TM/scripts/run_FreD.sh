#!/usr/bin/env bash
# FreD + trajectory matching. Build the experts first (TM/scripts/run_buffer.sh, same --dataset, --model and
# --zca/--no-zca). Flags not given take their paper defaults from hyper_params.py; anything passed to this
# script is added to (and overrides) the command line, e.g.
#   bash run_FreD.sh --dataset CIFAR10 --ipc 10 --device cuda
#   bash run_FreD.sh --dataset FashionMNIST --no-zca
# The papers whiten CIFAR-10/100 with ZCA for TM, so --zca is explicit below.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/launch.sh  # PYTHON, TORCHRUN (several processes)
exec "${LAUNCH[@]}" TM/main_TM.py --synset fred --dataset "${DATASET:-CIFAR10}" --ipc "${IPC:-1}" --model ConvNet --zca \
  --buffer_path buffers "$@"
