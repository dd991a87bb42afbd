"""Voxel Fashion-MNIST: an offline stand-in for ModelNet, made from the real Fashion-MNIST in the spirit of
3D-MNIST and written in ModelNet's point-cloud layout (``modelnet40_normal_resampled``), so that the point-cloud
reader and voxeliser read it exactly as they read ModelNet.

One shape is one Fashion-MNIST garment (28x28 uint8) turned into a solid: every pixel brighter than
``THRESHOLD`` * 255 becomes a column of its 1x1 pixel square extruded along z into a symmetric slab
``[-h/2, h/2]`` whose thickness follows the pixel's intensity, ``h = MIN_THICKNESS + (MAX_THICKNESS -
MIN_THICKNESS) * intensity / 255`` (1 to 8 pixel units) (:func:`solid_mask`). Pixel (r, c) spans
``x in [c, c+1]`` and ``y in [27-r, 28-r]`` (image rows go down, y goes up). The solid's surface is the top and
bottom face of every column (normals +z and -z) and the side walls where a column meets a lower column or the
background (normals +-x, +-y; the wall is the part of the taller column above the lower one, ``h'/2 <= |z| <=
h/2``). ``points`` points (2048) are sampled on that surface uniformly by area, each with the outward unit normal
of its face (:func:`sample_surface`). The shape is then centred on the centre of its bounding box, scaled so that
its bounding sphere about that centre is the unit sphere (:func:`bounding_sphere`), and turned (``rotation``,
:data:`ROTATIONS`): by default ``upright``, about the vertical axis y by a uniform random angle
(:func:`upright_rotation`), as ModelNet's shapes stand upright and differ in heading; ``so3`` by a uniform random
3-D rotation (a random unit quaternion, :func:`random_rotation`; the only choice before issue 22, too hard for a
CPU table); ``none`` not at all. Normals get the same rotation (:func:`surface_points`). The label is the
garment's class.

Train shapes are made only from Fashion-MNIST's train split and test shapes only from its test split; every shape
of a (split, class) uses a different source image. Everything is reproducible from ``seed``: the source images
of a (split, class) come from a generator seeded with (seed, split, class), and each shape's rotation and
points from its own generator seeded with (seed, split, class, index) (:func:`shape_rng`), so a shape never
depends on how many other shapes are made.

On disk (:func:`build`), as ModelNet40's ``modelnet40_normal_resampled``::

    <out_root>/VoxelFashionMNIST/voxelfmnist_shape_names.txt   class names, one a line, in label order
    <out_root>/VoxelFashionMNIST/voxelfmnist_train.txt          shape ids, one a line
    <out_root>/VoxelFashionMNIST/voxelfmnist_test.txt
    <out_root>/VoxelFashionMNIST/<class>/<id>.txt               one point a line: x,y,z,nx,ny,nz (6 decimals)
    <out_root>/VoxelFashionMNIST/voxelfmnist_build.json         the build's settings (not ModelNet's; ignored by
                                                                its reader)

Class names are :func:`class_name` (``t_shirt_top``, ``trouser``, ... ``ankle_boot``); a shape id is
``<class>_<NNNN>`` (:func:`shape_id`), numbered from 0001 per class over the train shapes then the test shapes,
so that, as in ModelNet, the class of an id is the id without its last ``_NNNN``. The build writes into a hidden
temporary sibling folder and renames it into place at the end, so an interrupted build never leaves a
half-written dataset.

Command line::

    python -m common.data.voxel_fmnist --data_path data --out data --train_per_class 100 --test_per_class 50
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np

from ..cli import run_main
from ..errors import UserError
from . import offline
from .images import FASHION_MNIST_CLASSES
from .offline import NUM_CLASSES, SPLITS, Parser, SourceImages, check_int, load_sources, refuse_existing

NAME = "VoxelFashionMNIST"
PREFIX = "voxelfmnist"
SHAPE_NAMES = f"{PREFIX}_shape_names.txt"
BUILD_INFO = f"{PREFIX}_build.json"  # the build's settings (not part of ModelNet's layout; its reader ignores it)
POINTS = 2048
THRESHOLD = 0.1  # a pixel is part of the silhouette when its intensity is above THRESHOLD * 255
MIN_THICKNESS = 1.0  # z extent (in pixel units) of a column of intensity 0 ...
MAX_THICKNESS = 8.0  # ... and of intensity 255, linear in between

# first word of every SeedSequence, so that the generators of different purposes never share a seed (and never
# those of moving_fmnist, whose words are 1 and 2)
_SEED_SOURCES = 11
_SEED_SHAPE = 12

# the six face directions: +z (top), -z (bottom), then the walls towards column c+1, c-1, row r-1, row r+1
_NORMALS = np.array([[0, 0, 1], [0, 0, -1], [1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0]], np.float64)
_WALLS = ((2, 0, 1), (3, 0, -1), (4, -1, 0), (5, 1, 0))  # (direction, row step, column step) to the neighbour


def class_name(c: int) -> str:
    """Folder and id name of class ``c``: the Fashion-MNIST class name with every run of characters outside
    [A-Za-z0-9] replaced by '_', lower-cased (``t_shirt_top``, ``trouser``, ... ``ankle_boot``)."""
    return re.sub(r"[^A-Za-z0-9]+", "_", FASHION_MNIST_CLASSES[c]).lower()


def shape_id(c: int, number: int) -> str:
    """ModelNet-style id of shape ``number`` (from 1) of class ``c``: ``<class>_<NNNN>``."""
    return f"{class_name(c)}_{number:04d}"


def list_name(split: str) -> str:
    """File name of the id list of ``split``."""
    return f"{PREFIX}_{split}.txt"


# --------------------------------------------------------------------------------------------------------
# one shape

def solid_mask(image: np.ndarray) -> np.ndarray:
    """(h, w) float64 column heights (z extents, in pixel units) of the solid made from the uint8 ``image``: 0
    outside the silhouette (intensity <= THRESHOLD * 255), else ``MIN_THICKNESS + (MAX_THICKNESS -
    MIN_THICKNESS) * intensity / 255``."""
    img = np.asarray(image)
    if img.ndim != 2:
        raise ValueError(f"expected a 2-D image, got shape {img.shape}")
    v = img.astype(np.float64)
    h = MIN_THICKNESS + (MAX_THICKNESS - MIN_THICKNESS) * v / 255.0
    return np.where(v > THRESHOLD * 255.0, h, 0.0)


def _faces(heights: np.ndarray) -> tuple[np.ndarray, ...]:
    """Every face of the solid's surface as parallel arrays (direction, row, column, area, low, high): a top or
    bottom face (direction 0/1, area 1) per column, and a wall (direction 2-5) per side where the column is
    taller than its neighbour (the background and outside the image count as height 0); a wall covers
    low <= |z| <= high with low, high the halves of the neighbour's and the column's heights."""
    hgt = np.asarray(heights, np.float64)
    rows, cols = hgt.shape
    padded = np.zeros((rows + 2, cols + 2))
    padded[1:-1, 1:-1] = hgt
    r, c = np.nonzero(hgt > 0)  # row-major order: deterministic
    h = hgt[r, c]
    parts = [(np.zeros_like(r), r, c, np.ones_like(h), h / 2, h / 2),
             (np.ones_like(r), r, c, np.ones_like(h), h / 2, h / 2)]
    for d, dr, dc in _WALLS:
        n = padded[r + 1 + dr, c + 1 + dc]
        keep = h > n
        parts.append((np.full(int(keep.sum()), d), r[keep], c[keep], h[keep] - n[keep], n[keep] / 2, h[keep] / 2))
    return tuple(np.concatenate(a) for a in zip(*parts))


def sample_surface(heights: np.ndarray, rng: np.random.Generator, n: int = POINTS) -> np.ndarray:
    """(n, 6) float64 points and outward unit normals ``x, y, z, nx, ny, nz`` sampled uniformly by area on the
    surface of the solid of column ``heights`` (:func:`solid_mask`), in pixel units: pixel (r, c) spans
    ``x in [c, c+1]``, ``y in [rows-1-r, rows-r]``, ``z in [-h/2, h/2]``. Draws, in order: n uniforms choosing
    the faces, then (n, 2) uniforms placing the points on them."""
    d, r, c, area, low, high = _faces(heights)
    if len(d) == 0:
        raise ValueError("the image has no pixel above the threshold: its solid is empty")
    rows = np.asarray(heights).shape[0]
    cum = np.cumsum(area)
    pick = np.minimum(np.searchsorted(cum, rng.random(n) * cum[-1], side="right"), len(d) - 1)
    d, r, c, low, high = d[pick], r[pick], c[pick], low[pick], high[pick]
    u, t = rng.random((2, n))
    x0, y0 = c.astype(np.float64), (rows - 1 - r).astype(np.float64)  # lower corner of the pixel square
    # top/bottom: (u, t) places the point in the square; walls: u along the edge, t over the two z strips
    s = 2 * t - 1
    z_wall = np.where(s < 0, -1.0, 1.0) * (low + np.abs(s) * (high - low))
    x = np.select([d <= 1, d == 2, d == 3], [x0 + u, x0 + 1, x0], x0 + u)
    y = np.select([d <= 1, d == 4, d == 5], [y0 + t, y0 + 1, y0], y0 + u)
    z = np.select([d == 0, d == 1], [high, -high], z_wall)
    return np.concatenate([np.stack([x, y, z], axis=1), _NORMALS[d]], axis=1)


def bounding_sphere(heights: np.ndarray) -> tuple[np.ndarray, float]:
    """(centre, radius) of the solid of column ``heights`` in :func:`sample_surface`'s pixel units: the centre
    of its bounding box and the largest distance from there to a corner of a column (so every point of the
    solid is within radius of the centre, and some corner is exactly at it)."""
    hgt = np.asarray(heights, np.float64)
    rows = hgt.shape[0]
    r, c = np.nonzero(hgt > 0)
    if len(r) == 0:
        raise ValueError("the image has no pixel above the threshold: its solid is empty")
    h = hgt[r, c]
    x0, y0 = c.astype(np.float64), (rows - 1 - r).astype(np.float64)
    centre = np.array([(x0.min() + x0.max() + 1) / 2, (y0.min() + y0.max() + 1) / 2, 0.0])
    dx = np.maximum(np.abs(x0 - centre[0]), np.abs(x0 + 1 - centre[0]))
    dy = np.maximum(np.abs(y0 - centre[1]), np.abs(y0 + 1 - centre[1]))
    return centre, float(np.sqrt(dx ** 2 + dy ** 2 + (h / 2) ** 2).max())


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """(3, 3) float64 rotation matrix drawn uniformly from SO(3): the rotation of a uniform random unit
    quaternion (four standard normals, normalised). Draws 4 standard normals."""
    q = rng.standard_normal(4)
    while not np.linalg.norm(q) > 1e-12:  # practically never
        q = rng.standard_normal(4)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


def upright_rotation(rng: np.random.Generator) -> np.ndarray:
    """(3, 3) float64 rotation about the vertical axis y (the garment's up) by a uniform random angle in [0, 2 pi),
    as ModelNet's upright shapes are turned: one uniform draw."""
    a = rng.uniform(0.0, 2 * np.pi)
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


# how each shape is turned: uniformly in 3-D, about the vertical axis only, or not at all
ROTATIONS = {"so3": random_rotation, "upright": upright_rotation, "none": lambda rng: np.eye(3)}
ROTATION = "upright"


def surface_points(image: np.ndarray, rng: np.random.Generator, n: int = POINTS,
                   rotation: str = ROTATION) -> np.ndarray:
    """(n, 6) float32 ``x, y, z, nx, ny, nz`` of one shape: ``R = ROTATIONS[rotation](rng)``, then ``p =
    sample_surface(solid_mask(image), rng, n)``; points are ``(p[:, :3] - centre) / radius @ R.T`` with
    (centre, radius) the :func:`bounding_sphere`, so that they fit the unit sphere, and normals
    ``p[:, 3:] @ R.T``."""
    heights = solid_mask(image)
    rot = ROTATIONS[rotation](rng)
    p = sample_surface(heights, rng, n)
    centre, radius = bounding_sphere(heights)
    xyz = ((p[:, :3] - centre) / radius) @ rot.T
    return np.concatenate([xyz, p[:, 3:] @ rot.T], axis=1).astype(np.float32)


def format_points(points: np.ndarray) -> str:
    """The text of a point file: one ``x,y,z,nx,ny,nz`` line per point, 6 decimals, no '-0.000000'."""
    a = np.asarray(points, np.float64)
    if a.ndim != 2 or a.shape[1] != 6:
        raise ValueError(f"expected (n, 6) points, got shape {a.shape}")
    a = np.where(np.abs(a) < 5e-7, 0.0, a)  # what would print as -0.000000 prints as 0.000000
    return ("%.6f,%.6f,%.6f,%.6f,%.6f,%.6f\n" * len(a)) % tuple(a.ravel().tolist())


def shape_rng(seed: int, split: str, c: int, i: int) -> np.random.Generator:
    """The generator of shape ``i`` (0-based within its split) of class ``c`` in ``split``: it depends on
    nothing else."""
    return offline.rng(_SEED_SHAPE, seed, split, c, i)


def choose_sources(labels: np.ndarray, per_class: int, seed: int, split: str) -> np.ndarray:
    """(num_classes, per_class) distinct source images per class of ``split``, seeded with (seed, split, class)
    (:func:`common.data.offline.choose_sources`, this dataset's stream)."""
    return offline.choose_sources(labels, per_class, seed, split, _SEED_SOURCES)


# --------------------------------------------------------------------------------------------------------
# the dataset on disk

class Shape(NamedTuple):
    """One shape to write: shape ``i`` of class ``c`` in ``split``, made from image ``source`` of that split."""
    split: str
    c: int
    i: int
    source: int
    id: str


def plan(src: SourceImages, train_per_class: int, test_per_class: int, seed: int) -> list[Shape]:
    """Every shape of the dataset, by class, train before test, with its id and source image."""
    chosen = {"train": choose_sources(src.y_train, train_per_class, seed, "train"),
              "test": choose_sources(src.y_test, test_per_class, seed, "test")}
    shapes = []
    for c in range(NUM_CLASSES):
        number = 1
        for split in SPLITS:
            for i, s in enumerate(chosen[split][c]):
                shapes.append(Shape(split, c, i, int(s), shape_id(c, number)))
                number += 1
    return shapes


def train_count(data_path: str | os.PathLike) -> int:
    """How many training shapes the set in ``<data_path>/VoxelFashionMNIST`` holds (its train list)."""
    with open(Path(data_path) / NAME / list_name("train")) as f:
        return sum(1 for line in f if line.strip())


def _save_points(points: np.ndarray, path: Path) -> None:
    path.write_bytes(format_points(points).encode("ascii"))


def build(out_root: str | os.PathLike, data_path: str | os.PathLike = "data", train_per_class: int = 100,
          test_per_class: int = 50, seed: int = 0, points: int = POINTS, overwrite: bool = False,
          progress: bool = True, rotation: str = ROTATION) -> Path:
    """Write Voxel Fashion-MNIST into ``<out_root>/VoxelFashionMNIST`` (layout in the module docstring) and
    return that folder. ``train_per_class``/``test_per_class`` shapes per class from Fashion-MNIST's train/test
    split, ``points`` points each. The same arguments give byte-identical files. An existing dataset is replaced
    only with ``overwrite``. Prints where it wrote and the counts."""
    train_per_class = check_int("--train_per_class", train_per_class, 1)
    test_per_class = check_int("--test_per_class", test_per_class, 1)
    points = check_int("--points", points, 1)
    seed = check_int("--seed", seed, 0)
    if rotation not in ROTATIONS:
        raise UserError(f"--rotation {rotation!r}: choose one of {', '.join(ROTATIONS)}")
    out_root = Path(out_root)
    target = out_root / NAME
    refuse_existing(target, overwrite)

    started = time.perf_counter()
    src = load_sources(data_path)
    shapes = plan(src, train_per_class, test_per_class, seed)

    with offline.atomic_folder(out_root, NAME, overwrite) as partial:
        _write_shapes(partial, shapes, src, seed, points, progress, rotation)
        settings = dict(train_per_class=train_per_class, test_per_class=test_per_class, seed=seed, points=points,
                        rotation=rotation)
        offline.write_build_info(partial, BUILD_INFO, settings)
        (partial / SHAPE_NAMES).write_text("".join(f"{class_name(c)}\n" for c in range(NUM_CLASSES)))
        for split in SPLITS:
            (partial / list_name(split)).write_text("".join(f"{s.id}\n" for s in shapes if s.split == split))

    n_train = sum(s.split == "train" for s in shapes)
    print(f"wrote {target}: {n_train} train + {len(shapes) - n_train} test shapes ({NUM_CLASSES} classes, "
          f"{train_per_class} train and {test_per_class} test per class), {points} points each, rotation "
          f"{rotation}, seed {seed}, "
          f"in {time.perf_counter() - started:.1f} s")
    return target


def _write_shapes(root: Path, shapes: list[Shape], src: SourceImages, seed: int, points: int,
                  progress: bool, rotation: str = ROTATION) -> None:
    from tqdm.auto import tqdm

    for c in range(NUM_CLASSES):
        (root / class_name(c)).mkdir()
    for s in tqdm(shapes, desc=f"{NAME} shapes", disable=not progress, file=sys.stderr):
        cloud = surface_points(src.split(s.split)[0][s.source], shape_rng(seed, s.split, s.c, s.i), points,
                               rotation)
        _save_points(cloud, root / class_name(s.c) / f"{s.id}.txt")


# --------------------------------------------------------------------------------------------------------
# command line

def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m common.data.voxel_fmnist",
                description="Write Voxel Fashion-MNIST (an offline ModelNet stand-in) in the ModelNet point-cloud "
                            "layout (modelnet40_normal_resampled).",
                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data_path", default="data", help="where Fashion-MNIST is (also looks in the Debian path)")
    p.add_argument("--out", default="data", help=f"output root; the dataset goes to <out>/{NAME}")
    p.add_argument("--train_per_class", type=int, default=100, help="train shapes per class")
    p.add_argument("--test_per_class", type=int, default=50, help="test shapes per class")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--points", type=int, default=POINTS, help="surface points per shape")
    p.add_argument("--rotation", default=ROTATION, choices=list(ROTATIONS),
                   help="how each shape is turned: about the vertical axis (as ModelNet's upright shapes), "
                        "uniformly in 3-D, or not at all")
    p.add_argument("--overwrite", action="store_true", help=f"replace an existing <out>/{NAME}")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="progress bar")
    return p


def main(argv: Sequence[str] | None = None) -> Path:
    a = build_parser().parse_args(argv)
    return build(a.out, a.data_path, a.train_per_class, a.test_per_class, a.seed, a.points, a.overwrite,
                 a.progress, a.rotation)


if __name__ == "__main__":
    run_main(main)
