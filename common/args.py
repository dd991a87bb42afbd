"""Shared command-line flags and their resolution against ``hyper_params.py``.

Numeric flags default to None, meaning "take the table default"; :func:`resolve_args` fills them, logs
what it filled, validates names, and returns a read-only namespace.
"""
from __future__ import annotations

import argparse
import os
from typing import Callable, Optional

import hyper_params

from .data import DATASETS, is_video, is_voxel
from .data.video import SHORT_CLIPS, VIDEO_SPECS
from .data.voxels import VOXEL_SPECS
from .errors import UserError, choice_error
from .networks import EVAL_MODES, get_eval_pool, list_networks
from .synsets import SYNSETS
from .utils import DEVICES

Bool = argparse.BooleanOptionalAction
WANDB_MODES = ("offline", "online", "disabled")


def add_common_args(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    g = p.add_argument_group("experiment")
    g.add_argument("--synset", default="ddif", help=f"parameterisation: {', '.join(sorted(SYNSETS))}")
    g.add_argument("--dataset", default="FashionMNIST", help=f"one of {', '.join(DATASETS)}")
    g.add_argument("--subset", default=None, help="ImageNet subset (imagenette, imagewoof, ...)")
    g.add_argument("--res", type=int, default=None,
                   help="resolution: side of the images or video frames (None: the dataset's own; ImageNet 128)")
    g.add_argument("--frames", type=int, default=None, help="video: frames per clip (None: the dataset's, 16)")
    g.add_argument("--frame_gap", type=int, default=None,
                   help="video: distance between sampled frames (None: the dataset's; UCF101/HMDB51 4)")
    g.add_argument("--short_clips", default="error", choices=SHORT_CLIPS,
                   help="video: a clip shorter than (frames - 1) * frame_gap + 1 frames is an error (error), or, as "
                        "the original code, every clip of fewer than frames * frame_gap frames is sampled with the gap "
                        "length // frames (shrink)")
    g.add_argument("--solid", action=Bool, default=False,
                   help="voxels: fill the inside of each shape's surface (default: surface occupancy, as the original)")
    g.add_argument("--clip_seed", type=int, default=0,
                   help="video: the seed of every training clip's start frame and flip (not --seed, so that runs and "
                        "experts with other seeds see the same clips and share one clip cache)")
    g.add_argument("--model", default="ConvNet", help="network used for distillation (see common/networks.py)")
    g.add_argument("--ipc", type=int, default=1, help="storage budget in images per class")
    g.add_argument("--dipc", type=int, default=0, help="DDiF fields per class (0: as many as the budget buys)")
    g.add_argument("--zca", action=Bool, default=False, help="ZCA-whiten the data")
    g.add_argument("--data_path", default="data", help="dataset root (Fashion-MNIST also looks in the Debian path)")
    g.add_argument("--save_path", default="runs", help="root of the run folders")
    g.add_argument("--exp_name", default=None, help="run-folder name (default: built from the flags)")
    g.add_argument("--init_cache", default="cache",
                   help="folder of cached DDiF warm starts ('' disables) and, in clips/, of decoded video clips")
    g.add_argument("--device", default="auto", choices=DEVICES)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--resume", action=Bool, default=False, help="continue the run in the same folder")
    g.add_argument("--wandb", action=Bool, default=False,
                   help="also log to Weights & Biases (files in the run folder's wandb/)")
    g.add_argument("--wandb_mode", default="offline", choices=WANDB_MODES,
                   help="offline: files only (sync later with 'wandb sync'); online: upload as the run goes")
    g.add_argument("--wandb_project", default="dataset-distillation")
    g.add_argument("--progress", action=Bool, default=True, help="progress bars")
    g.add_argument("--n_train_per_class", type=int, default=None, help="use only this many real images per class")
    g.add_argument("--n_test", type=int, default=None, help="evaluate on only this many test images")

    g = p.add_argument_group("distillation")
    g.add_argument("--Iteration", "--iterations", dest="Iteration", type=int, default=None)
    g.add_argument("--eval_it", type=int, default=None, help="evaluate every this many iterations")
    g.add_argument("--eval_at_start", action=Bool, default=True, help="also evaluate the initial set (iteration 0)")
    g.add_argument("--save_it", type=int, default=100, help="write the resume checkpoint every this many iterations")
    g.add_argument("--batch_real", type=int, default=None)
    g.add_argument("--batch_syn", type=int, default=None, help="synthetic instances per step (0: all)")
    g.add_argument("--dsa", action=Bool, default=None,
                   help="differentiable siamese augmentation (None: hyper_params.py; on for images, off for video)")
    g.add_argument("--dsa_strategy", default="color_crop_cutout_flip_scale_rotate")

    g = p.add_argument_group("evaluation")
    g.add_argument("--eval_mode", default="S", help=f"networks to evaluate with: {', '.join(EVAL_MODES)}")
    g.add_argument("--num_eval", type=int, default=None, help="networks trained per evaluation")
    g.add_argument("--epoch_eval_train", type=int, default=None,
                   help="E: evaluation networks train E + 1 epochs (0..E) on the synthetic set, lr / 10 after "
                        "epoch E // 2 + 1")
    g.add_argument("--lr_net", type=float, default=None, help="learning rate of evaluation/inner networks")
    return p


def add_ddif_args(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    g = p.add_argument_group("DDiF (neural fields)")
    for name, typ in (("dim_in", int), ("num_layers", int), ("layer_size", int), ("dim_out", int),
                      ("w0_initial", float), ("w0", float), ("lr_nf", float), ("epochs_init", int),
                      ("lr_nf_init", float)):
        g.add_argument(f"--{name}", type=typ, default=None)
    return p


def add_fred_args(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    g = p.add_argument_group("FreD (frequency coefficients)")
    g.add_argument("--msz_per_channel", type=int, default=None, help="coefficients kept per channel")
    g.add_argument("--lr_freq", type=float, default=None)
    g.add_argument("--mom_freq", type=float, default=None)
    return p


def add_pixel_args(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    g = p.add_argument_group("pixel")
    g.add_argument("--lr_img", type=float, default=None)
    return p


def build_parser(description: str, *extra: Callable[[argparse.ArgumentParser], argparse.ArgumentParser]):
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    for add in (add_common_args, add_ddif_args, add_fred_args, add_pixel_args, *extra):
        add(p)
    return p


# flags each synthetic set needs from the table
SYNSET_FLAGS = {
    "ddif": ("dim_in", "num_layers", "layer_size", "dim_out", "w0_initial", "w0", "lr_nf", "epochs_init", "lr_nf_init"),
    "fred": ("msz_per_channel", "lr_freq", "mom_freq"),
    "pixel": ("lr_img",),
}


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


def native_res(dataset: str) -> int:
    if dataset in VIDEO_SPECS:
        return VIDEO_SPECS[dataset].side
    if dataset in VOXEL_SPECS:
        return VOXEL_SPECS[dataset].res
    return {"FashionMNIST": 28, "MNIST": 28, "Tiny": 64, "ImageNet": 128}.get(dataset, 32)


def resolve_video_flags(values: dict) -> None:
    """Video datasets: frames and frame_gap left at None take the dataset's; image datasets refuse them."""
    name = values["dataset"]
    if not is_video(name):
        given = [f"--{k}" for k in ("frames", "frame_gap") if values.get(k) is not None]
        if given:
            raise UserError(f"{' and '.join(given)} are for video datasets; {name} holds images")
        return
    spec = VIDEO_SPECS[name]
    for key, default in (("frames", spec.frames), ("frame_gap", spec.gap)):
        if values.get(key) is None:
            values[key] = default
        elif values[key] < 1:
            raise UserError(f"--{key} must be >= 1, got {values[key]}")
    if values.get("zca"):
        raise UserError(f"--zca whitens images; {name} holds video clips")


def resolve_args(args: argparse.Namespace, objective: str, log: Optional[Callable[[str], None]] = None) -> FrozenArgs:
    """Validate names, fill None flags from hyper_params.py (logging each), and freeze."""
    # torchrun: every rank resolves the flags alike; rank 0 says so (the process group is not up yet)
    log = log or (print if os.environ.get("RANK", "0") == "0" else (lambda msg: None))
    if args.synset not in SYNSETS:
        raise choice_error("synset", args.synset, sorted(SYNSETS))
    if args.dataset not in DATASETS:
        raise choice_error("dataset", args.dataset, DATASETS)
    if args.model not in list_networks():
        raise choice_error("model", args.model, list_networks())
    get_eval_pool(args.eval_mode, args.model)  # validates the mode
    for flag in ("ipc",):
        if getattr(args, flag) < 1:
            raise UserError(f"--{flag} must be >= 1, got {getattr(args, flag)}")
    values = dict(vars(args))
    if values["res"] is None:
        values["res"] = native_res(args.dataset)
    if "frames" in values:
        resolve_video_flags(values)
    needed = [k for k, v in values.items() if v is None and k not in ("subset", "exp_name", "n_train_per_class",
                                                                      "n_test", "frames", "frame_gap")]
    table_row = hyper_params.ROWS.get((objective, args.dataset, values["res"], args.ipc), {})
    volume = is_video(args.dataset) or is_voxel(args.dataset)
    if volume and "msz_per_channel" in needed and "msz_per_channel" not in table_row:
        # FreD on clips and voxel grids: a fraction of the instance's coefficients
        needed.remove("msz_per_channel")
        size = (values["frames"] if is_video(args.dataset) else values["res"], values["res"], values["res"])
        values["msz_per_channel"] = size[0] * size[1] * size[2] // hyper_params.MSZ_FRACTION_3D
        log(f"FreD on {'clips' if is_video(args.dataset) else 'voxel grids'}: msz_per_channel="
            f"{values['msz_per_channel']} (1/{hyper_params.MSZ_FRACTION_3D} of the coefficients per channel of a "
            f"{'x'.join(map(str, size))} instance)")
    if values.get("solid") and not is_voxel(args.dataset):
        raise UserError(f"--solid fills voxel shapes; {args.dataset} holds {'clips' if volume else 'images'}")
    synset_only = {f for name, flags in SYNSET_FLAGS.items() if name != args.synset for f in flags}
    table, sources = hyper_params.defaults(objective, args.dataset, values["res"], args.ipc,
                                           needed=[k for k in needed if k not in synset_only])
    filled = []
    for k in needed:
        if k in table:
            values[k] = table[k]
            filled.append(f"{k}={table[k]}")
    if filled:
        log(f"hyper_params.py ({' + '.join(sources)}) filled: {', '.join(filled)}")
    for k in ("Iteration", "num_eval", "epoch_eval_train", "eval_it", "batch_real"):
        if values.get(k) is not None and values[k] < (0 if k == "Iteration" else 1):
            raise UserError(f"--{k} must be positive, got {values[k]}")
    if values.get("batch_syn") is not None and values["batch_syn"] < 0:
        raise UserError(f"--batch_syn must be >= 0 (0: the whole set), got {values['batch_syn']}")
    out = FrozenArgs(**values)
    out.objective = objective
    return out.freeze()


def synset_config(args, channel: int, num_classes: int, im_size) -> dict:
    """Constructor arguments of the chosen synthetic set, from resolved args."""
    cfg = dict(num_classes=num_classes, channel=channel, im_size=list(im_size), ipc=args.ipc)
    if args.synset == "ddif":
        cfg.update(dipc=args.dipc, **{k: getattr(args, k) for k in SYNSET_FLAGS["ddif"]})
    elif args.synset == "fred":
        cfg.update({k: getattr(args, k) for k in SYNSET_FLAGS["fred"]})
    else:
        cfg.update(lr_img=args.lr_img)
    return cfg
