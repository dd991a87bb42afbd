"""Evaluate a saved synthetic set (any eval mode, any resolution -- and for video any frame count -- for DDiF),
or the random-real baseline, and optionally export the decoded set, one folder per class: a PNG per image, an
animated GIF per clip, a .npy grid and its projections per voxel shape. Flags left unset take the checkpoint's
values, then the evaluation protocol of hyper_params.py (as the run's own evaluations)."""
from __future__ import annotations

import json
from typing import Callable, Optional

import matplotlib
import torch

import hyper_params

from . import dist
from .args import FrozenArgs, build_parser, fill_from_table, resolve_data
from .atomic import atomic_path, write_text
from .augment import DSA
from .data import transform_mismatch
from .data.shifted import CORRUPTIONS, EXTRA_CORRUPTIONS, TEST_SETS, load_shifted
from . import released
from .distill import load_real
from .domains import DOMAINS, Domain, all_options
from .errors import UserError
from .evaluate import EvalConfig, evaluate_on, evaluate_pool, random_real, summarize
from .networks import get_eval_pool
from .objectives import OBJECTIVES

# taken from the checkpoint when not given
FROM_CHECKPOINT = ("dataset", "subset", "data_path", "zca", "model")


def add_eval_only_args(p) -> None:
    g = p.add_argument_group("eval.py")
    g.add_argument("--ckpt", help="synset_best.pt (or checkpoint.pt) of a run, or a set released by other code: "
                                  "MTT/DATM images_best.pt (labels_best.pt beside it), FreD res_*.pt, an official DDiF "
                                  "set")
    g.add_argument("--format", choices=released.FORMATS, default="auto",
                   help="the --ckpt file's format (auto: detected)")
    g.add_argument("--w0_initial", type=float, default=None,
                   help="official DDiF sets: the first sine layer's frequency (None: hyper_params.py's DDIF_ARCH)")
    g.add_argument("--w0", type=float, default=None, help="official DDiF sets: the other sine layers' frequency")
    g.add_argument("--random_real", action="store_true", help="evaluate ipc random real instances per class instead")
    g.add_argument("--ipc", type=int, default=1, help="with --random_real")
    g.add_argument("--whole_real", action="store_true",
                   help="train the networks on every real training instance instead (with --n_train_per_class: "
                        "that many per class): the ceiling a distilled set is measured against")
    g.add_argument("--model", help="default: the checkpoint's distillation model, else the domain's")
    g.add_argument("--objective", choices=list(OBJECTIVES), default=None,
                   help="whose hyper_params.py row gives the evaluation protocol (default: the checkpoint's; DM)")
    g.add_argument("--export_dir", help="write the decoded set here, one folder per class: PNGs (images), GIFs "
                                        "(clips), .npy grids and projection PNGs (voxels)")
    g.add_argument("--no_eval", action="store_true", help="only export")
    g.add_argument("--test_set", default="clean", choices=["clean", *TEST_SETS],
                   help="also test the same networks on a shifted test set: every corruption of a -C set at "
                        "--severity (and their mean), or CIFAR-10.1; the clean test set is always reported")
    g.add_argument("--severity", type=int, default=5, help="corruption severity, 1..5 (FreD's: 5)")
    g.add_argument("--corruptions", default="all",
                   help=f"'all' (the 15: {', '.join(CORRUPTIONS)}) or a comma-separated list (the 4 extra: "
                        f"{', '.join(EXTRA_CORRUPTIONS)})")
    g.add_argument("--plot", help="with --test_set: a bar plot of the accuracies (PNG) here")
    g.add_argument("--json_out", help="also write the results as JSON here")
    for domain in DOMAINS.values():
        for opt in domain.eval_options:
            opt.add_to(g)


def build_eval_parser():
    return build_parser(__doc__, role="eval", extra=(add_eval_only_args,))


def siren_frequencies(a) -> tuple[Optional[float], Optional[float]]:
    """--w0_initial/--w0 for an official DDiF set: the flags, else the DDIF_ARCH rows of the dataset and resolution
    when they agree."""
    if a.w0_initial is not None and a.w0 is not None:
        return a.w0_initial, a.w0
    rows = {(r["w0_initial"], r["w0"]) for (d, res, _), r in hyper_params.DDIF_ARCH.items()
            if d == a.dataset and (a.res is None or res == a.res)}
    if len(rows) != 1:
        return a.w0_initial, a.w0
    w0_initial, w0 = rows.pop()
    return (a.w0_initial if a.w0_initial is not None else w0_initial), (a.w0 if a.w0 is not None else w0)


