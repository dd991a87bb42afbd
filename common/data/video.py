"""Video datasets in the frames layout of the video-distillation code base (UCF101, miniUCF101, HMDB51) and
the offline Moving Fashion-MNIST, which is written in the same layout.

Layout: ``<data_path>/<folder>/jpegs_112/<clip folder>/frame000001.jpg`` (or ``.png``), frames numbered from 1,
and a split csv ``<data_path>/<folder>/<csv>`` with the columns ``folder_name,label,split`` (split ``train`` or
``test``); classes are the sorted label strings, as in the original.

Clip sampling (as the original): ``frames`` frames ``frame_gap`` apart, from a random start in training clips
and, here, the centred start in test clips; training clips are flipped horizontally with probability 1/2.
The start and the flip of every clip are drawn once from ``clip_seed`` and the clip's folder name, so a clip
does not depend on the csv order (nor on a run's ``--seed``: every run and every expert sees the same clips). UCF/HMDB frames are resized to 160x120 and centre-cropped to 112x112, as the
original; another ``res`` resizes that crop. The decoded clips are written once to a uint8 cache file
(keyed by dataset, split, frames, gap, resolution, clip seed, and a fingerprint of the source files) and
memory-mapped: no epoch decodes JPEGs again and a 50-class set does not have to fit in memory.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..atomic import write_npy
from ..errors import DatasetNotFoundError, UserError, choice_error
from ..utils import derive_seed
from .base import DEFAULT_DATA_PATH, MappedArray, RealData, _find, _indices_by_class

FRAMES_DIR = "jpegs_112"
CSV_COLUMNS = ("folder_name", "label", "split")
SHORT_CLIPS = ("error", "shrink")
DEFAULT_CACHE_DIR = os.path.join("cache", "clips")
# part of every cache key: raise it when a change to the decoding changes the cached pixels
CACHE_VERSION = 1
_FRAME_RE = re.compile(r"frame(\d{6})\.(jpg|jpeg|png)$", re.IGNORECASE)
_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class VideoSpec:
    folder: str  # under data_path
    csv: str  # split csv in that folder
    channel: int
    frames: int  # default clip length
    gap: int  # default distance between sampled frames
    side: int  # native side of the square frames after resizing and cropping
    resize: Optional[tuple[int, int]]  # (width, height) every frame is resized to before the centre crop
    mean: tuple[float, ...]
    std: tuple[float, ...]
    hint: str  # how to get it


_UCF_HINT = ("get the UCF101 RGB frames (the two-stream 'jpegs_256' frames, resized to 112 px as in the "
             "video-distillation code base) into {root}/jpegs_112/ and the split csv into {root}/")
VIDEO_SPECS: dict[str, VideoSpec] = {
    "miniUCF101": VideoSpec("UCF101", "ucf50_splits1.csv", 3, 16, 4, 112, (160, 120), _IMAGENET_MEAN, _IMAGENET_STD,
                            _UCF_HINT),
    "UCF101": VideoSpec("UCF101", "ucf101_splits1.csv", 3, 16, 4, 112, (160, 120), _IMAGENET_MEAN, _IMAGENET_STD,
                        _UCF_HINT),
    "HMDB51": VideoSpec("HMDB51", "hmdb51_splits.csv", 3, 16, 4, 112, (160, 120), _IMAGENET_MEAN, _IMAGENET_STD,
                        _UCF_HINT.replace("UCF101", "HMDB51")),
    # the offline stand-in, built from the real Fashion-MNIST by common/data/moving_fmnist.py; mean and std of
    # its default build's training pixels
    "MovingFashionMNIST": VideoSpec("MovingFashionMNIST", "movingfmnist_splits.csv", 1, 16, 1, 64, None,
                                    (0.0547,), (0.1849,),
                                    "build it from Fashion-MNIST: python -m common.data.moving_fmnist --out {data}"),
}
VIDEO_DATASETS: tuple[str, ...] = tuple(VIDEO_SPECS)


# ---- reading the frames layout -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Clip:
    folder: str
    label: int
    frames: tuple[Path, ...]  # every frame of the clip, in order


def _read_split_csv(path: Path) -> tuple[list[str], dict[str, list[tuple[str, str]]]]:
    """(sorted class names, {split: [(folder_name, label)]}) from a ``folder_name,label,split`` csv."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise UserError(f"{path} lacks the column(s) {', '.join(missing)}: a split csv has the header "
                            f"{','.join(CSV_COLUMNS)} (found {','.join(reader.fieldnames or []) or 'nothing'})")
        rows = [(r["folder_name"].strip(), r["label"].strip(), r["split"].strip()) for r in reader]
    splits: dict[str, list[tuple[str, str]]] = {"train": [], "test": []}
    for folder, label, split in rows:
        if split in splits:
            splits[split].append((folder, label))
    for split, items in splits.items():
        if not items:
            raise UserError(f"{path} has no '{split}' rows (its split column must say train or test)")
    return sorted({label for _, label, _ in rows}), splits


