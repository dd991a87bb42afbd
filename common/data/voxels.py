"""3-D voxel datasets: ModelNet10/40, ShapeNet (part-annotation benchmark), 3D-MNIST and the offline
VoxelFashionMNIST, as occupancy grids (N, 1, res, res, res).

Layouts under ``data_path``:

* Point-cloud lists (ModelNet in the PointNet++ ``modelnet40_normal_resampled`` layout; VoxelFashionMNIST, which
  its generator writes in the same layout): ``<folder>/<prefix>_shape_names.txt`` (one class per line, the line
  order is the label), ``<prefix>_train.txt`` / ``<prefix>_test.txt`` (one shape id per line, e.g.
  ``night_stand_0001``: the class is the id without its last ``_NNNN``) and ``<folder>/<class>/<id>.txt``, one
  point per line, ``x,y,z,nx,ny,nz`` (only x, y, z are used). ModelNet10 and ModelNet40 share the folder, with
  the prefixes ``modelnet10`` and ``modelnet40``.
* ModelNet OFF meshes (the original archive), read when the point-cloud folder is absent:
  ``ModelNet10/<class>/{train,test}/*.off`` (and ``ModelNet40/...``); classes are the sorted class folders.
  Polygons are triangulated as fans and :data:`OFF_POINTS` surface points are sampled by triangle area from a
  generator seeded by the file name (the same file always gives the same points).
* ShapeNet: ``shapenetcore_partanno_segmentation_benchmark_v0_normal/synsetoffset2category.txt`` (lines
  ``Airplane<TAB>02691156``; the line order is the label), ``train_test_split/shuffled_{train,test}_file_list.json``
  (lists of ``shape_data/<synset>/<id>``) and ``<synset>/<id>.txt`` with lines ``x y z nx ny nz part``.
* 3D-MNIST: ``3DMNIST/full_dataset_vectors.h5`` with ``X_train``/``X_test`` (N x 4096 values in [0, 1], the
  flattened 16^3 grids) and ``y_train``/``y_test``. The grids are given (no voxeliser); another ``res`` resizes
  them trilinearly.

Axis convention: ``grid[i, j, k]`` is the voxel at x-index i, y-index j, z-index k, i.e. the (D, H, W) axes of a
Conv3d are (x, y, z) of the source coordinates -- the order in which 3D-MNIST flattened its grids, so every
dataset here agrees. The coordinates are used as the files give them (ModelNet's resampled clouds are y-up, its
OFF meshes z-up; nothing is rotated).

:func:`voxelise` normalises isotropically: the bounding box is centred and ONE scale (from the largest extent)
maps the shape into the grid, so aspect ratios are kept and a flat axis does not divide by zero (it lands in
the middle slice). ``solid=True`` fills the interior enclosed by the surface shell, after closing the pinholes a
sampled surface leaves (a shell open wider than about two voxels stays hollow).

The grids are computed once per (dataset, split, res, solid, source fingerprint, :data:`CACHE_VERSION`) into a
uint8 (0/255) ``.npy`` in ``cache_dir``, written atomically and memory-mapped; the split tensors are
:class:`~common.data.base.MappedArray` with mean 0 and std 1, so indexing gives 0/1 float occupancy (3D-MNIST
its [0, 1] values, quantised to 1/255).
"""
from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..atomic import write_npy
from ..errors import DatasetNotFoundError, UserError, choice_error
from ..utils import derive_seed
from .base import DEFAULT_DATA_PATH, MappedArray, RealData, _find, _indices_by_class

DEFAULT_CACHE_DIR = os.path.join("cache", "voxels")
# part of every cache key: raise it when a change to reading or voxelising changes the cached grids
CACHE_VERSION = 2  # 2: half-open bins on every axis (the shorter axes gained a voxel at their far face)
OFF_POINTS = 10_000  # surface points sampled from every OFF mesh
MNIST3D_SIDE = 16
MNIST3D_KEYS = ("X_train", "y_train", "X_test", "y_test")
SPLITS = ("train", "test")


@dataclass(frozen=True)
class VoxelSpec:
    layout: str  # "pointlist" (with the OFF archive as fallback when off_folder is set), "shapenet" or "h5"
    folder: str  # under data_path
    prefix: Optional[str]  # pointlist: file-name prefix of the shape-names and split lists
    res: int  # default side of the grid
    off_folder: Optional[str]  # pointlist: the original OFF archive's folder, read when `folder` is absent
    hint: str  # how to get it ({data}: data_path, {root}: the folder)


