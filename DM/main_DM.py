"""Distribution matching (DM) for a DDiF, FreD or pixel synthetic set.

    python DM/main_DM.py --synset ddif --dataset FashionMNIST --ipc 1
Flags left unset take their value from hyper_params.py; see --help.
"""
from common.args import build_parser, resolve_args
from common.cli import run_main
from common.distill import run_distillation
from common.dm import DistributionMatching


def main(argv=None):
    args = resolve_args(build_parser(__doc__).parse_args(argv), "DM")
    run_distillation(args, DistributionMatching)


if __name__ == "__main__":
    run_main(main)
