"""Train expert networks on real data and save their trajectories for trajectory matching (TM).

    python TM/buffer.py --dataset CIFAR10 --model ConvNet --zca --num_experts 100 --train_epochs 50

Each expert is a fresh --model trained by SGD (--lr_teacher, --mom, --l2, batches of --batch_train, DSA)
for --train_epochs epochs; its flat parameters after every epoch (and at initialisation) are kept, and every
--save_interval experts are written to {buffer_path}/{dataset}[/{subset}][_NO_ZCA]/{model}/replay_buffer_{n}.pt.
A rerun keeps the complete files already there and continues with the next expert and file index; expert
i's seeds derive from --seed and i, so the experts do not depend on how the work was split across runs.
"""
from __future__ import annotations

import argparse
import os
import time

from tqdm.auto import tqdm

from common import dist
from common.args import FrozenArgs, build_parser, fill_from_table, resolve_data
from common.augment import DSA
from common.cli import run_main
from common.data import recorded_transform
from common.distill import load_real
from common.domains import domain_of
from common.errors import UserError, choice_error
from common.experts import (RECIPE_KEYS, ParamLayout, file_name, import_buffers, numbered_files,
                            original_epochs, read_expert_file, save_expert_file, train_expert)
from common.networks import get_network, list_networks
from common.paths import expert_dir
from common.utils import derive_seed


def add_buffer_args(p: argparse.ArgumentParser) -> None:
    p.add_argument_group("network").add_argument(
        "--model", default=None, help="expert network, as in the TM runs that will use the experts (see "
                                      "common/networks.py; None: the domain's)")
    g = p.add_argument_group("experts")
    g.add_argument("--buffer_path", default="buffers", help="root of the expert folders")
    g.add_argument("--num_experts", type=int, default=100)
    g.add_argument("--train_epochs", type=int, default=50)
    g.add_argument("--lr_teacher", type=float, default=0.01, help="SGD learning rate of the experts")
    g.add_argument("--mom", type=float, default=0.0, help="SGD momentum")
    g.add_argument("--l2", type=float, default=0.0, help="weight decay")
    g.add_argument("--batch_train", type=int, default=256)
    g.add_argument("--save_interval", type=int, default=10, help="experts per replay_buffer_{n}.pt")
    g.add_argument("--import", dest="import_dir", default=None, metavar="DIR",
                   help="instead of training: convert the original code's replay_buffer_<n>.pt files in DIR (MTT, "
                        "and the DDiF/FreD copies of its buffer.py) into this project's, in the folder the flags name; "
                        "--model, --dataset, --res, --zca must be those the experts were trained with, and "
                        "--lr_teacher, --mom, --l2, --batch_train, --dsa say how (the files do not record it)")


def build_buffer_parser() -> argparse.ArgumentParser:
    return build_parser(__doc__, role="buffer", extra=(add_buffer_args,))


def resolve_buffer_args(a: argparse.Namespace) -> FrozenArgs:
    values = dict(vars(a))
    domain = resolve_data(values)
    values["model"] = values["model"] or domain.default_model
    if values["model"] not in list_networks():
        raise choice_error("model", values["model"], list_networks())
    for k in ("num_experts", "train_epochs", "batch_train", "save_interval"):
        if values[k] < 1:
            raise UserError(f"--{k} must be >= 1, got {values[k]}")
    if values["lr_teacher"] <= 0:
        raise UserError(f"--lr_teacher must be > 0, got {values['lr_teacher']}")
    fill_from_table(values, "TM", domain, ("dsa",), lambda m: None)  # augment as the TM runs do
    return FrozenArgs(**values).freeze()


def header_for(args, real, net) -> dict:
    layout = ParamLayout.of(net)
    return dict(dataset=args.dataset, subset=args.subset, res=args.res, model=args.model, channel=real.channel,
                num_classes=real.num_classes, im_size=list(real.im_size), num_params=layout.num_params,
                param_shapes=layout.as_list(), zca=args.zca, transform=real.transform, train_epochs=args.train_epochs,
                lr_teacher=args.lr_teacher, mom=args.mom, l2=args.l2, batch_train=args.batch_train,
                dsa=args.dsa_strategy if args.dsa else None, n_train_per_class=args.n_train_per_class, seed=args.seed,
                **domain_of(args.dataset).recipe(args))


def existing_experts(folder: str, header: dict, domain_keys=()) -> tuple[int, int]:
    """(experts already there, next file index); UserError if a file is unreadable or has another recipe (that of
    RECIPE_KEYS and ``domain_keys``, what the domain's options made of the data)."""
    files = numbered_files(folder)
    count = 0
    for _, path in files:
        obj = read_expert_file(path, mmap=True)
        obj = dict(obj, transform=recorded_transform(obj))  # files from before the transform was recorded
        keys = RECIPE_KEYS + tuple(domain_keys)
        diff = [f"{k} {obj.get(k)!r} (now {header[k]!r})" for k in keys if obj.get(k) != header[k]]
        if diff:
            how = ("this code no longer makes such experts; " if obj["transform"] != header["transform"] else
                   "continue with the same flags, or ")
            raise UserError(f"{path} holds experts made with {', '.join(diff)}; {how}use another --buffer_path (or "
                            f"delete that folder)")
        count += len(obj["trajectories"])
    return count, (files[-1][0] + 1 if files else 0)