_MODELNET_HINT = ("unzip the PointNet++ modelnet40_normal_resampled.zip into {data}/ (it holds ModelNet10 and 40), "
                  "or the original Princeton {off}.zip (OFF meshes, whose top folder is {off}/) into {data}/")
VOXEL_SPECS: dict[str, VoxelSpec] = {
    "ModelNet10": VoxelSpec("pointlist", "modelnet40_normal_resampled", "modelnet10", 32, "ModelNet10",
                            _MODELNET_HINT),
    "ModelNet40": VoxelSpec("pointlist", "modelnet40_normal_resampled", "modelnet40", 32, "ModelNet40",
                            _MODELNET_HINT),
    "ShapeNet": VoxelSpec("shapenet", "shapenetcore_partanno_segmentation_benchmark_v0_normal", None, 32, None,
                          "unzip shapenetcore_partanno_segmentation_benchmark_v0_normal.zip (the ShapeNet "
                          "part-annotation benchmark with normals) into {data}/"),
    "3DMNIST": VoxelSpec("h5", "3DMNIST", None, MNIST3D_SIDE, None,
                         "download full_dataset_vectors.h5 of the Kaggle dataset daavoo/3d-mnist into {root}/"),
    "VoxelFashionMNIST": VoxelSpec("pointlist", "VoxelFashionMNIST", "voxelfmnist", 32, None,
                                   "build it from Fashion-MNIST: python -m common.data.voxel_fmnist "
                                   "--data_path {data} --out {data}"),
}
VOXEL_DATASETS: tuple[str, ...] = tuple(VOXEL_SPECS)


# ---- the voxeliser -------------------------------------------------------------------------------------


