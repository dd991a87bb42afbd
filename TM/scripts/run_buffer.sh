#!/usr/bin/env bash
# Expert trajectories for trajectory matching (TM): --num_experts networks trained on real data, saved every
# epoch. Flags given here are the papers' defaults; anything passed to this script is added to (and
# overrides) the command line, e.g.
#   bash run_buffer.sh --dataset CIFAR10 --device cuda
#   bash run_buffer.sh --dataset FashionMNIST --no-zca --num_experts 20
# The papers use ZCA for CIFAR-10/100 (kept explicit below); build the experts with the same --dataset,
# --model and --zca/--no-zca as the TM runs that will read them. DSA is on for images and off for video (pass
# --dsa/--no-dsa to choose). Video: bash run_buffer.sh --dataset MovingFashionMNIST --model ConvNet3DW32 --no-zca
# A rerun continues after the files there.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/launch.sh  # PYTHON, TORCHRUN (several processes)
exec "${LAUNCH[@]}" TM/buffer.py --dataset "${DATASET:-CIFAR10}" --model ConvNet --zca --num_experts 100 \
  --train_epochs 50 --lr_teacher 0.01 --mom 0 --l2 0 --batch_train 256 --save_interval 10 \
  --buffer_path buffers "$@"
