"""Every folder a run reads or writes is computed here, once, for every script."""
from __future__ import annotations

import hashlib
import json
import os


def dataset_tag(args) -> str:
    tag = args.dataset + (f"_{args.subset}" if args.dataset == "ImageNet" and args.subset else "")
    tag += f"_res{args.res}" if args.res not in (None, _native(args.dataset)) else ""
    return tag + _clip_tag(args) + ("_solid" if getattr(args, "solid", False) else "")


def _clip_tag(args) -> str:
    """Video clips sampled otherwise than the dataset's default: _f{frames}_g{gap}."""
    from .data.video import VIDEO_SPECS
    spec = VIDEO_SPECS.get(args.dataset)
    frames, gap = getattr(args, "frames", None), getattr(args, "frame_gap", None)
    if spec is None or (frames in (None, spec.frames) and gap in (None, spec.gap)):
        return ""
    return f"_f{frames or spec.frames}_g{gap or spec.gap}"


def _native(dataset: str) -> int:
    from .args import native_res
    return native_res(dataset)


def run_dir(args) -> str:
    """{save_path}/{objective}/{dataset}/{exp_name or synset_ipc_model[_zca]_seed}."""
    name = args.exp_name or f"{args.synset}_ipc{args.ipc}_{args.model}{'_zca' if args.zca else ''}_s{args.seed}"
    return os.path.join(args.save_path, args.objective, dataset_tag(args), name)


def expert_dir(args) -> str:
    """Expert trajectories: {buffer_path}/{dataset}[/{subset}][_NO_ZCA]/{model}/ (buffer.py and main_TM.py)."""
    folder = args.dataset + (f"/{args.subset}" if args.dataset == "ImageNet" and args.subset else "")
    if args.res not in (None, _native(args.dataset)):
        folder += f"_res{args.res}"
    folder += _clip_tag(args) + ("_solid" if getattr(args, "solid", False) else "")
    return os.path.join(args.buffer_path, folder + ("" if args.zca else "_NO_ZCA"), args.model)


def init_cache_path(args, synset_config: dict) -> str | None:
    """Warm-started DDiF sets, keyed by everything that determines them; None when caching is off."""
    if not args.init_cache:
        return None
    from .synsets.ddif import WARM_START_VERSION

    key = dict(synset_config, dataset=args.dataset, subset=args.subset, res=args.res, zca=args.zca, seed=args.seed,
               n_train_per_class=args.n_train_per_class, version=WARM_START_VERSION)
    if getattr(args, "frames", None) is not None:  # video: how the clips were sampled
        key.update(frames=args.frames, frame_gap=args.frame_gap, short_clips=args.short_clips,
                   clip_seed=args.clip_seed)
    if getattr(args, "solid", False):  # voxels: filled shapes
        key.update(solid=True)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return os.path.join(args.init_cache, f"ddif_init_{args.dataset}_ipc{args.ipc}_{digest}.pt")
