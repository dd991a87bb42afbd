"""Distribution matching (DM) on voxel grids for a DDiF (3-D fields over d, h, w), FreD (3-D DCT) or pixel set.

    python 3D_Voxel/main_DM.py --synset ddif --dataset ModelNet10 --ipc 1
    python 3D_Voxel/main_DM.py --synset fred --dataset 3DMNIST --model Conv3DNetW64
Defaults: dataset ModelNet10 (32^3 occupancy), model Conv3DNet (the voxel domain's). Flags left unset take their
value from hyper_params.py (voxels: no augmentation, 20,000 iterations evaluated every 2,000 by networks trained 1,000
epochs; 3D-MNIST as FreD's script); see --help.
"""
from common.cli import run_main
from common.distill import main as distill


def main(argv=None):
    return distill("DM", argv, __doc__, dataset="ModelNet10")


if __name__ == "__main__":
    run_main(main)
