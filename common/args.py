"""The one configuration layer: every entry point's flags (distillation runs, ``eval.py``, ``TM/buffer.py``) and
their resolution against ``hyper_params.py`` and the dataset's domain.

:func:`build_parser` assembles the flag groups a role needs: the data (with every domain's loader options), the
run, the evaluation protocol and, for distillation, each synthetic set's and the objective's own flags. Numeric
flags default to None, meaning "take the table default" (or the dataset's, or for ``eval.py`` the checkpoint's);
:func:`resolve_args` fills them, logs what it filled, validates names, and returns a read-only namespace.
"""
from __future__ import annotations

import argparse
import math
import os
from typing import Callable, Optional

import hyper_params

from .augment import DEFAULT_STRATEGY
from .domains import DATASETS, DOMAINS, Domain, all_options, domain_of
from .errors import UserError, choice_error
from .networks import EVAL_MODES, get_eval_pool, list_networks
from .objectives import objective_class
from .synsets import SYNSETS
from .utils import DEVICES

Bool = argparse.BooleanOptionalAction
WANDB_MODES = ("offline", "online", "disabled")
ROLES = ("distill", "eval", "buffer")
SELECT_ON = ("test", "val")
DEFAULT_CACHE = "cache"
# flags that stay None when not given (no table default)
OPTIONAL = ("subset", "exp_name", "n_train_per_class", "n_test")


def _parent_folder(path: str) -> str:
    """--clip_cache DIR (the clip folder itself, as before there was one cache root): its parent is the root."""
    return os.path.dirname(os.path.normpath(path)) or "."


def add_data_args(p: argparse.ArgumentParser, role: str) -> None:
    from_ckpt = role == "eval"  # eval.py: a flag left unset takes the checkpoint's value
    g = p.add_argument_group("data")
    g.add_argument("--dataset", default=None if from_ckpt else "FashionMNIST",
                   help=f"one of {', '.join(DATASETS)}" + ("; default: the checkpoint's" if from_ckpt else ""))
    g.add_argument("--subset", default=None, help="ImageNet subset (imagenette, imagewoof, ...)")
    g.add_argument("--res", type=int, default=None,
                   help="resolution: side of the images, video frames or voxel grids (None: the dataset's own; "
                        "ImageNet 128)" + ("; eval.py: decode a DDiF set at this resolution" if from_ckpt else ""))
    g.add_argument("--data_path", default=None if from_ckpt else "data",
                   help="dataset root (Fashion-MNIST also looks in the Debian path)")
    g.add_argument("--zca", action=Bool, default=None if from_ckpt else False, help="ZCA-whiten the data")
    g.add_argument("--n_train_per_class", type=int, default=None, help="use only this many real instances per class")
    g.add_argument("--n_test", type=int, default=None, help="evaluate on only this many test instances")
    g.add_argument("--cache", "--init_cache", dest="cache", default=DEFAULT_CACHE,
                   help="cache root: decoded video clips in clips/, voxel grids in voxels/, and (runs) the DDiF warm "
                        "starts ('' turns the warm-start cache off)")
    g.add_argument("--clip_cache", dest="cache", type=_parent_folder, help=argparse.SUPPRESS)  # older name
    g = p.add_argument_group("domain options (each for its domain's datasets; None: the dataset's"
                             + (", or the checkpoint's)" if from_ckpt else ")"))
    for opt in all_options().values():
        opt.add_to(g)


def add_run_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("run")
    g.add_argument("--device", default="auto", choices=DEVICES)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--progress", action=Bool, default=True, help="progress bars")


def add_augment_args(g) -> None:
    g.add_argument("--dsa", action=Bool, default=None,
                   help="differentiable siamese augmentation (None: hyper_params.py; on for images, off for video "
                        "and voxels)")
    g.add_argument("--dsa_strategy", default=DEFAULT_STRATEGY)


def add_eval_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("evaluation (None: hyper_params.py, as the run's own evaluations)")
    g.add_argument("--eval_mode", default="S", help=f"networks to evaluate with: {', '.join(EVAL_MODES)}")
    g.add_argument("--num_eval", type=int, default=None, help="networks trained per evaluation")
    g.add_argument("--epoch_eval_train", type=int, default=None,
                   help="E: evaluation networks train E + 1 epochs (0..E) on the synthetic set, lr / 10 after "
                        "epoch E // 2 + 1")
    g.add_argument("--lr_net", type=float, default=None, help="learning rate of evaluation/inner networks")
    add_augment_args(g)


