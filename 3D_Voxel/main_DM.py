"""Distribution matching (DM) on voxel grids for a DDiF (3-D fields over d, h, w), FreD (3-D DCT) or pixel set.

    python 3D_Voxel/main_DM.py --synset ddif --dataset ModelNet10 --ipc 1
    python 3D_Voxel/main_DM.py --synset fred --dataset 3DMNIST --model Conv3DNetW64
Defaults: dataset ModelNet10 (32^3 occupancy), model Conv3DNet. Flags left unset take their value from
hyper_params.py (voxels: no augmentation, 20,000 iterations evaluated every 2,000 by networks trained 1,000
epochs; 3D-MNIST as FreD's script); see --help.
"""
from common.args import build_parser, resolve_args
from common.cli import run_main
from common.distill import run_distillation
from common.dm import DistributionMatching


def parser():
    p = build_parser(__doc__)
    p.set_defaults(dataset="ModelNet10", model="Conv3DNet")
    return p


def main(argv=None):
    args = resolve_args(parser().parse_args(argv), "DM")
    return run_distillation(args, DistributionMatching)


if __name__ == "__main__":
    run_main(main)