def _frame_files(folder: Path) -> tuple[Path, ...]:
    """The frames frame000001.* .. frameN.* of a clip folder, numbered without holes."""
    found = {}
    for entry in os.scandir(folder):
        m = _FRAME_RE.fullmatch(entry.name)
        if m:
            found[int(m.group(1))] = Path(entry.path)
    n = 0
    while n + 1 in found:
        n += 1
    return tuple(found[i] for i in range(1, n + 1))


def _list_clips(root: Path, csv_path: Path, items: list[tuple[str, str]], classes: list[str]) -> list[_Clip]:
    frames_dir = root / FRAMES_DIR
    label_of = {name: i for i, name in enumerate(classes)}
    clips, missing = [], []
    for folder, label in items:
        path = frames_dir / folder
        if not path.is_dir():
            missing.append(folder)
            continue
        clips.append(_Clip(folder, label_of[label], _frame_files(path)))
    if missing:
        raise DatasetNotFoundError(
            f"{csv_path} names {len(missing)} clip folder(s) missing from {frames_dir}, e.g. {missing[0]}; "
            f"the csv and the frames do not belong together")
    return clips


def _sample(clip: _Clip, frames: int, gap: int, train: bool, seed: int, short_clips: str):
    """(frame files, flip) of the clip as sampled for this split. A clip shorter than ``(frames - 1) * gap + 1``
    is an error (None); with ``short_clips='shrink'`` the original's rule applies instead: a clip of fewer than
    ``frames * gap`` frames is sampled with the gap ``length // frames`` (a 47-frame clip at 8 frames x gap 6
    takes gap 5), and only a clip of fewer than ``frames`` frames is an error."""
    n = len(clip.frames)
    if short_clips == "shrink" and n < frames * gap:
        if n < frames:
            return None
        gap = n // frames
    need = (frames - 1) * gap + 1
    if n < need:
        return None
    g = np.random.default_rng(derive_seed(seed, "clip", clip.folder))
    start = int(g.integers(0, n - need + 1)) if train else (n - need) // 2
    flip = bool(train and g.random() < 0.5)
    return clip.frames[start:start + need:gap], flip


def _read_frames(files: Sequence[Path], flip: bool, spec: VideoSpec, side: int) -> np.ndarray:
    """(C, T, side, side) uint8: every frame resized as the dataset's spec says, centre-cropped, resized to side."""
    from PIL import Image

    mode = "L" if spec.channel == 1 else "RGB"
    out = np.empty((len(files), side, side, spec.channel), dtype=np.uint8)
    for t, path in enumerate(files):
        with Image.open(path) as img:
            img = img.convert(mode)
            if spec.resize and img.size != spec.resize:
                img = img.resize(spec.resize, Image.BILINEAR)
            w, h = img.size
            s = min(w, h, spec.side) if spec.resize else min(w, h)  # UCF: a 112 crop of 160x120; else the square
            left, top = (w - s) // 2, (h - s) // 2
            img = img.crop((left, top, left + s, top + s))
            if img.size != (side, side):
                img = img.resize((side, side), Image.BILINEAR, reducing_gap=None)
            if flip:
                img = img.transpose(Image.FLIP_LEFT_RIGHT)
            out[t] = np.asarray(img, dtype=np.uint8).reshape(side, side, spec.channel)
    return out.transpose(3, 0, 1, 2)


# ---- the cache -----------------------------------------------------------------------------------------


def _fingerprint(csv_path: Path, sampled: list) -> str:
    """A digest of the csv and of every frame file a clip uses (name, size, modification time)."""
    h = hashlib.sha256(csv_path.read_bytes())
    for files, flip in sampled:
        for p in files:
            st = p.stat()
            h.update(f"{p}|{st.st_size}|{st.st_mtime_ns}|{flip}\n".encode())
    return h.hexdigest()[:16]


def _build_cache(path: Path, sampled: list, spec: VideoSpec, side: int, frames: int, progress: bool) -> None:
    """Decode every sampled clip into a uint8 memory map at ``path`` (written under a temporary name, then
    renamed: an interrupted build leaves no cache)."""
    from tqdm.auto import tqdm

    shape = (len(sampled), spec.channel, frames, side, side)

    def read(item):
        files, flip = item
        try:
            return _read_frames(files, flip, spec, side)
        except (OSError, ValueError) as e:  # PIL: unreadable or truncated image
            raise UserError(f"cannot read the frames of {files[0].parent} ({type(e).__name__}: {e}); replace the "
                            f"clip or remove it from the split csv") from None

    def fill(mm):
        pool = ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1))
        try:
            jobs = pool.map(read, sampled)
            for i, clip in enumerate(tqdm(jobs, total=len(sampled), desc=f"caching {path.name}",
                                          disable=not progress, mininterval=2)):
                mm[i] = clip
        finally:
            pool.shutdown(wait=True, cancel_futures=True)  # an error or Ctrl-C does not wait for every clip

    write_npy(path, shape, fill)