def voxelise(points, res: int, solid: bool = False) -> np.ndarray:
    """(res, res, res) bool occupancy of a point cloud (P, >=3): ``grid[i, j, k]`` for x, y, z.

    The bounding box is centred in the grid and scaled by one factor, res / (its largest extent), so the shape
    spans the grid along its longest axis and keeps its aspect ratio; a voxel is occupied when a point falls in
    it (floor of the scaled coordinate; the bins are half-open on every axis, the scale a hair below res / extent,
    so the far face of the longest axis lands in the last voxel and a shorter axis spans exactly its share). An axis
    of zero extent lands in the middle slice (res // 2); a single point in the middle voxel. Non-finite points
    are dropped. ``solid`` fills the interior the surface shell encloses (:func:`fill_solid`)."""
    res = int(res)
    if res < 1:
        raise ValueError(f"res must be >= 1, got {res}")
    p = np.asarray(points, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 3:
        raise ValueError(f"points must be (P, 3), got shape {p.shape}")
    p = p[:, :3]
    p = p[np.isfinite(p).all(axis=1)]
    grid = np.zeros((res, res, res), dtype=bool)
    if not len(p):
        return grid
    lo, hi = p.min(axis=0), p.max(axis=0)
    extent = float((hi - lo).max())
    scale = res * (1 - 1e-9) / extent if extent > 0 else 0.0
    q = (p - (lo + hi) / 2) * scale + res / 2
    idx = np.clip(np.floor(q), 0, res - 1).astype(np.intp)
    grid[idx[:, 0], idx[:, 1], idx[:, 2]] = True
    return fill_solid(grid) if solid else grid


def fill_solid(shell: np.ndarray) -> np.ndarray:
    """The shell and the interior it encloses. Sampled surfaces leave pinholes that would let the outside leak
    in, so the shell is first closed morphologically (a 3x3x3 dilation then erosion, on a grid padded so the
    border is not eroded: gaps up to about two voxels wide close), then scipy's binary_fill_holes fills what
    the outside cannot reach. A shell open wider than that (a cup, a shape cut by the grid) stays hollow."""
    from scipy import ndimage

    cube = np.ones((3, 3, 3), dtype=bool)
    closed = ndimage.binary_closing(np.pad(shell, 2), structure=cube)
    return ndimage.binary_fill_holes(closed)[2:-2, 2:-2, 2:-2] | shell


# ---- reading points and meshes -------------------------------------------------------------------------


def _bad_line(path: Path, lines: Sequence[str], ncol: int) -> UserError:
    """The error for the first line of a point file that is not ``ncol`` numbers."""
    for n, line in enumerate(lines, 1):
        tokens = line.replace(",", " ").split()
        if not tokens:
            continue
        try:
            [float(t) for t in tokens]
        except ValueError:
            return UserError(f"{path} line {n}: not a list of numbers: {line.strip()[:80]!r}")
        if len(tokens) != ncol:
            return UserError(f"{path} line {n}: {len(tokens)} values, but the first line has {ncol}")
    return UserError(f"{path}: cannot read its points")


def read_points(path) -> np.ndarray:
    """(P, 3) float32 x, y, z of a point file: one point per line, comma- or space-separated, extra columns
    (normals, part labels) ignored. An unreadable file, or a point with a NaN or infinite coordinate, is a
    UserError naming the file and the line."""
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read {path} ({type(e).__name__}: {e})") from None
    lines = text.splitlines()
    rows = [line for line in lines if line.strip()]
    if not rows:
        raise UserError(f"{path} has no points")
    ncol = len(rows[0].replace(",", " ").split())
    if ncol < 3:
        raise UserError(f"{path} line 1: {ncol} value(s); a point line has at least x, y, z")
    try:
        with np.errstate(over="ignore"):  # a value beyond float32 becomes inf, reported below with its line
            values = np.array(text.replace(",", " ").split(), dtype=np.float32)
    except ValueError:
        raise _bad_line(path, lines, ncol) from None
    if values.size != ncol * len(rows):
        raise _bad_line(path, lines, ncol)
    points = values.reshape(len(rows), ncol)[:, :3]
    bad = ~np.isfinite(points).all(axis=1)
    if bad.any():
        i = int(np.argmax(bad))
        n = [k for k, line in enumerate(lines, 1) if line.strip()][i]
        raise UserError(f"{path} line {n}: a point that is not finite (NaN, inf or beyond float32): "
                        f"{lines[n - 1].strip()[:80]!r}")
    return points


def read_off(path) -> tuple[np.ndarray, np.ndarray]:
    """(vertices (V, 3) float64, triangles (T, 3) int64) of an OFF mesh. Accepts ``#`` comments, blank lines,
    the header glued to the counts (``OFF490 518 0``, as in some ModelNet files) and extra columns (colours);
    polygons are triangulated as fans. A file that does not parse, or a vertex with a NaN or infinite coordinate,
    is a UserError naming the file and line."""
    path = Path(path)
    try:
        raw = path.read_text(errors="replace")
    except OSError as e:
        raise UserError(f"cannot read {path} ({type(e).__name__}: {e})") from None
    lines = [(n, line.split("#", 1)[0].split()) for n, line in enumerate(raw.splitlines(), 1)]
    lines = [(n, tokens) for n, tokens in lines if tokens]

    def fail(n, why):
        return UserError(f"{path} line {n}: {why}; not an OFF mesh")

    if not lines:
        raise UserError(f"{path} is empty; not an OFF mesh")
    n, head = lines[0]
    if not head[0].upper().startswith("OFF"):
        raise fail(n, f"expected the header OFF, found {head[0][:20]!r}")
    counts = ([head[0][3:]] if len(head[0]) > 3 else []) + head[1:]
    pos = 1
    if not counts:
        if len(lines) < 2:
            raise UserError(f"{path}: ends after the OFF header; not an OFF mesh")
        n, counts = lines[1]
        pos = 2
    try:
        nv, nf = int(counts[0]), int(counts[1])
    except (ValueError, IndexError):
        raise fail(n, f"expected the counts 'vertices faces edges', found {' '.join(counts)[:60]!r}") from None
    if nv < 0 or nf < 0:
        raise fail(n, "negative vertex or face count")
    if len(lines) < pos + nv + nf:
        last = lines[-1][0]
        raise fail(last, f"the file ends after {len(lines) - pos} vertex/face lines, the header announces "
                         f"{nv} vertices and {nf} faces")
    vertex_lines, face_lines = lines[pos:pos + nv], lines[pos + nv:pos + nv + nf]
    vertices = None
    if all(len(tokens) >= 3 for _, tokens in vertex_lines):  # the fast path; errors are located below
        try:
            vertices = np.array([tokens[:3] for _, tokens in vertex_lines], dtype=np.float64).reshape(nv, 3)
        except ValueError:
            pass
    if vertices is None:
        for n, tokens in vertex_lines:
            try:
                if len(tokens) < 3:
                    raise ValueError
                [float(t) for t in tokens[:3]]
            except ValueError:
                raise fail(n, f"expected a vertex 'x y z', found {' '.join(tokens)[:60]!r}") from None
        raise UserError(f"{path}: cannot read its vertices; not an OFF mesh")
    bad = ~np.isfinite(vertices).all(axis=1)
    if bad.any():
        n, tokens = vertex_lines[int(np.argmax(bad))]
        raise fail(n, f"a vertex that is not finite (NaN or inf): {' '.join(tokens)[:60]!r}")
    if all(len(tokens) == 4 and tokens[0] == "3" for _, tokens in face_lines):  # all triangles: the fast path
        try:
            tri = np.array([tokens[1:] for _, tokens in face_lines], dtype=np.int64).reshape(nf, 3)
        except ValueError:
            tri = None
        if tri is not None and (not nf or (tri.min() >= 0 and tri.max() < nv)):
            return vertices, tri
    triangles = []
    for n, tokens in face_lines:
        try:
            k = int(tokens[0])
            idx = [int(t) for t in tokens[1:k + 1]]
        except ValueError:
            raise fail(n, f"expected a face 'n i1 ... in', found {' '.join(tokens)[:60]!r}") from None
        if k < 1 or len(idx) != k:
            raise fail(n, f"a face of {k} vertices lists {len(idx)}")
        if min(idx) < 0 or max(idx) >= nv:
            raise fail(n, f"a face refers to a vertex outside 0..{nv - 1}")
        triangles.extend((idx[0], idx[j], idx[j + 1]) for j in range(1, k - 1))  # a fan; points/edges give none
    return vertices, np.array(triangles, dtype=np.int64).reshape(-1, 3)


def sample_surface(vertices: np.ndarray, triangles: np.ndarray, n: int, seed: int) -> np.ndarray:
    """(n, 3) points uniformly on the surface: triangles drawn with probability proportional to their area,
    then uniform barycentric coordinates. A mesh without area gives its vertices."""
    if len(triangles):
        a, b, c = (vertices[triangles[:, i]] for i in range(3))
        area = np.linalg.norm(np.cross(b - a, c - a), axis=1)
        area[~np.isfinite(area)] = 0
        total = area.sum()
    else:
        total = 0.0
    if total <= 0:
        return vertices.copy()
    g = np.random.default_rng(seed)
    pick = g.choice(len(triangles), size=n, p=area / total)
    r1, r2 = np.sqrt(g.random((n, 1))), g.random((n, 1))
    return (1 - r1) * a[pick] + r1 * (1 - r2) * b[pick] + r1 * r2 * c[pick]


# ---- the layouts: which shape files, with which labels -------------------------------------------------


@dataclass(frozen=True)
class _Shape:
    path: Path
    label: int
    mesh: bool  # an OFF mesh (sampled) rather than a point file


@dataclass
class _Source:
    classes: list[str]
    splits: dict[str, list[_Shape]]
    list_files: list[Path]  # their bytes are part of the fingerprint
    mesh: bool  # the OFF archive


def _read_lines(path: Path) -> list[str]:
    try:
        return [line.strip() for line in path.read_text().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read {path} ({type(e).__name__}: {e})") from None


def _check_present(shapes: list[_Shape], listed_in: Path, root: Path) -> None:
    missing = [s.path for s in shapes if not s.path.is_file()]
    if missing:
        raise DatasetNotFoundError(f"{listed_in} names {len(missing)} shape file(s) missing from {root}, e.g. "
                                   f"{missing[0]}; the lists and the shapes do not belong together")


def _pointlist_complete(root: Path, prefix: str) -> bool:
    return all((root / f"{prefix}_{part}.txt").is_file() for part in ("shape_names", "train", "test"))


def _read_pointlist(root: Path, prefix: str) -> _Source:
    """The point-cloud list layout (ModelNet resampled, VoxelFashionMNIST) in ``root`` with file prefix
    ``prefix``."""
    names_file = root / f"{prefix}_shape_names.txt"
    classes = _read_lines(names_file)
    if not classes:
        raise UserError(f"{names_file} lists no classes")
    label_of = {c: i for i, c in enumerate(classes)}
    splits, lists = {}, [names_file]
    for split in SPLITS:
        list_file = root / f"{prefix}_{split}.txt"
        lists.append(list_file)
        shapes = []
        for shape_id in _read_lines(list_file):
            cls, sep, number = shape_id.rpartition("_")
            if not sep or not number.isdigit() or cls not in label_of:
                raise UserError(f"{list_file}: shape id {shape_id!r} is not <class>_<number> with a class of "
                                f"{names_file.name}")
            shapes.append(_Shape(root / cls / f"{shape_id}.txt", label_of[cls], False))
        _check_present(shapes, list_file, root)
        splits[split] = shapes
    return _Source(classes, splits, lists, False)


def _off_complete(root: Path) -> bool:
    return root.is_dir() and any((d / "train").is_dir() or (d / "test").is_dir() for d in root.iterdir())


def _read_off_archive(root: Path) -> _Source:
    """The original ModelNet archive: ``root/<class>/{train,test}/*.off``, classes sorted by name."""
    classes = sorted(d.name for d in root.iterdir() if (d / "train").is_dir() or (d / "test").is_dir())
    splits = {}
    for split in SPLITS:
        splits[split] = [_Shape(f, label, True) for label, cls in enumerate(classes) if (root / cls / split).is_dir()
                         for f in sorted((root / cls / split).iterdir())
                         if f.suffix.lower() == ".off" and f.is_file()]
    return _Source(classes, splits, [], True)


_SHAPENET_CATEGORIES = "synsetoffset2category.txt"
_SHAPENET_SPLIT = "train_test_split/shuffled_{split}_file_list.json"


def _shapenet_complete(root: Path) -> bool:
    return (root / _SHAPENET_CATEGORIES).is_file() and all(
        (root / _SHAPENET_SPLIT.format(split=s)).is_file() for s in SPLITS)


def _read_shapenet(root: Path) -> _Source:
    cat_file = root / _SHAPENET_CATEGORIES
    classes, label_of = [], {}
    for line in _read_lines(cat_file):
        parts = line.rsplit(None, 1)
        if len(parts) != 2:
            raise UserError(f"{cat_file}: line {line[:60]!r} is not '<Category> <synset>'")
        label_of[parts[1]] = len(classes)
        classes.append(parts[0])
    if not classes:
        raise UserError(f"{cat_file} lists no categories")
    splits, lists = {}, [cat_file]
    for split in SPLITS:
        list_file = root / _SHAPENET_SPLIT.format(split=split)
        lists.append(list_file)
        try:
            entries = json.loads(list_file.read_text())
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise UserError(f"cannot read {list_file} as a JSON list ({type(e).__name__}: {e})") from None
        if not isinstance(entries, list):
            raise UserError(f"{list_file} is not a JSON list of 'shape_data/<synset>/<id>' strings")
        shapes = []
        for entry in entries:
            parts = entry.strip("/").split("/") if isinstance(entry, str) else []
            if len(parts) < 2 or parts[-2] not in label_of:
                raise UserError(f"{list_file}: entry {entry!r} is not 'shape_data/<synset>/<id>' with a synset "
                                f"of {cat_file.name}")
            shapes.append(_Shape(root / parts[-2] / f"{parts[-1]}.txt", label_of[parts[-2]], False))
        _check_present(shapes, list_file, root)
        splits[split] = shapes
    return _Source(classes, splits, lists, False)


# ---- the cache -----------------------------------------------------------------------------------------


def _fingerprint(source: _Source, shapes: list[_Shape], root: Path) -> str:
    """A digest of the list files and of every shape file of a split (path, size, modification time, label)."""
    h = hashlib.sha256("\n".join(source.classes).encode())
    for f in source.list_files:
        h.update(f.read_bytes())
    for s in shapes:
        st = s.path.stat()
        h.update(f"{s.path.relative_to(root).as_posix()}|{st.st_size}|{st.st_mtime_ns}|{s.label}\n".encode())
    return h.hexdigest()[:16]


def _cache_path(cache_dir: Path, name: str, split: str, res: int, solid: bool, key: dict) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir / f"{name}_{split}_r{res}{'_solid' if solid else ''}_{digest}.npy"


def _shape_grid(shape: _Shape, res: int, solid: bool) -> np.ndarray:
    """(res, res, res) uint8 0/255 grid of one shape file."""
    if shape.mesh:
        vertices, triangles = read_off(shape.path)
        if not len(vertices):
            raise UserError(f"{shape.path} has no vertices")
        points = sample_surface(vertices, triangles, OFF_POINTS, derive_seed("off", shape.path.name))
    else:
        points = read_points(shape.path)
    return voxelise(points, res, solid).astype(np.uint8) * np.uint8(255)


def _voxelise_all(path: Path, shapes: list[_Shape], res: int, solid: bool, progress: bool) -> None:
    from tqdm.auto import tqdm

    def fill(mm):
        pool = ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1))
        try:
            jobs = pool.map(lambda s: _shape_grid(s, res, solid), shapes)
            for i, grid in enumerate(tqdm(jobs, total=len(shapes), desc=f"voxelising {path.name}",
                                          disable=not progress, mininterval=2)):
                mm[i, 0] = grid
        finally:
            pool.shutdown(wait=True, cancel_futures=True)  # an error or Ctrl-C does not wait for every shape

    write_npy(path, (len(shapes), 1, res, res, res), fill)


