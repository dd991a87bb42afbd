"""Moving Fashion-MNIST: an offline stand-in for UCF101, made from the real Fashion-MNIST and written in the
UCF101 *frames layout*, so that the video loader reads it exactly as it reads UCF101.

One clip is one Fashion-MNIST garment (28x28) on a black ``size`` x ``size`` canvas (64), ``frames`` frames long
(16). The garment starts anywhere it fits, moves in a straight line at a uniform random angle and a speed drawn
uniformly from [2, 5] px per frame, and bounces off the canvas borders: a velocity component is reflected when
the garment would leave the canvas, so it always stays whole inside it. Positions are fractional; each frame
places the garment with **bilinear sub-pixel placement** (the garment is spread over the four neighbouring
integer positions with the bilinear weights, then rounded to uint8), which keeps the motion smooth and the
garment's total intensity and centre of mass exact up to rounding. The garment is pasted with ``max()`` over
the black canvas. The label is the garment's class.

Train clips are made only from Fashion-MNIST's train split and test clips only from its test split; every clip
of a (split, class) uses a different source image. Everything is reproducible from ``seed``: the source images
of a (split, class) come from a generator seeded with (seed, split, class), and each clip's motion from its own
generator seeded with (seed, split, class, index) (:func:`clip_rng`), so a clip never depends on how many other
clips are made, and asking for more clips per class only appends clips.

On disk (:func:`build`)::

    <out_root>/MovingFashionMNIST/movingfmnist_splits.csv      folder_name,label,split (one row per clip)
    <out_root>/MovingFashionMNIST/jpegs_112/<folder_name>/frame000001.png ... frame000016.png

The frames folder keeps UCF101's name ``jpegs_112`` although the frames are 64x64 grayscale (8-bit, mode 'L')
PNGs. ``folder_name`` is ``v_<label>_<split>_<index:05d>``; ``label`` is :func:`class_label` (``0_T-shirt-top``
... ``9_Ankle-boot``), whose sorted order is the class order. The build writes into a hidden temporary sibling
folder and renames it into place at the end, so an interrupted build never leaves a half-written dataset.

Command line::

    python -m common.data.moving_fmnist --data_path data --out data --train_per_class 100 --test_per_class 50
"""
from __future__ import annotations

import argparse
import csv
import io
import math
import os
import re
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np
from PIL import Image

from ..cli import run_main
from . import offline
from .images import FASHION_MNIST_CLASSES
from .offline import GARMENT, NUM_CLASSES, SPLITS, Parser, SourceImages, check_int, load_sources, refuse_existing

NAME = "MovingFashionMNIST"
CSV_NAME = "movingfmnist_splits.csv"
FRAMES_DIR = "jpegs_112"  # UCF101's folder name, kept so that the layout is exactly UCF101's
CSV_HEADER = ("folder_name", "label", "split")
BUILD_INFO = "movingfmnist_build.json"  # the build's settings (not part of UCF101's layout; its loader ignores it)
SIZE = 64
FRAMES = 16
SPEED = (2.0, 5.0)  # px per frame, drawn uniformly

# first word of every SeedSequence, so that the generators of different purposes never share a seed
_SEED_SOURCES = 1
_SEED_CLIP = 2


def class_label(c: int) -> str:
    """The csv label of class ``c``: ``f"{c}_{name}"`` with every run of characters outside [A-Za-z0-9] in the
    class name replaced by '-' (``0_T-shirt-top``, ``9_Ankle-boot``). Sorted, the labels are in class order."""
    return f"{c}_{re.sub(r'[^A-Za-z0-9]+', '-', FASHION_MNIST_CLASSES[c])}"


def frame_name(t: int) -> str:
    """File name of frame ``t`` (0-based) of a clip: frames are numbered from 1, as in UCF101's frames layout."""
    return f"frame{t + 1:06d}.png"


def folder_name(c: int, split: str, i: int) -> str:
    """UCF-style folder name of clip ``i`` of class ``c`` in ``split``."""
    return f"v_{class_label(c)}_{split}_{i:05d}"


# --------------------------------------------------------------------------------------------------------
# one clip

def bounce_path(start: Sequence[float], velocity: Sequence[float], frames: int, span: float) -> np.ndarray:
    """(frames, 2) positions (top-left y, x) of a point starting at ``start`` and moving by ``velocity`` per
    frame inside [0, span] on both axes, reflecting off the borders. Reflecting the velocity at every wall hit
    is the same as folding the unbounded straight path into [0, span], which is what this computes."""
    p = np.asarray(start, np.float64) + np.arange(frames, dtype=np.float64)[:, None] * np.asarray(velocity, np.float64)
    if span <= 0:
        return np.zeros_like(p)
    q = np.mod(p, 2 * span)
    return np.where(q > span, 2 * span - q, q)


