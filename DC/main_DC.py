"""Dataset condensation with gradient matching (DC) for a DDiF, FreD or pixel synthetic set.

    python DC/main_DC.py --synset ddif --dataset FashionMNIST --ipc 1
Flags left unset take their value from hyper_params.py; the outer/inner loop lengths come from the ipc
(1, 10, 20, 30, 40, 50) unless --outer_loop/--inner_loop are given. See --help.
"""
from common.cli import run_main
from common.distill import main as distill


def main(argv=None):
    return distill("DC", argv, __doc__)


if __name__ == "__main__":
    run_main(main)