def _open_cache(path: Path, n: int, res: int) -> np.ndarray:
    data = np.load(path, mmap_mode="r")
    if data.shape != (n, 1, res, res, res) or data.dtype != np.uint8:
        raise UserError(f"voxel cache {path} has shape {data.shape} ({data.dtype}), not the expected "
                        f"{(n, 1, res, res, res)} uint8; delete it")
    return data


def _empty(res: int):
    return np.zeros((0, 1, res, res, res), np.uint8), torch.zeros(0, dtype=torch.int64)


def _load_shapes(name: str, source: _Source, root: Path, split: str, res: int, solid: bool, cache_dir: Path,
                 progress: bool):
    shapes = source.splits[split]
    if not shapes:
        return _empty(res)
    key = dict(dataset=name, split=split, res=res, solid=solid, mesh=source.mesh,
               points=OFF_POINTS if source.mesh else None, source=_fingerprint(source, shapes, root),
               version=CACHE_VERSION)
    path = _cache_path(cache_dir, name, split, res, solid, key)
    if not path.exists():
        _voxelise_all(path, shapes, res, solid, progress)
    return _open_cache(path, len(shapes), res), torch.tensor([s.label for s in shapes], dtype=torch.int64)


# ---- 3D-MNIST ------------------------------------------------------------------------------------------