def _load_split(name: str, spec: VideoSpec, root: Path, csv_path: Path, split: str, items, classes, frames: int,
                gap: int, side: int, seed: int, short_clips: str, cache_dir: Path, progress: bool):
    if not items:  # a split not asked for (evaluation reads the test split only)
        return np.zeros((0, spec.channel, frames, side, side), np.uint8), torch.zeros(0, dtype=torch.int64)
    clips = _list_clips(root, csv_path, items, classes)
    train = split == "train"
    sampled = [_sample(c, frames, gap, train, seed, short_clips) for c in clips]
    short = [c for c, s in zip(clips, sampled) if s is None]
    if short:
        worst = min(short, key=lambda c: len(c.frames))
        if short_clips == "shrink":  # even the smallest gap, 1, needs `frames` frames
            raise UserError(f"{name} {split}: {len(short)} clip(s) have fewer than the {frames} frames that "
                            f"--frames {frames} needs even with --short_clips shrink, e.g. {worst.folder} with "
                            f"{len(worst.frames)}; lower --frames")
        need = (frames - 1) * gap + 1
        hint = ("; --short_clips shrink samples them with a smaller gap as the original code does"
                if len(worst.frames) >= frames else "")
        raise UserError(f"{name} {split}: {len(short)} clip(s) have fewer than the {need} frames that "
                        f"--frames {frames} with --frame_gap {gap} needs, e.g. {worst.folder} with "
                        f"{len(worst.frames)}; lower --frames or --frame_gap{hint}")
    key = dict(dataset=name, split=split, frames=frames, gap=gap, side=side, seed=seed if train else None,
               short_clips=short_clips, source=_fingerprint(csv_path, sampled), version=CACHE_VERSION)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    path = cache_dir / f"{name}_{split}_f{frames}_g{gap}_r{side}_{digest}.npy"
    if not path.exists():
        _build_cache(path, sampled, spec, side, frames, progress)
    data = np.load(path, mmap_mode="r")
    if data.shape != (len(clips), spec.channel, frames, side, side):
        raise UserError(f"clip cache {path} has shape {data.shape}, not the expected one; delete it")
    return data, torch.tensor([c.label for c in clips], dtype=torch.int64)


def load(name: str, data_path: Optional[str] = None, res: Optional[int] = None, zca: bool = False,
         frames: Optional[int] = None, frame_gap: Optional[int] = None, clip_seed: int = 0,
         short_clips: str = "error", cache_dir: Optional[str] = None, progress: bool = False,
         test_only: bool = False) -> RealData:
    """Video dataset ``name`` as a RealData of clips (N, C, T, res, res) backed by the on-disk cache;
    ``test_only`` leaves the training split empty (what evaluating a synthetic set needs)."""
    if name not in VIDEO_SPECS:
        raise choice_error("dataset", name, VIDEO_DATASETS)
    if zca:
        raise UserError("--zca whitens images; it is not defined for video datasets")
    if short_clips not in SHORT_CLIPS:
        raise choice_error("short_clips", short_clips, SHORT_CLIPS)
    spec = VIDEO_SPECS[name]
    frames = spec.frames if frames is None else int(frames)
    gap = spec.gap if frame_gap is None else int(frame_gap)
    side = spec.side if res is None else int(res)
    for flag, v in (("frames", frames), ("frame_gap", gap), ("res", side)):
        if v < 1:
            raise UserError(f"--{flag} must be >= 1, got {v}")
    data = Path(data_path or DEFAULT_DATA_PATH)
    root = data / spec.folder
    csv_path = root / spec.csv
    _find(name, [root], lambda r: (r / spec.csv).is_file() and (r / FRAMES_DIR).is_dir(), None,
          spec.hint.format(root=root, data=data))
    classes, splits = _read_split_csv(csv_path)
    empty = sorted(set(classes) - {label for _, label in splits["train"]})
    if empty:
        raise UserError(f"{csv_path}: class(es) {', '.join(empty[:5])} have no train clips; every label needs some")
    if test_only:
        splits["train"] = []
    cache = Path(cache_dir or DEFAULT_CACHE_DIR)
    parts = {split: _load_split(name, spec, root, csv_path, split, items, classes, frames, gap, side, clip_seed,
                                short_clips, cache, progress) for split, items in splits.items()}
    (x_tr, y_tr), (x_te, y_te) = parts["train"], parts["test"]
    return RealData(
        name=name, channel=spec.channel, im_size=(frames, side, side), num_classes=len(classes),
        class_names=classes, mean=list(spec.mean), std=list(spec.std),
        images_train=MappedArray(x_tr, spec.mean, spec.std), labels_train=y_tr,
        images_test=MappedArray(x_te, spec.mean, spec.std), labels_test=y_te,
        indices_class=_indices_by_class(y_tr, len(classes)), domain="video")


