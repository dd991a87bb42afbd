#!/usr/bin/env bash
# pixel + DC on voxel grids (DDiF's 3D_Voxel experiment: ModelNet10 32^3 occupancy, Conv3DNet, ipc 1).
# Flags not given take their defaults from hyper_params.py; anything passed to this script is added to (and
# overrides) the command line, e.g. the offline set on a CPU:
#   bash "run_pixel#DC.sh" --dataset VoxelFashionMNIST --model Conv3DNetW32 --res 16 --device cpu
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/launch.sh  # PYTHON, TORCHRUN (several processes)
exec "${LAUNCH[@]}" 3D_Voxel/main_DC.py --synset pixel --dataset "${DATASET:-ModelNet10}" --ipc "${IPC:-1}" \
  --model Conv3DNet "$@"