def add_distill_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("experiment")
    g.add_argument("--synset", default="ddif", help=f"parameterisation: {', '.join(sorted(SYNSETS))}")
    g.add_argument("--model", default=None,
                   help="network used for distillation (see common/networks.py; None: the domain's, ConvNet for "
                        "images, ConvNet3D for video, Conv3DNet for voxels)")
    g.add_argument("--ipc", type=int, default=1, help="storage budget in images per class")
    g.add_argument("--save_path", default="runs", help="root of the run folders")
    g.add_argument("--exp_name", default=None, help="run-folder name (default: built from the flags)")
    g.add_argument("--resume", action=Bool, default=False, help="continue the run in the same folder")
    g.add_argument("--wandb", action=Bool, default=False,
                   help="also log to Weights & Biases (files in the run folder's wandb/)")
    g.add_argument("--wandb_mode", default="offline", choices=WANDB_MODES,
                   help="offline: files only (sync later with 'wandb sync'); online: upload as the run goes")
    g.add_argument("--wandb_project", default="dataset-distillation")
    g = p.add_argument_group("distillation")
    g.add_argument("--Iteration", "--iterations", dest="Iteration", type=int, default=None)
    g.add_argument("--eval_it", type=int, default=None, help="evaluate every this many iterations")
    g.add_argument("--eval_at_start", action=Bool, default=True, help="also evaluate the initial set (iteration 0)")
    g.add_argument("--save_it", type=int, default=100, help="write the resume checkpoint every this many iterations")
    g.add_argument("--select_on", default="test", choices=SELECT_ON,
                   help="what picks synset_best.pt among the evaluations: the test accuracy (the original's), or "
                        "the accuracy on --n_val real train instances per class held out from the run (its test "
                        "accuracy is then reported)")
    g.add_argument("--n_val", type=int, default=10, help="with --select_on val: held-out instances per class")
    g.add_argument("--batch_real", type=int, default=None)
    g.add_argument("--batch_syn", type=int, default=None, help="synthetic instances per step (0: all)")


def build_parser(description: str, objective: Optional[str] = None, role: str = "distill",
                 extra: tuple[Callable[[argparse.ArgumentParser], None], ...] = ()) -> argparse.ArgumentParser:
    """The parser of an entry point. ``role``: "distill" (a main_*.py; ``objective`` adds its flags), "eval"
    (eval.py) or "buffer" (TM/buffer.py); ``extra`` adds the entry point's own flag groups."""
    if role not in ROLES:
        raise ValueError(f"role {role!r}, expected one of {ROLES}")
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    if role == "distill":
        add_distill_args(p)
    add_data_args(p, role)
    add_run_args(p)
    if role == "buffer":
        add_augment_args(p.add_argument_group("augmentation"))
    else:
        add_eval_args(p)
    if role == "distill":
        for cls in SYNSETS.values():
            cls.add_args(p)
        if objective is not None:
            objective_class(objective).add_args(p)
    for add in extra:
        add(p)
    return p


class FrozenArgs(argparse.Namespace):
    """A namespace that refuses changes once resolved: arguments are read-only during a run."""

    def __setattr__(self, key, value):
        if self.__dict__.get("_frozen"):
            raise AttributeError(f"arguments are read-only after resolution (tried to set {key!r})")
        super().__setattr__(key, value)

    def freeze(self) -> "FrozenArgs":
        super().__setattr__("_frozen", True)
        return self

    def as_dict(self) -> dict:
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}


