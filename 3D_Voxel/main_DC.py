"""Gradient matching (DC) on voxel grids for a DDiF (3-D fields over d, h, w), FreD (3-D DCT) or pixel set.

    python 3D_Voxel/main_DC.py --synset ddif --dataset ModelNet10 --ipc 1
    python 3D_Voxel/main_DC.py --synset ddif --dataset VoxelFashionMNIST --model Conv3DNetW32 --res 16
Defaults: dataset ModelNet10 (32^3 occupancy), model Conv3DNet (the voxel domain's). Flags left unset take their
value from hyper_params.py (voxels: no augmentation, 1,000 iterations evaluated every 500 by networks trained 300
epochs); see --help. TM runs on voxels through TM/main_TM.py with the same --dataset.
"""
from common.cli import run_main
from common.distill import main as distill


def main(argv=None):
    return distill("DC", argv, __doc__, dataset="ModelNet10")


if __name__ == "__main__":
    run_main(main)
