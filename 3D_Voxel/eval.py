"""Evaluate a distilled voxel set (or random real shapes) and export it, one folder per class.

    python 3D_Voxel/eval.py --ckpt runs/DC/ModelNet10/<run>/synset_best.pt --res 64
decodes a DDiF set at 64^3 and tests on shapes voxelised at 64^3; --export_dir DIR writes every shape as a
.npy occupancy grid and a PNG of its three projections. See --help.
"""
from common.cli import run_main
from common.eval_main import main

if __name__ == "__main__":
    run_main(main)
