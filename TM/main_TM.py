"""Trajectory matching (TM) for a DDiF, FreD or pixel synthetic set.

    bash TM/scripts/run_buffer.sh --dataset CIFAR10          # the experts first
    python TM/main_TM.py --synset ddif --dataset CIFAR10 --ipc 1 --zca
Flags left unset take their value from hyper_params.py; see --help.
"""
from common.args import build_parser, resolve_args
from common.cli import run_main
from common.distill import run_distillation
from common.experts import check_expert_folder
from common.paths import expert_dir
from common.tm import TrajectoryMatching, add_tm_args, check_tm_args


def main(argv=None):
    args = resolve_args(build_parser(__doc__, add_tm_args).parse_args(argv), "TM")
    check_tm_args(args)
    # before loading the data and the DDiF warm start
    check_expert_folder(expert_dir(args), args, args.max_files, args.max_start_epoch - 1 + args.expert_epochs)
    run_distillation(args, TrajectoryMatching)


if __name__ == "__main__":
    run_main(main)
