"""Voxel Fashion-MNIST (common/data/voxel_fmnist.py): the extruded solid, its surface points and normals, the
random rotation, the choice of source images, and the dataset written in ModelNet's point-cloud layout --
deterministic, split-correct, class-balanced, atomic -- and its command line.

What it shares with Moving Fashion-MNIST (the choice of sources, deterministic builds, argument errors, --overwrite,
interruptions, the command line's errors) is tested in tests/test_moving_fmnist.py, parametrised over both."""
import json
import math
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from common.data import voxel_fmnist as vfm
from tests.helpers import OFFLINE_TEST, OFFLINE_TRAIN, REPO, needs_fmnist

TRAIN, TEST = OFFLINE_TRAIN, OFFLINE_TEST  # shapes per class of the small builds (conftest's offline_builds)
N = vfm.POINTS
TOL = 1e-5
_AXES = np.eye(3)


def _garment(seed: int = 0) -> np.ndarray:
    """A garment-like test image: a textured blob with some pixels below the threshold, touching the right
    border of the image (so some walls face the outside of the image)."""
    rng = np.random.default_rng(seed)
    img = np.zeros((28, 28), np.uint8)
    img[3:25, 9:28] = rng.integers(0, 256, size=(22, 19))
    img[10:14, 2:9] = 255  # an arm of full intensity
    return img


def _height(heights: np.ndarray, r, c) -> float:
    rows, cols = heights.shape
    return float(heights[r, c]) if 0 <= r < rows and 0 <= c < cols else 0.0


def _check_on_surface(p: np.ndarray, heights: np.ndarray, tol: float = TOL) -> Counter:
    """Assert that every row (x, y, z, nx, ny, nz) of ``p`` (pixel units: pixel (r, c) spans x in [c, c+1],
    y in [rows-1-r, rows-r], z in [-h/2, h/2]) lies on a face of the extruded columns within ``tol``, with the
    face's outward unit normal. Returns how many points lie on each kind of face ('+z', '-x', ...)."""
    rows = heights.shape[0]
    kinds = Counter()
    for x, y, z, *n in p:
        n = np.asarray(n)
        assert abs(np.linalg.norm(n) - 1) <= tol
        axis = int(np.argmax(np.abs(n)))
        sign = 1.0 if n[axis] > 0 else -1.0
        assert np.allclose(n, sign * _AXES[axis], atol=tol), n  # axis-aligned: perpendicular to its face
        kinds[("+" if sign > 0 else "-") + "xyz"[axis]] += 1
        if axis == 2:  # top or bottom of the column the point is over
            r, c = rows - 1 - math.floor(y), math.floor(x)
            h = _height(heights, r, c)
            assert h > 0 and abs(z - sign * h / 2) <= tol, (x, y, z, h)
            continue
        coord = x if axis == 0 else y
        k = round(coord)
        assert abs(coord - k) <= tol, (x, y, z, n)  # on a grid line: the plane of the wall
        if axis == 0:
            r = rows - 1 - math.floor(y)
            inside, outside = (r, k - 1), (r, k)
            if sign < 0:
                inside, outside = outside, inside
        else:
            c = math.floor(x)
            inside, outside = (rows - k, c), (rows - 1 - k, c)  # the rows just below and above y = k
            if sign < 0:
                inside, outside = outside, inside
        h, h_out = _height(heights, *inside), _height(heights, *outside)
        assert h > h_out, (x, y, z, n, h, h_out)  # the wall of a taller column facing a lower one
        assert h_out / 2 - tol <= abs(z) <= h / 2 + tol, (x, y, z, h, h_out)
    return kinds


def _unrotate(cloud: np.ndarray, rot: np.ndarray, heights: np.ndarray) -> np.ndarray:
    """The points and normals of a surface_points cloud back in pixel units, before rotation and scaling."""
    centre, radius = vfm.bounding_sphere(heights)
    c = cloud.astype(np.float64)
    return np.concatenate([(c[:, :3] @ rot) * radius + centre, c[:, 3:] @ rot], axis=1)


def _parse(path: Path) -> np.ndarray:
    lines = path.read_text().splitlines()
    rows = []
    for line in lines:
        fields = line.split(",")
        assert len(fields) == 6 and all(re.fullmatch(r"-?\d+\.\d{6}", f) for f in fields), line
        rows.append([float(f) for f in fields])
    return np.array(rows)