def import_into(args, folder: str, header: dict, layout: ParamLayout) -> str:
    """buffer.py --import: the original files of args.import_dir converted into ``folder`` (one process)."""
    if dist.world_size() > 1:
        raise UserError("--import converts files in one process; run it without torchrun")
    found = numbered_files(args.import_dir)
    if not found:
        raise UserError(f"--import {args.import_dir} holds no replay_buffer_<n>.pt files")
    # the recipe the files do not record comes from the flags; the epochs from the first file
    header = dict(header, train_epochs=original_epochs(found[0][1]))
    existing_experts(folder, header, domain_of(args.dataset).recipe(args))  # a folder of another recipe is refused
    n = import_buffers(args.import_dir, folder, header, layout, args.progress)
    print(f"{n} file(s) of {args.import_dir} imported into {folder}" + ("" if n else " (all were there already)"))
    return folder


def main(argv=None) -> str:
    """Train the experts; under torchrun every process trains its share of the files (file j of this build on
    rank j % world size, each expert seeded by --seed and its index as always), so the files are those one
    process writes; only rank 0 writes log.txt."""
    args = resolve_buffer_args(build_buffer_parser().parse_args(argv))
    device = dist.setup(args.device)
    folder = expert_dir(args)
    with dist.main_first():  # rank 0 fills the clip / voxel caches, the others read them
        real = load_real(args).to(device)
    net = get_network(args.model, real.channel, real.num_classes, real.im_size)
    header = header_for(args, real, net)
    if args.import_dir:
        return import_into(args, folder, header, ParamLayout.of(net))
    # rank 0 reads the folder (the others get its answer) before any rank writes to it
    done, next_file = dist.broadcast_object(
        existing_experts(folder, header, domain_of(args.dataset).recipe(args)) if dist.is_main() else None)
    os.makedirs(folder, exist_ok=True)

    def log(msg: str) -> None:
        line = f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] {msg}"
        tqdm.write(line if dist.world_size() == 1 else f"[rank {dist.rank()}] {line}")
        if dist.is_main():
            with open(os.path.join(folder, "log.txt"), "a") as f:
                f.write(line + "\n")

    if done >= args.num_experts:
        log(f"{folder} already holds {done} experts (>= --num_experts {args.num_experts}); nothing to do")
        return folder
    log(f"training experts {done}..{args.num_experts - 1} of {args.model} on {args.dataset} "
        f"({len(real.labels_train)} images, {args.train_epochs} epochs, lr {args.lr_teacher}, "
        f"{header['num_params']} parameters) into {folder}" + (f"; keeping {done} from earlier runs" if done else "")
        + (f"; {dist.world_size()} processes" if dist.world_size() > 1 else ""))
    dsa = DSA(args.dsa_strategy) if args.dsa else None
    # the experts of this build, one file per save_interval of them; this rank's files
    files = [list(range(s, min(s + args.save_interval, args.num_experts)))
             for s in range(done, args.num_experts, args.save_interval)]
    mine = dist.shard(list(enumerate(files)))
    bar = tqdm(total=sum(len(f) for _, f in mine) * args.train_epochs, desc="experts",
               disable=not args.progress or not dist.is_main(), mininterval=1)
    skipped = 0  # one process: file numbers taken meanwhile by another run are skipped
    for j, experts in mine:
        trajectories, accs = [], []
        for i in experts:
            t = time.time()

            def on_epoch(epoch, acc, i=i):
                bar.update(1)
                bar.set_postfix(expert=i, epoch=epoch + 1, test_acc=f"{100 * acc:.1f}%")

            traj, acc = train_expert(args.model, real, args.train_epochs, args.lr_teacher, args.mom, args.l2,
                                     args.batch_train, dsa, derive_seed(args.seed, "expert", i), device, on_epoch)
            trajectories.append(traj)
            accs.append(acc)
            log(f"expert {i}: test accuracy {100 * acc:.2f}% after {args.train_epochs} epochs "
                f"({time.time() - t:.0f}s)")
        while dist.world_size() == 1 and os.path.exists(os.path.join(folder, file_name(next_file + j + skipped))):
            skipped += 1
        path = os.path.join(folder, file_name(next_file + j + skipped))
        save_expert_file(path, header, trajectories, experts, accs)
        log(f"saved {path} (experts {experts[0]}..{experts[-1]})")
    bar.close()
    dist.barrier()  # every file is written when any rank returns
    return folder


if __name__ == "__main__":
    run_main(main)
