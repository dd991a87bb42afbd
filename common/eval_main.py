"""Evaluate a saved synthetic set (any eval mode, any resolution -- and for video any frame count -- for DDiF),
or the random-real baseline, and optionally export the decoded set, one folder per class: a PNG per image, an
animated GIF per clip."""
from __future__ import annotations

import argparse
import json
import os
import re

import torch

from . import dist
from .atomic import atomic_path, write_text
from .augment import DSA
from .data import get_dataset, is_video, is_voxel, transform_mismatch
from .data.video import DEFAULT_CACHE_DIR, SHORT_CLIPS
from .distill import checkpoint_meta, voxel_cache_dir
from .errors import UserError
from .evaluate import EvalConfig, evaluate_pool, random_real
from .networks import EVAL_MODES, get_eval_pool
from .runlog import save_voxel_grid, to_display, write_gif
from .synsets import load_synset, synset_from_payload, load_checkpoint
from .utils import DEVICES

Bool = argparse.BooleanOptionalAction


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--ckpt", help="synset_best.pt (or checkpoint.pt) of a run")
    p.add_argument("--random_real", action="store_true", help="evaluate ipc random real images per class instead")
    p.add_argument("--dataset", help="default: the checkpoint's")
    p.add_argument("--subset")
    p.add_argument("--data_path", help="default: the checkpoint's")
    p.add_argument("--zca", action=Bool, default=None, help="default: the checkpoint's")
    p.add_argument("--ipc", type=int, default=1, help="with --random_real")
    p.add_argument("--model", help="default: the checkpoint's distillation model")
    p.add_argument("--eval_mode", default="S", help=f"one of {', '.join(EVAL_MODES)}")
    p.add_argument("--res", type=int, default=None, help="decode a DDiF set at this resolution")
    p.add_argument("--frames", type=int, default=None,
                   help="video: decode a DDiF set at this many frames (and test on clips of as many)")
    p.add_argument("--frame_gap", type=int, default=None, help="video: default: the checkpoint's")
    p.add_argument("--short_clips", choices=SHORT_CLIPS, default=None, help="video: default: the checkpoint's")
    p.add_argument("--clip_cache", default=DEFAULT_CACHE_DIR,
                   help="video: folder of the decoded-clip cache (voxels: its sibling voxels/)")
    p.add_argument("--shuffle_frames", action="store_true",
                   help="video: train on the synthetic clips with their frames in a random order (one permutation "
                        "per clip, from --seed): how much the set's motion matters")
    p.add_argument("--num_eval", type=int, default=5)
    p.add_argument("--epoch_eval_train", type=int, default=1000)
    p.add_argument("--lr_net", type=float, default=None,
                   help="default: the lr the run evaluated with (TM: its learned step size), else 0.01")
    p.add_argument("--dsa", action=Bool, default=None, help="default: on for images, off for video")
    p.add_argument("--n_test", type=int, default=None, help="evaluate on only this many test images")
    p.add_argument("--device", default="auto", choices=DEVICES)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--export_dir", help="write the decoded set here, one folder per class: PNGs (images), GIFs "
                                        "(clips), .npy grids and projection PNGs (voxels)")
    p.add_argument("--no_eval", action="store_true", help="only export")
    p.add_argument("--json_out", help="also write the results as JSON here")
    p.add_argument("--progress", action=Bool, default=True)
    return p