def trajectory(rng: np.random.Generator, size: int = SIZE, frames: int = FRAMES, garment: int = GARMENT,
               speed: tuple[float, float] = SPEED) -> np.ndarray:
    """Random (frames, 2) float64 top-left positions (y, x) of a ``garment`` x ``garment`` object on a ``size``
    canvas: uniform start where it fits, uniform angle, speed uniform in ``speed`` px per frame, bouncing off the
    borders. Draws, in order: start y and x, angle, speed."""
    span = size - garment
    start = rng.uniform(0.0, span, size=2)
    angle = rng.uniform(0.0, 2 * math.pi)
    v = rng.uniform(*speed)
    return bounce_path(start, (v * math.sin(angle), v * math.cos(angle)), frames, span)


def render(image: np.ndarray, positions: np.ndarray, size: int = SIZE) -> np.ndarray:
    """(frames, size, size) uint8 clip of ``image`` (h, w uint8) placed at each (fractional, top-left y, x)
    position with bilinear sub-pixel placement, pasted with max() over a black canvas. Positions must keep the
    image inside the canvas (0 <= y <= size - h, same for x)."""
    img = np.asarray(image, np.float32)
    h, w = img.shape
    clip = np.zeros((len(positions), size, size), np.uint8)
    for t, (y, x) in enumerate(np.asarray(positions, np.float64)):
        iy, ix = int(math.floor(y)), int(math.floor(x))
        fy, fx = np.float32(y - iy), np.float32(x - ix)
        patch = np.zeros((h + 1, w + 1), np.float32)
        patch[:h, :w] += (1 - fy) * (1 - fx) * img
        patch[1:, :w] += fy * (1 - fx) * img
        patch[:h, 1:] += (1 - fy) * fx * img
        patch[1:, 1:] += fy * fx * img
        # at the far border the extra row/column has weight 0 and falls outside the canvas
        ph, pw = min(h + 1, size - iy), min(w + 1, size - ix)
        pasted = np.rint(np.clip(patch[:ph, :pw], 0, 255)).astype(np.uint8)
        region = clip[t, iy:iy + ph, ix:ix + pw]
        np.maximum(region, pasted, out=region)
    return clip


def make_clip(image: np.ndarray, rng: np.random.Generator, size: int = SIZE, frames: int = FRAMES) -> np.ndarray:
    """(frames, size, size) uint8 clip of the 28x28 uint8 ``image`` moving along :func:`trajectory`\\ (rng, ...);
    a copy of ``rng`` given to :func:`trajectory` gives the positions used."""
    image = np.asarray(image)
    if image.ndim != 2 or image.shape[0] != image.shape[1]:
        raise ValueError(f"expected a square 2-D image, got shape {image.shape}")
    return render(image, trajectory(rng, size, frames, garment=image.shape[0]), size)


def clip_rng(seed: int, split: str, c: int, i: int) -> np.random.Generator:
    """The generator of clip ``i`` of class ``c`` in ``split``: it depends on nothing else."""
    return offline.rng(_SEED_CLIP, seed, split, c, i)


def choose_sources(labels: np.ndarray, per_class: int, seed: int, split: str) -> np.ndarray:
    """(num_classes, per_class) distinct source images per class of ``split``, seeded with (seed, split, class)
    (:func:`common.data.offline.choose_sources`, this dataset's stream)."""
    return offline.choose_sources(labels, per_class, seed, split, _SEED_SOURCES)


# --------------------------------------------------------------------------------------------------------
# the dataset on disk

class _Job(NamedTuple):
    split: str
    c: int
    i: int
    source: int  # index of the source image in its split


def _save_png(frame: np.ndarray, path: Path) -> None:
    """Write one frame as an 8-bit grayscale PNG (no timestamp or other varying chunk: same pixels, same bytes)."""
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="PNG")
    path.write_bytes(buf.getvalue())


def _write_clip(root: Path, job: _Job, images: np.ndarray, seed: int, size: int, frames: int) -> tuple[int, int]:
    """Render and write one clip under ``root``; returns the sum and the sum of squares of its uint8 pixels."""
    clip = make_clip(images[job.source], clip_rng(seed, job.split, job.c, job.i), size, frames)
    folder = root / FRAMES_DIR / folder_name(job.c, job.split, job.i)
    folder.mkdir()
    for t in range(frames):
        _save_png(clip[t], folder / frame_name(t))
    flat = clip.reshape(-1).astype(np.int64)
    return int(flat.sum()), int(flat @ flat)