# ------------------------------------------------------------------------------------------------------------
# names, the solid and its surface (no data needed)

def test_class_names_and_ids_follow_modelnet():
    names = [vfm.class_name(c) for c in range(10)]
    assert names[0] == "t_shirt_top" and names[1] == "trouser" and names[9] == "ankle_boot"
    assert all(re.fullmatch(r"[a-z0-9_]+", n) for n in names) and len(set(names)) == 10
    assert vfm.shape_id(0, 1) == "t_shirt_top_0001" and vfm.shape_id(9, 150) == "ankle_boot_0150"
    for c in range(10):
        assert vfm.shape_id(c, 42).rsplit("_", 1)[0] == names[c]  # the class of an id is the id minus _NNNN
    assert (vfm.NAME, vfm.PREFIX) == ("VoxelFashionMNIST", "voxelfmnist")


def test_solid_mask_thresholds_and_follows_intensity():
    img = np.array([[0, 25, 26, 100], [255, 128, 1, 0]], np.uint8)
    h = vfm.solid_mask(img)
    assert h.shape == img.shape
    want = np.where(img > 25.5, 1 + 7 * img.astype(np.float64) / 255.0, 0.0)
    np.testing.assert_allclose(h, want, atol=1e-12)
    assert h[0, 1] == 0 and h[0, 2] > 1 and h[1, 0] == pytest.approx(8.0)
    full = vfm.solid_mask(_garment())
    assert full.shape == (28, 28) and (full[_garment() <= 25] == 0).all() and (full[_garment() > 25] >= 1).all()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_points_lie_on_the_surface_with_outward_normals(seed):
    img = _garment(seed)
    heights = vfm.solid_mask(img)
    p = vfm.sample_surface(heights, np.random.default_rng(seed), N)
    assert p.shape == (N, 6)
    kinds = _check_on_surface(p, heights)
    assert set(kinds) == {"+x", "-x", "+y", "-y", "+z", "-z"}  # every kind of face is sampled
    # outward: a step inwards along the normal is inside the solid, a step outwards is outside
    rows = heights.shape[0]

    def inside(q):
        return abs(q[2]) < _height(heights, rows - 1 - math.floor(q[1]), math.floor(q[0])) / 2

    for row in p:
        assert inside(row[:3] - 1e-4 * row[3:]) and not inside(row[:3] + 1e-4 * row[3:])


def test_sampling_is_uniform_by_area():
    """A single full-intensity pixel is a 1 x 1 x 8 box: top and bottom have area 1, each wall 8."""
    img = np.zeros((28, 28), np.uint8)
    img[5, 7] = 255
    heights = vfm.solid_mask(img)
    p = vfm.sample_surface(heights, np.random.default_rng(0), 34000)
    kinds = _check_on_surface(p[:3000], heights)
    assert sum(kinds.values()) == 3000
    normals = [tuple(n) for n in p[:, 3:].astype(int)]
    counts = Counter(normals)
    for n, area in [((0, 0, 1), 1), ((0, 0, -1), 1), ((1, 0, 0), 8), ((-1, 0, 0), 8), ((0, 1, 0), 8),
                    ((0, -1, 0), 8)]:
        assert counts[n] == pytest.approx(1000 * area, rel=0.15 if area == 1 else 0.05)
    walls = p[np.abs(p[:, 5]) < 0.5]
    assert abs(walls[:, 2].mean()) < 0.1 and (np.abs(walls[:, 2]) < 2).mean() == pytest.approx(0.5, abs=0.02)
    assert p[:, 0].min() >= 7 and p[:, 0].max() <= 8 and p[:, 1].min() >= 22 and p[:, 1].max() <= 23