def resolve_eval_args(a, meta: dict, log: Callable[[str], None] = lambda m: None) -> tuple[FrozenArgs, Domain]:
    """eval.py's flags: what is not given comes from the checkpoint's meta, then from the domain and the
    hyper_params.py row of the objective that made the set (the run's own evaluation protocol)."""
    values = dict(vars(a))
    values["resized"] = bool(a.res) or any(values.get(o) for d in DOMAINS.values() for o in d.size_options)
    for k in (*FROM_CHECKPOINT, "res", *all_options()):
        if values.get(k) is None:
            values[k] = meta.get(k)
    if not values["dataset"]:
        raise UserError("the checkpoint does not name its dataset; pass --dataset")
    values["data_path"] = values["data_path"] or "data"
    values["zca"] = bool(values["zca"])
    domain = resolve_data(values)
    values["model"] = values["model"] or domain.default_model
    values["objective"] = values["objective"] or meta.get("objective") or "DM"
    if values["lr_net"] is None:
        values["lr_net"] = meta.get("lr_net")  # the lr the run evaluated with (TM: its learned step size)
    fill_from_table(values, values["objective"], domain, hyper_params.EVAL_KEYS, log)
    return FrozenArgs(**values).freeze(), domain


def check_decoded(images, labels, real, path: str, size_flags: str) -> None:
    """A released set of decoded instances fits the dataset: channels, size, classes (one-line errors)."""
    if images.shape[1] != real.channel or images.dim() != 2 + len(real.im_size):
        raise UserError(f"{path} holds instances of {tuple(images.shape[1:])}; {real.name} has {real.channel} "
                        f"channel(s) of {tuple(real.im_size)}")
    if tuple(images.shape[2:]) != tuple(real.im_size):
        raise UserError(f"{path} holds instances of {tuple(images.shape[2:])}; {real.name}'s test instances are "
                        f"{tuple(real.im_size)} (pass {size_flags} to test at the set's size)")
    classes = labels.shape[1] if labels.dim() == 2 else int(labels.max()) + 1
    if (labels.dim() == 2 and classes != real.num_classes) or classes > real.num_classes:
        raise UserError(f"{path} has labels of {classes} classes; {real.name} has {real.num_classes}")


def main(argv=None) -> dict:
    a = build_eval_parser().parse_args(argv)
    if sum(map(bool, (a.ckpt, a.random_real, a.whole_real))) != 1:
        raise UserError("give one of --ckpt PATH (a synthetic-set checkpoint), --random_real or --whole_real")
    device = dist.setup(a.device)
    say = print if dist.is_main() else (lambda m: None)
    found = released.load(a.ckpt, a.format, *siren_frequencies(a)) if a.ckpt else None
    meta = dict(found.meta) if found else {}
    if found and found.lr is not None:
        meta.setdefault("lr_net", found.lr)
    if found and found.format != "native" and not a.dataset:
        raise UserError(f"{a.ckpt} ({found.format} format) does not name its dataset; pass --dataset")
    if found:
        say(found.describe(a.ckpt))
    args, domain = resolve_eval_args(a, meta, say)
    if meta and (why := transform_mismatch(meta, args.zca)):
        overridden = a.zca is not None and a.zca != meta.get("zca", False)
        raise UserError(f"the set in {a.ckpt} was distilled on images {why}; its accuracy on these test images "
                        f"would mean nothing ({'leave out --zca/--no-zca' if overridden else 'distil it again'})")
    size_flags = " / ".join(["--res", *(f"--{o}" for o in domain.size_options)])
    synset = found.synset if found else None
    if synset is not None and not synset.any_resolution and args.resized and (
            args.res != meta.get("res") or any(getattr(args, o) != meta.get(o) for o in domain.size_options)):
        raise UserError(f"a {synset.name} set decodes only at its own size {tuple(synset.im_size)}; {size_flags} "
                        f"are for DDiF sets")
    with dist.main_first():  # rank 0 fills the clip / voxel caches, the others read them
        real = load_real(args, test_only=not (args.random_real or args.whole_real))
    if found is not None and found.fields is not None:
        synset = found.synset_for(real.im_size)
    if synset is not None:
        if (synset.channel, synset.num_classes) != (real.channel, real.num_classes):
            raise UserError(f"the checkpoint holds a {synset.num_classes}-class {synset.channel}-channel set; "
                            f"{args.dataset} has {real.num_classes} classes and {real.channel} channels")
        synset.to(device)
        with torch.no_grad():
            images, labels = synset.get(res=real.im_size if args.resized else None)
        what = f"{synset.name} ({synset.n_per_class} per class) from {a.ckpt}"
    elif found is not None:
        images, labels = found.images, found.labels
        check_decoded(images, labels, real, a.ckpt, size_flags)
        what = f"{found.format} set ({found.per_class()} per class) from {a.ckpt}"
    elif args.whole_real:
        images, labels = real.images_train[:], real.labels_train
        what = f"the whole training set ({len(labels)} instances)"
    else:
        images, labels = random_real(real, args.ipc, args.seed)
        what = f"random real, ipc {args.ipc}"
    if tuple(images.shape[2:]) != tuple(real.im_size):
        raise UserError(f"the set decodes at {tuple(images.shape[2:])} but the test instances are {real.im_size}; "
                        f"pass {size_flags}")
    images, how = domain.transform_for_eval(images, args, args.seed)
    what += how
    if args.export_dir and dist.is_main():
        domain.export(images, labels if labels.dim() == 1 else labels.argmax(1), real, args.export_dir)  # soft: top
        print(f"exported {len(images)} {domain.noun} to {args.export_dir}")
    results = {}
    if not args.no_eval:
        cfg = EvalConfig(epochs=args.epoch_eval_train, num_eval=args.num_eval, device=device, lr=args.lr_net,
                         dsa=DSA(args.dsa_strategy) if args.dsa else None, seed=args.seed, progress=args.progress)
        pool = get_eval_pool(args.eval_mode, args.model)
        say(protocol_line(pool, cfg, len(images), len(real.labels_test), domain.noun, args.test_set))
        if args.test_set != "clean":
            return evaluate_shifted(args, pool, images, labels, real, cfg, what)
        results = evaluate_pool(pool, images, labels, real.to(device), cfg, tag="eval")
        if dist.is_main():  # every rank has the results; one prints and writes them
            for m, (mean, std) in results.items():
                print(f"{what}: {m} accuracy {100 * mean:.2f} +- {100 * std:.2f} over {args.num_eval} networks")
        if args.json_out and dist.is_main():
            write_text(args.json_out, json.dumps({m: {"acc_mean": v[0], "acc_std": v[1]} for m, v in
                                                  results.items()}, indent=2) + "\n")
    return results


