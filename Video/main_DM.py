"""Distribution matching (DM) on video clips for a DDiF (3-D fields over t, h, w), FreD (3-D DCT) or pixel set.

    python Video/main_DM.py --synset ddif --dataset miniUCF101 --ipc 1 --dipc 1
    python Video/main_DM.py --synset ddif --dataset MovingFashionMNIST --model ConvNet3DW32
Defaults: dataset MovingFashionMNIST (build it once with `python -m common.data.moving_fmnist`), model
ConvNet3D. Flags left unset take their value from hyper_params.py (video: no DSA, 5,000 iterations, 64 real
clips per class, 3 evaluation networks of 500 epochs); see --help. DC and TM run on clips through DC/main_DC.py
and TM/main_TM.py with the same --dataset.
"""
from common.args import build_parser, resolve_args
from common.cli import run_main
from common.distill import run_distillation
from common.dm import DistributionMatching


def parser():
    p = build_parser(__doc__)
    p.set_defaults(dataset="MovingFashionMNIST", model="ConvNet3D")
    return p


def main(argv=None):
    args = resolve_args(parser().parse_args(argv), "DM")
    return run_distillation(args, DistributionMatching)


if __name__ == "__main__":
    run_main(main)
