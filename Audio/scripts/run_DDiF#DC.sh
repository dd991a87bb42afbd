#!/usr/bin/env bash
# DDiF + gradient matching (DC) on spoken commands (Mini Speech Commands, 1 x 64 x 64
# log spectrograms, ConvNetD4). Flags not given take their defaults from hyper_params.py; anything passed to this
# script is added to (and overrides) the command line, e.g. a short run on a CPU:
#   bash run_DDiF#DC.sh --ipc 1 --Iteration 200 --device cpu
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/launch.sh  # PYTHON, TORCHRUN (several processes)
exec "${LAUNCH[@]}" Audio/main_DC.py --synset ddif --dataset "${DATASET:-MiniSpeechCommands}" --ipc "${IPC:-10}" \
  --model ConvNetD4 "$@"
