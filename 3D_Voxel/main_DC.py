"""Gradient matching (DC) on voxel grids for a DDiF (3-D fields over d, h, w), FreD (3-D DCT) or pixel set.

    python 3D_Voxel/main_DC.py --synset ddif --dataset ModelNet10 --ipc 1
    python 3D_Voxel/main_DC.py --synset ddif --dataset VoxelFashionMNIST --model Conv3DNetW32 --res 16
Defaults: dataset ModelNet10 (32^3 occupancy), model Conv3DNet. Flags left unset take their value from
hyper_params.py (voxels: no augmentation, 1,000 iterations evaluated every 500 by networks trained 300 epochs);
see --help. TM runs on voxels through TM/main_TM.py with the same --dataset.
"""
from common.args import build_parser, resolve_args
from common.cli import run_main
from common.dc import GradientMatching, add_dc_args, loops_for_ipc
from common.distill import run_distillation


def parser():
    p = build_parser(__doc__, add_dc_args)
    p.set_defaults(dataset="ModelNet10", model="Conv3DNet")
    return p


def main(argv=None):
    ns = parser().parse_args(argv)
    ns.outer_loop, ns.inner_loop = loops_for_ipc(ns.ipc, ns.outer_loop, ns.inner_loop)  # fail before any work
    args = resolve_args(ns, "DC")
    return run_distillation(args, GradientMatching)


if __name__ == "__main__":
    run_main(main)
