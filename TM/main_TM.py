"""Trajectory matching (TM) for a DDiF, FreD or pixel synthetic set.

    bash TM/scripts/run_buffer.sh --dataset CIFAR10          # the experts first
    python TM/main_TM.py --synset ddif --dataset CIFAR10 --ipc 1 --zca
Flags left unset take their value from hyper_params.py; see --help.
"""
from common.cli import run_main
from common.distill import main as distill


def main(argv=None):
    return distill("TM", argv, __doc__)


if __name__ == "__main__":
    run_main(main)