def resolve_data(values: dict) -> Domain:
    """The data flags of ``values`` resolved in place: the dataset's domain fills its options (the dataset's
    defaults), another domain's options are refused when given and dropped, ``res`` None takes the native
    size, ``subset`` is kept only by datasets that have subsets. Returns the domain."""
    dataset = values["dataset"]
    domain = domain_of(dataset)
    for other in DOMAINS.values():
        if other is domain:
            continue
        for opt in (*other.options, *other.eval_options):
            if opt.name not in values:
                continue
            if values[opt.name] not in (None, opt.default):
                raise UserError(f"--{opt.name} is for {other.noun}; {dataset} holds {domain.noun}")
            del values[opt.name]
    values["subset"] = domain.subset(dataset, values.get("subset"))
    if values.get("res") is None:
        values["res"] = domain.native_res(dataset)
    elif values["res"] < 1:
        raise UserError(f"--res must be >= 1, got {values['res']}")
    domain.resolve(values, dataset)
    return domain


def fill_from_table(values: dict, objective: str, domain: Domain, keys, log: Callable[[str], None]) -> None:
    """Fill the ``keys`` left at None from hyper_params.py's row of this experiment, logging what was filled."""
    needed = [k for k in keys if values.get(k) is None]
    if not needed:
        return
    table, sources = hyper_params.defaults(objective, values["dataset"], values["res"], values.get("ipc", 1),
                                           needed=needed, domain=domain.name)
    if "msz_per_channel" in needed and "msz_per_channel" not in table:
        # FreD on volumes: a fraction of the instance's coefficients
        size = domain.instance_size(values)
        values["msz_per_channel"] = math.prod(size) // table["msz_fraction"]
        log(f"FreD on {domain.noun}: msz_per_channel={values['msz_per_channel']} (1/{table['msz_fraction']} of the "
            f"coefficients per channel of a {'x'.join(map(str, size))} instance)")
    filled = []
    for k in needed:
        if k in table:
            values[k] = table[k]
            filled.append(f"{k}={table[k]}")
    if filled:
        log(f"hyper_params.py ({' + '.join(sources)}) filled: {', '.join(filled)}")


def _default_log(msg: str) -> None:
    # torchrun: every rank resolves the flags alike; rank 0 says so (the process group is not up yet)
    if os.environ.get("RANK", "0") == "0":
        print(msg)


def check_positive(values: dict, keys, minimum: int = 1) -> None:
    for k in keys:
        if values.get(k) is not None and values[k] < minimum:
            raise UserError(f"--{k} must be {'positive' if minimum == 1 else f'>= {minimum}'}, got {values[k]}")


def resolve_args(args: argparse.Namespace, objective: str, log: Optional[Callable[[str], None]] = None) -> FrozenArgs:
    """A distillation run's flags: validate names, fill None flags from the domain and hyper_params.py (logging
    each), let the objective resolve and check its own, and freeze."""
    log = log or _default_log
    values = dict(vars(args))
    if values["synset"] not in SYNSETS:
        raise choice_error("synset", values["synset"], sorted(SYNSETS))
    objective_cls = objective_class(objective)
    domain = resolve_data(values)
    values["model"] = values.get("model") or domain.default_model
    if values["model"] not in list_networks():
        raise choice_error("model", values["model"], list_networks())
    get_eval_pool(values["eval_mode"], values["model"])  # validates the mode
    if values["ipc"] < 1:
        raise UserError(f"--ipc must be >= 1, got {values['ipc']}")
    objective_cls.resolve(values)
    other_synsets = {f.name for name, cls in SYNSETS.items() if name != values["synset"] for f in cls.flags}
    own = {f.name for f in SYNSETS[values["synset"]].flags}
    keys = [k for k, v in values.items() if v is None and k not in OPTIONAL and (k not in other_synsets or k in own)]
    fill_from_table(values, objective, domain, keys, log)
    check_positive(values, ("Iteration",), 0)
    check_positive(values, ("num_eval", "epoch_eval_train", "eval_it", "batch_real", "n_val"))
    if values.get("batch_syn") is not None and values["batch_syn"] < 0:
        raise UserError(f"--batch_syn must be >= 0 (0: the whole set), got {values['batch_syn']}")
    out = FrozenArgs(**values)
    out.objective = objective
    return out.freeze()


def synset_config(args, channel: int, num_classes: int, im_size) -> dict:
    """Constructor arguments of the chosen synthetic set, from resolved args."""
    return SYNSETS[args.synset].config_from(args, channel, num_classes, im_size)


__all__ = ["Bool", "FrozenArgs", "build_parser", "resolve_args", "resolve_data", "fill_from_table", "synset_config"]