def _open_h5(path: Path):
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise UserError(f"cannot read {path} as HDF5 ({_one_line(e)})") from None
    missing = [k for k in MNIST3D_KEYS if k not in f]
    if missing:
        found = sorted(f.keys())
        f.close()
        raise UserError(f"{path} lacks the dataset(s) {', '.join(missing)}: 3D-MNIST's full_dataset_vectors.h5 "
                        f"holds {', '.join(MNIST3D_KEYS)} (found {', '.join(found) or 'nothing'})")
    return f


def _one_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"


def _mnist3d_labels(f, path: Path, split: str, n_classes: int) -> np.ndarray:
    x, y = f[f"X_{split}"], np.asarray(f[f"y_{split}"]).reshape(-1)
    if len(x.shape) != 2 or x.shape[1] != MNIST3D_SIDE ** 3 or x.shape[0] != len(y):
        raise UserError(f"{path}: X_{split} has shape {tuple(x.shape)} and y_{split} {len(y)} labels; expected "
                        f"(N, {MNIST3D_SIDE ** 3}) and N labels")
    if len(y) and (not np.all(np.equal(np.mod(y, 1), 0)) or y.min() < 0 or y.max() >= n_classes):
        raise UserError(f"{path}: y_{split} holds labels outside the digits 0..{n_classes - 1}")
    return y.astype(np.int64)