def main(argv=None) -> dict:
    a = build_parser().parse_args(argv)
    if not a.ckpt and not a.random_real:
        raise UserError("give --ckpt PATH (a synthetic-set checkpoint) or --random_real")
    device = dist.setup(a.device)
    meta, synset = {}, None
    if a.ckpt:
        payload = load_checkpoint(a.ckpt, "checkpoint")
        if "synset" in payload and isinstance(payload["synset"], dict):  # a resume checkpoint.pt
            meta, payload = checkpoint_meta(payload), payload["synset"]
        else:
            meta = payload.get("meta", {})
        synset = synset_from_payload(payload, f"checkpoint {a.ckpt}")
    dataset = a.dataset or meta.get("dataset")
    if not dataset:
        raise UserError("the checkpoint does not name its dataset; pass --dataset")
    model = a.model or meta.get("model") or ("ConvNet3D" if is_video(dataset) else
                                             "Conv3DNet" if is_voxel(dataset) else "ConvNet")
    res = a.res or meta.get("res")
    zca = meta.get("zca", False) if a.zca is None else a.zca
    if meta and (why := transform_mismatch(meta, zca)):
        overridden = a.zca is not None and a.zca != meta.get("zca", False)
        raise UserError(f"the set in {a.ckpt} was distilled on images {why}; its accuracy on these test images "
                        f"would mean nothing ({'leave out --zca/--no-zca' if overridden else 'distil it again'})")
    if synset is not None and not synset.any_resolution and (
            (a.res and a.res != meta.get("res")) or (a.frames and a.frames != meta.get("frames"))):
        raise UserError(f"a {synset.name} set decodes only at its own size {tuple(synset.im_size)}; --res and "
                        f"--frames are for DDiF sets")
    options = {}  # how clips are sampled, how shapes are voxelised
    if is_video(dataset):
        options = dict(frames=a.frames or meta.get("frames"), frame_gap=a.frame_gap or meta.get("frame_gap"),
                       short_clips=a.short_clips or meta.get("short_clips") or "error",
                       clip_seed=meta.get("clip_seed", 0), progress=a.progress, cache_dir=a.clip_cache,
                       test_only=not a.random_real)
    elif is_voxel(dataset):
        options = dict(solid=meta.get("solid", False), progress=a.progress, test_only=not a.random_real,
                       cache_dir=voxel_cache_dir(a))
    if not is_video(dataset) and (a.frames or a.frame_gap or a.short_clips or a.shuffle_frames):
        raise UserError(f"--frames, --frame_gap, --short_clips and --shuffle_frames are for video; {dataset} holds "
                        f"{'voxel grids' if is_voxel(dataset) else 'images'}")
    with dist.main_first():  # rank 0 fills the clip / voxel caches, the others read them
        real = get_dataset(dataset, a.data_path or meta.get("data_path"), res=res,
                           subset=a.subset or meta.get("subset"), zca=zca, **options)
    if a.n_test:
        real = real.restrict(None, a.n_test, seed=a.seed)
    if synset is not None:
        if (synset.channel, synset.num_classes) != (real.channel, real.num_classes):
            raise UserError(f"the checkpoint holds a {synset.num_classes}-class {synset.channel}-channel set; "
                            f"{dataset} has {real.num_classes} classes and {real.channel} channels")
        synset.to(device)
        with torch.no_grad():
            images, labels = synset.get(res=real.im_size if (a.res or a.frames) else None)
        what = f"{synset.name} ({synset.n_per_class} per class) from {a.ckpt}"
    else:
        images, labels = random_real(real, a.ipc, a.seed)
        what = f"random real, ipc {a.ipc}"
    if tuple(images.shape[2:]) != tuple(real.im_size):
        raise UserError(f"the set decodes at {tuple(images.shape[2:])} but the test instances are {real.im_size}; "
                        f"pass --res" + (" / --frames" if real.domain == "video" else ""))
    if a.shuffle_frames:
        images = shuffle_frames(images, a.seed)
        what += ", frames shuffled"
    if a.export_dir and dist.is_main():
        export(images, labels, real, a.export_dir)
        print(f"exported {len(images)} {dict(video='clips', voxel='voxel grids').get(real.domain, 'images')} to "
              f"{a.export_dir}")
    results = {}
    if not a.no_eval:
        lr = a.lr_net if a.lr_net is not None else meta.get("lr_net", 0.01)
        cfg = EvalConfig(epochs=a.epoch_eval_train, num_eval=a.num_eval, device=device, lr=lr,
                         dsa=DSA() if (a.dsa if a.dsa is not None else real.domain == "image") else None,
                         seed=a.seed, progress=a.progress)
        pool = get_eval_pool(a.eval_mode, model)
        results = evaluate_pool(pool, images, labels, real.to(device), cfg, tag="eval")
        if dist.is_main():  # every rank has the results; one prints and writes them
            for m, (mean, std) in results.items():
                print(f"{what}: {m} accuracy {100 * mean:.2f} +- {100 * std:.2f} over {a.num_eval} networks")
        if a.json_out and dist.is_main():
            write_text(a.json_out, json.dumps({m: {"acc_mean": v[0], "acc_std": v[1]} for m, v in
                                               results.items()}, indent=2) + "\n")
    return results


def shuffle_frames(clips, seed: int):
    """Each clip (n, C, T, H, W) with its frames in its own random order (drawn from ``seed``)."""
    g = torch.Generator().manual_seed(seed)
    order = torch.stack([torch.randperm(clips.shape[2], generator=g) for _ in range(len(clips))]).to(clips.device)
    index = order.view(len(clips), 1, -1, 1, 1).expand(-1, clips.shape[1], -1, *clips.shape[3:])
    return clips.gather(2, index)


def export(images, labels, real, folder: str) -> None:
    """One sub-folder per class ("{index:03d}_{name}"), one file per instance: a PNG per image, an animated GIF
    per clip, a .npy grid (float16, as decoded) and a PNG of its three projections per voxel shape."""
    import numpy as np
    from torchvision.utils import save_image
    x = to_display(images, real.mean, real.std, real.zca)
    for i, (inst, c) in enumerate(zip(x, labels.tolist())):
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", real.class_names[c])
        d = os.path.join(folder, f"{c:03d}_{name}")
        os.makedirs(d, exist_ok=True)
        if real.domain == "video":
            write_gif(inst.transpose(0, 1), os.path.join(d, f"{i:05d}.gif"))
            continue
        if real.domain == "voxel":
            with atomic_path(os.path.join(d, f"{i:05d}.npy")) as tmp:
                np.save(tmp, images[i, 0].detach().cpu().numpy().astype(np.float16))
            save_voxel_grid(inst[None], torch.tensor([c]), os.path.join(d, f"{i:05d}.png"), per_class=1)
            continue
        with atomic_path(os.path.join(d, f"{i:05d}.png")) as tmp:
            save_image(inst, tmp, format="png")