def protocol_line(pool, cfg: EvalConfig, n_train: int, n_test: int, noun: str, test_set: str = "clean") -> str:
    """What the evaluation will do, said before it starts (on a CPU the paper's protocol takes hours)."""
    nets = " + ".join(pool)
    shifted = "" if test_set == "clean" else f" and on {test_set}"
    return (f"protocol: {cfg.num_eval} x {nets} networks, each trained {cfg.epochs + 1} epochs (batch {cfg.batch}, "
            f"lr {cfg.lr:g}, {'DSA' if cfg.dsa else 'no augmentation'}) on {n_train} {noun} on {cfg.device.type}, "
            f"tested on {n_test} test {noun}{shifted}")


MEAN_SHIFTED = "mean corruption"


def evaluate_shifted(args, pool, images, labels, real, cfg, what: str) -> dict:
    """{model: {test set: (mean, std)}}: every network tested on the clean test set and each shifted one, and the
    mean over the corruptions (the mean and std over networks of each network's mean); a table, JSON, a plot."""
    corruptions = None if args.corruptions == "all" else [c.strip() for c in args.corruptions.split(",") if c]
    tests = load_shifted(args.test_set, real, args.data_path, args.severity, corruptions, args.subset)
    results = {}
    for m in pool:
        accs = evaluate_on(m, images, labels, real.to(cfg.device), cfg, "eval", tests)
        results[m] = {name: summarize(v) for name, v in accs.items()}
        if len(tests) > 1:
            per_net = [sum(accs[t][k] for t in tests) / len(tests) for k in range(len(accs["clean"]))]
            results[m][MEAN_SHIFTED] = summarize(per_net)
    if dist.is_main():
        shift = f"{args.test_set}" + (f", severity {args.severity}" if TEST_SETS[args.test_set].corrupted else "")
        print(f"{what}: accuracy (%) on the clean and the shifted test sets ({shift}), {args.num_eval} networks")
        names = list(next(iter(results.values())))
        print("| test set | " + " | ".join(pool) + " |")
        print("|---|" + "---:|" * len(pool))
        for name in names:
            cells = [f"{100 * results[m][name][0]:.2f} +- {100 * results[m][name][1]:.2f}" for m in pool]
            print(f"| {name} | " + " | ".join(cells) + " |")
        if args.json_out:
            write_text(args.json_out, json.dumps(
                {"test_set": args.test_set, "severity": args.severity,
                 "accuracy": {m: {t: {"acc_mean": v[0], "acc_std": v[1]} for t, v in r.items()}
                              for m, r in results.items()}}, indent=2) + "\n")
        if args.plot:
            plot_shifted(results, args.plot, f"{args.test_set} ({what})")
    return results


def plot_shifted(results: dict, path: str, title: str) -> None:
    """Grouped bars: one group per test set, one bar per network (mean, std as error bars)."""
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after choosing the file-only backend
    names = list(next(iter(results.values())))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.5 * len(names) * len(results)), 4))
    width = 0.8 / len(results)
    for j, (m, r) in enumerate(results.items()):
        xs = [i + j * width for i in range(len(names))]
        ax.bar(xs, [100 * r[n][0] for n in names], width, yerr=[100 * r[n][1] for n in names], capsize=2, label=m)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(names))], names, rotation=60, ha="right")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title, fontsize=9)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