def _mnist3d_grids(x: np.ndarray, res: int) -> np.ndarray:
    """(n, 1, res, res, res) uint8 round(value * 255) of (n, 4096) vectors in [0, 1]; res != 16 resizes
    trilinearly."""
    v = np.nan_to_num(np.asarray(x, dtype=np.float32), nan=0.0).reshape(-1, 1, *(MNIST3D_SIDE,) * 3)
    t = torch.from_numpy(np.clip(v, 0, 1))
    if res != MNIST3D_SIDE:
        t = F.interpolate(t, size=(res, res, res), mode="trilinear", align_corners=False).clamp_(0, 1)
    return t.mul_(255).round_().to(torch.uint8).numpy()


def _load_mnist3d(name: str, path: Path, n_classes: int, res: int, cache_dir: Path, progress: bool,
                  test_only: bool):
    from tqdm.auto import tqdm

    st = path.stat()
    parts = {}
    with _open_h5(path) as f:
        labels = {split: _mnist3d_labels(f, path, split, n_classes) for split in SPLITS}
        empty = sorted(set(range(n_classes)) - set(labels["train"].tolist()))
        if empty:
            raise UserError(f"{path}: digit(s) {', '.join(map(str, empty))} have no train grids; every class "
                            f"needs some")
        for split in SPLITS:
            y = labels[split]
            if (split == "train" and test_only) or not len(y):
                parts[split] = _empty(res)
                continue
            key = dict(dataset=name, split=split, res=res, solid=False, version=CACHE_VERSION,
                       source=f"{path.name}|{st.st_size}|{st.st_mtime_ns}")
            cache = _cache_path(cache_dir, name, split, res, False, key)
            if not cache.exists():
                x, chunk = f[f"X_{split}"], max(1, 2 ** 22 // res ** 3)

                def fill(mm, x=x, chunk=chunk):
                    for a in tqdm(range(0, len(mm), chunk), desc=f"caching {cache.name}", disable=not progress,
                                  mininterval=2):
                        mm[a:a + chunk] = _mnist3d_grids(x[a:a + chunk], res)

                write_npy(cache, (len(y), 1, res, res, res), fill)
            parts[split] = _open_cache(cache, len(y), res), torch.from_numpy(y)
    return parts


# ---- the loader ----------------------------------------------------------------------------------------


def load(name: str, data_path: Optional[str] = None, res: Optional[int] = None, zca: bool = False,
         solid: bool = False, cache_dir: Optional[str] = None, progress: bool = False,
         test_only: bool = False) -> RealData:
    """Voxel dataset ``name`` as a RealData of occupancy grids (N, 1, res, res, res) (axes x, y, z) backed by the
    on-disk cache; ``solid`` fills the shapes' interiors; ``test_only`` leaves the training split empty (what
    evaluating a synthetic set needs)."""
    if name not in VOXEL_SPECS:
        raise choice_error("dataset", name, VOXEL_DATASETS)
    if zca:
        raise UserError("--zca whitens images; it is not defined for voxel datasets")
    spec = VOXEL_SPECS[name]
    side = spec.res if res is None else int(res)
    if side < 1:
        raise UserError(f"--res must be >= 1, got {side}")
    data = Path(data_path or DEFAULT_DATA_PATH)
    root = data / spec.folder
    cache = Path(cache_dir or DEFAULT_CACHE_DIR)
    hint = spec.hint.format(data=data, root=root, off=spec.off_folder)

    if spec.layout == "h5":
        if solid:
            raise UserError(f"{name} comes as given grids, not surfaces: solid filling is not defined for it")
        h5 = root / "full_dataset_vectors.h5"
        _find(name, [root], lambda r: (r / h5.name).is_file(), None, hint)
        classes = [str(d) for d in range(10)]
        parts = _load_mnist3d(name, h5, len(classes), side, cache, progress, test_only)
    else:
        if spec.layout == "shapenet":
            found = _find(name, [root], _shapenet_complete, None, hint)
            source = _read_shapenet(found)
        else:
            candidates = [root] + ([data / spec.off_folder] if spec.off_folder else [])
            found = _find(name, candidates, lambda r: _pointlist_complete(r, spec.prefix) if r == root
                          else _off_complete(r), None, hint)
            source = _read_pointlist(found, spec.prefix) if found == root else _read_off_archive(found)
        classes = source.classes
        empty = sorted(set(range(len(classes))) - {s.label for s in source.splits["train"]})
        if empty:
            raise UserError(f"{name} in {found}: class(es) {', '.join(classes[c] for c in empty[:5])} have no "
                            f"train shapes; every class needs some")
        if test_only:
            source.splits["train"] = []
        parts = {split: _load_shapes(name, source, found, split, side, solid, cache, progress) for split in SPLITS}

    (x_tr, y_tr), (x_te, y_te) = parts["train"], parts["test"]
    mean, std = (0.0,), (1.0,)
    return RealData(
        name=name, channel=1, im_size=(side, side, side), num_classes=len(classes), class_names=list(classes),
        mean=list(mean), std=list(std),
        images_train=MappedArray(x_tr, mean, std), labels_train=y_tr,
        images_test=MappedArray(x_te, mean, std), labels_test=y_te,
        indices_class=_indices_by_class(y_tr, len(classes)), domain="voxel")