def build(out_root: str | os.PathLike, data_path: str | os.PathLike = "data", train_per_class: int = 100,
          test_per_class: int = 50, seed: int = 0, frames: int = FRAMES, size: int = SIZE, overwrite: bool = False,
          progress: bool = True, workers: int | None = None) -> Path:
    """Write Moving Fashion-MNIST into ``<out_root>/MovingFashionMNIST`` (layout in the module docstring) and
    return that folder. ``train_per_class``/``test_per_class`` clips per class from Fashion-MNIST's train/test
    split; ``frames`` frames of ``size`` x ``size``. The same arguments give byte-identical files. An existing
    dataset is replaced only with ``overwrite``. Prints where it wrote, the counts, and the mean and std of the
    train pixels in [0, 1]. ``workers``: threads writing clips (default: the CPU count, at most 8)."""
    train_per_class = check_int("--train_per_class", train_per_class, 1)
    test_per_class = check_int("--test_per_class", test_per_class, 1)
    frames = check_int("--frames", frames, 1)
    size = check_int("--size", size, GARMENT)
    seed = check_int("--seed", seed, 0)
    workers = check_int("workers", workers, 1) if workers is not None else min(8, os.cpu_count() or 1)
    out_root = Path(out_root)
    target = out_root / NAME
    refuse_existing(target, overwrite)

    started = time.perf_counter()
    src = load_sources(data_path)
    per_class = {"train": train_per_class, "test": test_per_class}
    jobs = [_Job(split, c, i, int(s))
            for split in SPLITS
            for c, row in enumerate(choose_sources(src.split(split)[1], per_class[split], seed, split))
            for i, s in enumerate(row)]

    with offline.atomic_folder(out_root, NAME, overwrite) as partial:
        (partial / FRAMES_DIR).mkdir()
        total, total_sq, n_train = _write_clips(partial, jobs, src, seed, size, frames, workers, progress)
        with open(partial / CSV_NAME, "w", newline="") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(CSV_HEADER)
            writer.writerows((folder_name(j.c, j.split, j.i), class_label(j.c), j.split) for j in jobs)
        settings = dict(train_per_class=train_per_class, test_per_class=test_per_class, seed=seed, frames=frames,
                        size=size)
        offline.write_build_info(partial, BUILD_INFO, settings)

    n_pixels = n_train * frames * size * size
    mean = total / n_pixels / 255
    std = math.sqrt(max(total_sq / n_pixels / 255 ** 2 - mean ** 2, 0.0))
    n_test = len(jobs) - n_train
    print(f"wrote {target}: {n_train} train + {n_test} test clips ({NUM_CLASSES} classes, {train_per_class} train "
          f"and {test_per_class} test per class), {frames} frames of {size}x{size}, seed {seed}, "
          f"in {time.perf_counter() - started:.1f} s")
    print(f"train pixels in [0, 1]: mean {mean:.4f} std {std:.4f}")
    return target


def train_count(data_path: str | os.PathLike) -> int:
    """How many training clips the set in ``<data_path>/MovingFashionMNIST`` holds (its split file)."""
    with open(Path(data_path) / NAME / CSV_NAME, newline="") as f:
        return sum(1 for row in csv.DictReader(f) if row["split"] == "train")


def _write_clips(root: Path, jobs: list[_Job], src: SourceImages, seed: int, size: int, frames: int, workers: int,
                 progress: bool) -> tuple[int, int, int]:
    """Write every clip of ``jobs``; returns the pixel sum, sum of squares and clip count of the train clips
    (exact integers, so independent of the order the threads finish in)."""
    from tqdm.auto import tqdm

    total = total_sq = n_train = 0
    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        futures = [pool.submit(_write_clip, root, j, src.split(j.split)[0], seed, size, frames) for j in jobs]
        for job, fut in zip(jobs, tqdm(futures, desc=f"{NAME} clips", disable=not progress, file=sys.stderr)):
            s, sq = fut.result()
            if job.split == "train":
                total, total_sq, n_train = total + s, total_sq + sq, n_train + 1
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # nothing still writing when the caller cleans up
    return total, total_sq, n_train


# --------------------------------------------------------------------------------------------------------
# command line

def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m common.data.moving_fmnist",
                description="Write Moving Fashion-MNIST (an offline UCF101 stand-in) in the UCF101 frames layout.",
                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data_path", default="data", help="where Fashion-MNIST is (also looks in the Debian path)")
    p.add_argument("--out", default="data", help=f"output root; the dataset goes to <out>/{NAME}")
    p.add_argument("--train_per_class", type=int, default=100, help="train clips per class")
    p.add_argument("--test_per_class", type=int, default=50, help="test clips per class")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--frames", type=int, default=FRAMES, help="frames per clip")
    p.add_argument("--size", type=int, default=SIZE, help="canvas side in pixels (at least 28)")
    p.add_argument("--overwrite", action="store_true", help=f"replace an existing <out>/{NAME}")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="progress bar")
    return p


def main(argv: Sequence[str] | None = None) -> Path:
    a = build_parser().parse_args(argv)
    return build(a.out, a.data_path, a.train_per_class, a.test_per_class, a.seed, a.frames, a.size, a.overwrite,
                 a.progress)


if __name__ == "__main__":
    run_main(main)
