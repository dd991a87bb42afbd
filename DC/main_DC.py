"""Dataset condensation with gradient matching (DC) for a DDiF, FreD or pixel synthetic set.

    python DC/main_DC.py --synset ddif --dataset FashionMNIST --ipc 1
Flags left unset take their value from hyper_params.py; the outer/inner loop lengths come from the ipc
(1, 10, 20, 30, 40, 50) unless --outer_loop/--inner_loop are given. See --help.
"""
from common.args import build_parser, resolve_args
from common.cli import run_main
from common.dc import GradientMatching, add_dc_args, loops_for_ipc
from common.distill import run_distillation


def main(argv=None):
    ns = build_parser(__doc__, add_dc_args).parse_args(argv)
    ns.outer_loop, ns.inner_loop = loops_for_ipc(ns.ipc, ns.outer_loop, ns.inner_loop)  # fail before any work
    args = resolve_args(ns, "DC")
    run_distillation(args, GradientMatching)


if __name__ == "__main__":
    run_main(main)