def test_thickness_follows_intensity():
    """The same silhouette, brighter, is a thicker slab: a larger z extent before rotation."""
    extents, ratios = [], []
    for value in (40, 100, 180, 250):
        img = np.zeros((28, 28), np.uint8)
        img[6:22, 8:20] = value
        heights = vfm.solid_mask(img)
        p = vfm.sample_surface(heights, np.random.default_rng(0), N)
        extents.append(np.abs(p[:, 2]).max())
        assert extents[-1] == pytest.approx((1 + 7 * value / 255) / 2)
        # the same, from the written cloud: undo the rotation, compare the z extent with the x-y extent
        rng = np.random.default_rng(5)
        cloud = vfm.surface_points(img, rng, N, "so3")
        rot = vfm.random_rotation(np.random.default_rng(5))
        local = cloud[:, :3].astype(np.float64) @ rot
        ratios.append(np.ptp(local[:, 2]) / np.ptp(local[:, 0]))
    assert all(a < b for a, b in zip(extents, extents[1:]))
    assert all(a < b for a, b in zip(ratios, ratios[1:]))


def test_random_rotation_is_a_uniform_proper_rotation():
    rots = np.stack([vfm.random_rotation(np.random.default_rng(s)) for s in range(3000)])
    for r in rots[:200]:
        np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(r) == pytest.approx(1.0, abs=1e-12)
    # uniform on SO(3): the mean rotation is 0 and a fixed axis goes anywhere on the sphere evenly
    assert np.abs(rots.mean(axis=0)).max() < 0.05
    v = rots @ np.array([0.0, 0.0, 1.0])
    assert np.abs(v.mean(axis=0)).max() < 0.05
    np.testing.assert_allclose((v ** 2).mean(axis=0), 1 / 3, atol=0.03)
    rng = np.random.default_rng(0)
    assert not np.allclose(vfm.random_rotation(rng), vfm.random_rotation(rng))


