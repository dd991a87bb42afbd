"""Distribution matching (DM) for a DDiF, FreD or pixel synthetic set.

    python DM/main_DM.py --synset ddif --dataset FashionMNIST --ipc 1
Flags left unset take their value from hyper_params.py; see --help.
"""
from common.cli import run_main
from common.distill import main as distill


def main(argv=None):
    return distill("DM", argv, __doc__)


if __name__ == "__main__":
    run_main(main)
