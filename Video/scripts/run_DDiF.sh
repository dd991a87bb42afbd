#!/usr/bin/env bash
# DDiF + distribution matching on video (DDiF's Video/ experiment: miniUCF101, ConvNet3D, one clip per class).
# Flags not given take their defaults from hyper_params.py; anything passed to this script is added to (and
# overrides) the command line, e.g. the offline set on a CPU:
#   bash run_DDiF.sh --dataset MovingFashionMNIST --model ConvNet3DW32 --device cpu
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/launch.sh  # PYTHON, TORCHRUN (several processes)
exec "${LAUNCH[@]}" Video/main_DM.py --synset ddif --dataset "${DATASET:-miniUCF101}" --ipc "${IPC:-1}" --model ConvNet3D \
  --short_clips shrink --dipc 1 "$@"