def test_upright_rotation_turns_about_the_vertical_axis_only():
    rots = np.stack([vfm.upright_rotation(np.random.default_rng(s)) for s in range(2000)])
    np.testing.assert_allclose(rots @ rots.transpose(0, 2, 1), np.broadcast_to(np.eye(3), rots.shape), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(rots), 1, atol=1e-12)
    np.testing.assert_allclose(rots[:, 1], np.broadcast_to([0, 1, 0], (2000, 3)), atol=1e-12)  # y is kept
    np.testing.assert_allclose(rots[:, :, 1], np.broadcast_to([0, 1, 0], (2000, 3)), atol=1e-12)
    angles = np.arctan2(rots[:, 0, 2], rots[:, 0, 0]) % (2 * np.pi)  # uniform on [0, 2 pi): each quarter ~ 1/4
    quarters = np.bincount((angles // (np.pi / 2)).astype(int), minlength=4) / len(angles)
    assert np.abs(quarters - 0.25).max() < 0.04
    assert set(vfm.ROTATIONS) == {"so3", "upright", "none"} and vfm.ROTATION == "upright"


@pytest.mark.parametrize("seed,rotation", [(0, "so3"), (3, "so3"), (1, "upright"), (2, "none")])
def test_surface_points_are_the_rotated_normalised_surface(seed, rotation):
    img = _garment(seed)
    heights = vfm.solid_mask(img)
    cloud = vfm.surface_points(img, np.random.default_rng(seed), N, rotation)
    assert cloud.shape == (N, 6) and cloud.dtype == np.float32
    # the documented draws: the rotation, then the surface sample
    rng = np.random.default_rng(seed)
    rot = {"so3": vfm.random_rotation, "upright": vfm.upright_rotation, "none": lambda r: np.eye(3)}[rotation](rng)
    local = vfm.sample_surface(heights, rng, N)
    centre, radius = vfm.bounding_sphere(heights)
    np.testing.assert_allclose(cloud[:, :3], ((local[:, :3] - centre) / radius) @ rot.T, atol=1e-6)
    np.testing.assert_allclose(cloud[:, 3:], local[:, 3:] @ rot.T, atol=1e-6)
    # points and normals rotated by the same rotation: all their dot products are kept
    pts, nrm = cloud[:, :3].astype(np.float64), cloud[:, 3:].astype(np.float64)
    lp, ln = (local[:, :3] - centre) / radius, local[:, 3:]
    np.testing.assert_allclose(pts @ nrm.T, lp @ ln.T, atol=1e-5)
    np.testing.assert_allclose(pts @ pts.T, lp @ lp.T, atol=1e-5)
    np.testing.assert_allclose(nrm @ nrm.T, ln @ ln.T, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(nrm, axis=1), 1, atol=1e-6)
    # undone, the written cloud lies on the solid's surface
    _check_on_surface(_unrotate(cloud, rot, heights), heights, tol=1e-4)
    # it fits the unit sphere, tightly
    norms = np.linalg.norm(pts, axis=1)
    assert norms.max() <= 1 + 1e-6 and norms.max() > 0.8
    # and it is rotated: not the unrotated cloud (upright: its heights kept)
    assert (np.abs(pts - lp).max() > 0.1) == (rotation != "none")
    if rotation == "upright":
        np.testing.assert_allclose(pts[:, 1], lp[:, 1], atol=1e-6)


def test_bounding_sphere_contains_every_corner():
    for s in range(3):
        heights = vfm.solid_mask(_garment(s))
        centre, radius = vfm.bounding_sphere(heights)
        r, c = np.nonzero(heights > 0)
        corners = [(c + dx, 27 - r + dy, sz * heights[r, c] / 2)
                   for dx in (0, 1) for dy in (0, 1) for sz in (-1, 1)]
        d = np.concatenate([np.linalg.norm(np.stack(k, axis=1) - centre, axis=1) for k in corners])
        assert d.max() == pytest.approx(radius)
        assert centre[2] == 0


def test_empty_silhouette_is_an_error():
    img = np.full((28, 28), 25, np.uint8)
    with pytest.raises(ValueError, match="no pixel above the threshold"):
        vfm.surface_points(img, np.random.default_rng(0), 16)


def test_format_points_is_six_decimals_per_field():
    pts = np.array([[1.0, -0.25, 1e-9, -1e-9, -0.0000004, 0.1234567], [0, 0, 0, -1, 0.5, -2.0000006]])
    text = vfm.format_points(pts)
    assert text == ("1.000000,-0.250000,0.000000,0.000000,0.000000,0.123457\n"
                    "0.000000,0.000000,0.000000,-1.000000,0.500000,-2.000001\n")
    assert "-0.000000" not in text
    with pytest.raises(ValueError):
        vfm.format_points(np.zeros((3, 5)))


# ------------------------------------------------------------------------------------------------------------
# source images and the dataset on disk (real Fashion-MNIST)

@pytest.fixture
def builds(offline_builds):
    """Three small builds: seed 0 twice into different folders ("a", "b"), and seed 1 ("c")."""
    return offline_builds(vfm)


def _ids(root: Path, split: str) -> list[str]:
    return (root / vfm.list_name(split)).read_text().splitlines()


@needs_fmnist
def test_lists_are_class_balanced_with_modelnet_ids(builds):
    root = builds["a"]
    names = (root / vfm.SHAPE_NAMES).read_text().splitlines()
    assert names == [vfm.class_name(c) for c in range(10)]
    train, test = _ids(root, "train"), _ids(root, "test")
    assert len(train) == 10 * TRAIN and len(test) == 10 * TEST
    assert len(set(train + test)) == len(train) + len(test)  # unique ids, and no id in both splits
    for ids, per_class in [(train, TRAIN), (test, TEST)]:
        assert Counter(i.rsplit("_", 1)[0] for i in ids) == {n: per_class for n in names}
        assert all(re.fullmatch(r"[a-z0-9_]+_\d{4}", i) for i in ids)
    for c, n in enumerate(names):  # numbered from 0001, train then test
        assert [i for i in train if i.rsplit("_", 1)[0] == n] == [vfm.shape_id(c, k) for k in range(1, TRAIN + 1)]
        assert [i for i in test if i.rsplit("_", 1)[0] == n] == \
            [vfm.shape_id(c, k) for k in range(TRAIN + 1, TRAIN + TEST + 1)]


@needs_fmnist
def test_every_shape_is_its_split_source_image(builds, sources):
    """Each written file is exactly surface_points of the source image chosen for it in its own split, with its
    own generator: train shapes come from train images and test shapes from test images."""
    root = builds["a"]
    names = (root / vfm.SHAPE_NAMES).read_text().splitlines()
    chosen = {s: vfm.choose_sources(sources.split(s)[1], n, 0, s) for s, n in [("train", TRAIN), ("test", TEST)]}
    for split, first in [("train", 1), ("test", TRAIN + 1)]:
        x, y = sources.split(split)
        other = sources.split("test" if split == "train" else "train")[0]
        for sid in _ids(root, split):
            cls, number = sid.rsplit("_", 1)
            c, i = names.index(cls), int(number) - first
            src = chosen[split][c, i]
            assert y[src] == c
            text = (root / cls / f"{sid}.txt").read_text()
            assert text == vfm.format_points(vfm.surface_points(x[src], vfm.shape_rng(0, split, c, i), N))
            assert text != vfm.format_points(vfm.surface_points(other[src % len(other)],
                                                                vfm.shape_rng(0, split, c, i), N))


@needs_fmnist
def test_layout_is_modelnet_point_cloud_layout(builds):
    root = builds["a"]
    names = [vfm.class_name(c) for c in range(10)]
    lists = {vfm.SHAPE_NAMES, vfm.list_name("train"), vfm.list_name("test"), vfm.BUILD_INFO}
    assert root.name == vfm.NAME and {p.name for p in root.iterdir()} == lists | set(names)
    assert sorted(p.name for p in root.parent.iterdir()) == [vfm.NAME]  # no temporary folder left behind
    ids = _ids(root, "train") + _ids(root, "test")
    for n in names:
        assert sorted(p.name for p in (root / n).iterdir()) == sorted(f"{i}.txt" for i in ids if i.startswith(n + "_"))
    for sid in ids:
        p = _parse(root / sid.rsplit("_", 1)[0] / f"{sid}.txt")
        assert p.shape == (N, 6)
        assert np.linalg.norm(p[:, :3], axis=1).max() <= 1 + 1e-5
        np.testing.assert_allclose(np.linalg.norm(p[:, 3:], axis=1), 1, atol=1e-5)


@needs_fmnist
def test_real_shapes_lie_on_their_solid(builds, sources):
    """The written files, undone (rotation and scaling), lie on the surface of their garment's solid."""
    root = builds["a"]
    x = sources.x_train
    chosen = vfm.choose_sources(sources.y_train, TRAIN, 0, "train")
    for c in (0, 5, 9):
        heights = vfm.solid_mask(x[chosen[c, 0]])
        rot = vfm.upright_rotation(vfm.shape_rng(0, "train", c, 0))
        cloud = _parse(root / vfm.class_name(c) / f"{vfm.shape_id(c, 1)}.txt")
        _check_on_surface(_unrotate(cloud, rot, heights)[::4], heights, tol=5e-4)  # 6 decimals, x radius ~20


# ------------------------------------------------------------------------------------------------------------
# command line (its errors, and the argument errors, --overwrite and interruptions of the build: in
# tests/test_moving_fmnist.py, with Moving Fashion-MNIST's)

def _cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "common.data.voxel_fmnist", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=300)


@needs_fmnist
def test_cli_builds_a_tiny_dataset(tmp_path):
    r = _cli("--data_path", "data", "--out", str(tmp_path), "--train_per_class", "1", "--test_per_class", "2",
             "--seed", "3", "--points", "100", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert str(tmp_path / vfm.NAME) in r.stdout and "10 train + 20 test shapes" in r.stdout
    root = tmp_path / vfm.NAME
    assert len(_ids(root, "train")) == 10 and len(_ids(root, "test")) == 20
    assert _parse(root / "bag" / "bag_0003.txt").shape == (100, 6)
    assert json.loads((root / vfm.BUILD_INFO).read_text()) == dict(
        train_per_class=1, test_per_class=2, seed=3, points=100, rotation="upright")
    assert vfm.train_count(tmp_path) == 10
    r = _cli("--out", str(tmp_path / "x"), "--rotation", "sideways")
    assert r.returncode == 2 and "--rotation" in r.stderr and "so3" in r.stderr and "Traceback" not in r.stderr


@needs_fmnist
def test_a_demo_refuses_a_set_built_otherwise(tmp_path):
    from common.demo import build_once
    from common.errors import UserError
    vfm.build(tmp_path, "data", train_per_class=1, test_per_class=1, points=50, progress=False, rotation="so3")
    with pytest.raises(UserError, match=r"built with rotation so3; this table needs --rotation upright: rebuild it "
                                        r"with python -m common.data.voxel_fmnist .* --overwrite --rotation upright"):
        build_once(vfm, vfm.SHAPE_NAMES, str(tmp_path), rotation="upright")
    build_once(vfm, vfm.SHAPE_NAMES, str(tmp_path), rotation="so3")  # the same settings: used as it is
