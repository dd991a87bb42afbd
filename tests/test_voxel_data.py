"""The voxel loader (common/data/voxels.py) on tiny files written here in each dataset's layout: the readers
(point-cloud lists, OFF meshes, ShapeNet json splits, 3D-MNIST h5), the isotropic voxeliser and its axis
order, the uint8 cache and its rebuild, and every bad input."""
import json
import os
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from common.data import DATASETS, get_dataset, is_video, is_voxel
from common.data import voxels as vox
from common.data.base import MappedArray
from common.data.voxels import VOXEL_DATASETS, VOXEL_SPECS, read_off, read_points, voxelise
from common.errors import DatasetNotFoundError, UserError

RES = 16


def box_surface(size=(1.0, 1.0, 1.0), n_per_face=3000, seed=0, offset=(0.0, 0.0, 0.0)) -> np.ndarray:
    """Points uniformly on the 6 faces of the box [0, sx] x [0, sy] x [0, sz] (+ offset)."""
    g = np.random.default_rng(seed)
    size = np.asarray(size, dtype=np.float64)
    faces = []
    for axis in range(3):
        for side in (0.0, 1.0):
            p = g.random((n_per_face, 3))
            p[:, axis] = side
            faces.append(p * size)
    return np.concatenate(faces) + np.asarray(offset)


def write_points(path: Path, points: np.ndarray, sep=",", extra=3) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cols = np.concatenate([points, np.zeros((len(points), extra))], axis=1)
    path.write_text("\n".join(sep.join(f"{v:.6f}" for v in row) for row in cols) + "\n")


def shape_points(c: int, i: int) -> np.ndarray:
    """A box whose proportions tell the class: class 0 long along x, class 1 long along y."""
    size = [(2.0, 1.0, 1.0), (1.0, 2.0, 1.0), (1.0, 1.0, 2.0)][c]
    return box_surface(size, n_per_face=400, seed=10 * c + i)


def write_pointlist(root: Path, prefix: str, classes=("night_stand", "chair"), train=2, test=1) -> Path:
    """The ModelNet resampled layout under root: <prefix>_shape_names/train/test.txt and <class>/<id>.txt."""
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{prefix}_shape_names.txt").write_text("\n".join(classes) + "\n")
    k = 1
    for split, n in (("train", train), ("test", test)):
        ids = []
        for c, cls in enumerate(classes):
            for i in range(n):
                sid = f"{cls}_{k:04d}"
                k += 1
                write_points(root / cls / f"{sid}.txt", shape_points(c, i))
                ids.append(sid)
        (root / f"{prefix}_{split}.txt").write_text("\n".join(ids) + "\n")
    return root


def box_off(size=(1.0, 1.0, 1.0), glued=False, quads=True) -> str:
    """An OFF box: 8 vertices, 6 quad faces (or 12 triangles)."""
    sx, sy, sz = size
    v = [(x, y, z) for x in (0, sx) for y in (0, sy) for z in (0, sz)]
    quad = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    faces = ([f"4 {a} {b} {c} {d}" for a, b, c, d in quad] if quads
             else [f"3 {a} {b} {c}\n3 {a} {c} {d}" for a, b, c, d in quad])
    nf = 6 if quads else 12
    head = f"OFF{len(v)} {nf} 0\n" if glued else f"OFF\n# a comment\n{len(v)} {nf} 0\n"
    return head + "\n".join(f"{x} {y} {z}" for x, y, z in v) + "\n" + "\n".join(faces) + "\n"


def write_off_archive(root: Path, classes=("bed", "chair"), train=2, test=1) -> Path:
    for c, cls in enumerate(classes):
        for split, n in (("train", train), ("test", test)):
            d = root / cls / split
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                size = [(2.0, 1.0, 1.0), (1.0, 1.0, 2.0)][c]
                (d / f"{cls}_{split}_{i:04d}.off").write_text(box_off(size, glued=(i % 2 == 1), quads=(i == 0)))
    return root


SHAPENET_CATS = [("Airplane", "02691156"), ("Bag", "02773838")]


def write_shapenet(root: Path, train=2, test=1) -> Path:
    base = root / "shapenetcore_partanno_segmentation_benchmark_v0_normal"
    (base / "train_test_split").mkdir(parents=True, exist_ok=True)
    (base / "synsetoffset2category.txt").write_text("".join(f"{n}\t{s}\n" for n, s in SHAPENET_CATS))
    for split, n in (("train", train), ("test", test)):
        entries = []
        for c, (_, synset) in enumerate(SHAPENET_CATS):
            for i in range(n):
                sid = f"{split}{c}{i:02d}abcdef"
                pts = np.concatenate([shape_points(c, i), np.zeros((len(shape_points(c, i)), 3))], axis=1)
                write_points(base / synset / f"{sid}.txt", pts, sep=" ", extra=1)  # x y z nx ny nz part
                entries.append(f"shape_data/{synset}/{sid}")
        (base / "train_test_split" / f"shuffled_{split}_file_list.json").write_text(json.dumps(entries))
    return base


def write_mnist3d(root: Path, n_train=20, n_test=10, keys=vox.MNIST3D_KEYS) -> Path:
    d = root / "3DMNIST"
    d.mkdir(parents=True, exist_ok=True)
    g = np.random.default_rng(0)
    with h5py.File(d / "full_dataset_vectors.h5", "w") as f:
        for split, n in (("train", n_train), ("test", n_test)):
            x = g.random((n, 4096)).astype(np.float32)
            y = np.arange(n) % 10
            if f"X_{split}" in keys:
                f.create_dataset(f"X_{split}", data=x)
            if f"y_{split}" in keys:
                f.create_dataset(f"y_{split}", data=y)
    return d / "full_dataset_vectors.h5"


def make_voxel_layout(name: str, off: bool = False):
    """A writer of a tiny `name` dataset in the layout its spec names (``off``: the OFF-mesh archive a point-list
    dataset falls back to). Returns what the loaded dataset must look like (as test_data's writers)."""
    spec = VOXEL_SPECS[name]

    def make(root: Path) -> dict:
        kwargs = dict(res=RES, cache_dir=str(root / "cache"))
        if off:
            write_off_archive(root / spec.off_folder)
        elif spec.layout == "pointlist":
            write_pointlist(root / spec.folder, spec.prefix)
        elif spec.layout == "shapenet":
            write_shapenet(root)
        elif spec.layout == "h5":
            write_mnist3d(root)
            return dict(kwargs=kwargs, n_train=20, n_test=10, channel=1, size=(RES,) * 3, num_classes=10)
        else:
            raise AssertionError(f"no writer for the {spec.layout!r} layout of {name}")
        return dict(kwargs=kwargs, n_train=4, n_test=2, channel=1, size=(RES,) * 3, num_classes=2)
    return make


# every voxel dataset's layouts (tests/test_registries.py loads each through get_dataset)
LAYOUTS = {f"{name}-{layout}": (name, make_voxel_layout(name, off=layout == "off"))
           for name, spec in VOXEL_SPECS.items()
           for layout in ([spec.layout] + (["off"] if spec.off_folder else []))}


def load(name, root, tmp_path, **kw):
    kw.setdefault("res", RES)
    return get_dataset(name, str(root), cache_dir=str(tmp_path / "cache"), **kw)


# ---- registry ------------------------------------------------------------------------------------------


def test_registry():
    assert VOXEL_DATASETS == ("ModelNet10", "ModelNet40", "ShapeNet", "3DMNIST", "VoxelFashionMNIST")
    assert set(VOXEL_DATASETS) <= set(DATASETS) and set(VOXEL_SPECS) == set(VOXEL_DATASETS)
    assert is_voxel("ModelNet10") and not is_voxel("UCF101") and not is_video("ModelNet10")
    assert VOXEL_SPECS["3DMNIST"].res == 16 and VOXEL_SPECS["ModelNet40"].res == 32


# ---- readers -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,folder,prefix", [("ModelNet10", "modelnet40_normal_resampled", "modelnet10"),
                                                ("ModelNet40", "modelnet40_normal_resampled", "modelnet40"),
                                                ("VoxelFashionMNIST", "VoxelFashionMNIST", "voxelfmnist")])
def test_pointlist_layout(tmp_path, name, folder, prefix):
    write_pointlist(tmp_path / "data" / folder, prefix, train=2, test=1)
    d = load(name, tmp_path / "data", tmp_path)
    assert d.domain == "voxel" and d.channel == 1 and d.im_size == (RES, RES, RES)
    assert d.class_names == ["night_stand", "chair"] and d.num_classes == 2  # file order, not sorted
    assert d.mean == [0.0] and d.std == [1.0] and d.zca is None
    assert isinstance(d.images_train, MappedArray)
    assert d.images_train.shape == (4, 1, RES, RES, RES) and d.images_test.shape == (2, 1, RES, RES, RES)
    assert d.labels_train.tolist() == [0, 0, 1, 1] and d.labels_test.tolist() == [0, 1]
    assert [i.tolist() for i in d.indices_class] == [[0, 1], [2, 3]]
    x = d.images_train[torch.arange(4)]
    assert x.dtype == torch.float32 and set(x.unique().tolist()) == {0.0, 1.0}
    # class 0 is a 2x1x1 box (long along x = axis D), class 1 a 1x2x1 box (long along y = axis H)
    ext0 = occupied_extent(x[0, 0].numpy() > 0.5)
    ext1 = occupied_extent(x[2, 0].numpy() > 0.5)
    assert ext0[0] == RES and ext0[1] < RES * 0.6 and ext1[1] == RES and ext1[0] < RES * 0.6


def test_default_res_and_test_only(tmp_path):
    write_pointlist(tmp_path / "modelnet40_normal_resampled", "modelnet10")
    d = get_dataset("ModelNet10", str(tmp_path), cache_dir=str(tmp_path / "cache"), test_only=True)
    assert d.im_size == (32, 32, 32)
    assert len(d.images_train) == 0 and d.images_train.shape == (0, 1, 32, 32, 32) and len(d.labels_train) == 0
    assert len(d.images_test) == 2 and [len(i) for i in d.indices_class] == [0, 0]


def test_read_points_formats(tmp_path):
    pts = np.array([[0.5, -1.0, 2.0], [1.0, 2.0, 3.0]])
    write_points(tmp_path / "a.txt", pts, sep=",")
    write_points(tmp_path / "b.txt", pts, sep=" ", extra=4)
    np.testing.assert_allclose(read_points(tmp_path / "a.txt"), pts, atol=1e-6)
    np.testing.assert_allclose(read_points(tmp_path / "b.txt"), pts, atol=1e-6)
    assert read_points(tmp_path / "a.txt").shape == (2, 3)


def test_off_reader_glued_header_quads_and_comments(tmp_path):
    (tmp_path / "glued.off").write_text(box_off((2, 1, 1), glued=True, quads=True))
    (tmp_path / "plain.off").write_text(box_off((2, 1, 1), glued=False, quads=False))
    v1, t1 = read_off(tmp_path / "glued.off")
    v2, t2 = read_off(tmp_path / "plain.off")
    assert v1.shape == (8, 3) and t1.shape == (12, 3)  # 6 quads as fans of 2 triangles
    np.testing.assert_array_equal(v1, v2)
    area = lambda v, t: np.linalg.norm(np.cross(v[t[:, 1]] - v[t[:, 0]], v[t[:, 2]] - v[t[:, 0]]), axis=1).sum() / 2
    assert area(v1, t1) == pytest.approx(10.0) and area(v2, t2) == pytest.approx(10.0)  # 2*(2+2+1)
    # a pentagon is a fan of 3 triangles; the exact "OFF490 518 0" header form parses
    (tmp_path / "pent.off").write_text("OFF5 1 0\n0 0 0\n1 0 0\n1 1 0\n0.5 2 0\n0 1 0\n5 0 1 2 3 4 255 0 0\n")
    v, t = read_off(tmp_path / "pent.off")
    assert t.tolist() == [[0, 1, 2], [0, 2, 3], [0, 3, 4]]
    (tmp_path / "big.off").write_text("OFF490 518 0\n" + "0 0 0\n" * 490 + "3 0 1 2\n" * 518)
    assert [a.shape for a in read_off(tmp_path / "big.off")] == [(490, 3), (518, 3)]


def test_off_archive_layout(tmp_path):
    write_off_archive(tmp_path / "ModelNet10")
    d = load("ModelNet10", tmp_path, tmp_path)
    assert d.class_names == ["bed", "chair"]  # sorted class folders
    assert d.labels_train.tolist() == [0, 0, 1, 1] and d.labels_test.tolist() == [0, 1]
    x = d.images_train[torch.arange(4)].numpy()[:, 0] > 0.5
    assert occupied_extent(x[0])[0] == RES and occupied_extent(x[0])[2] < RES * 0.6  # bed: 2x1x1 along x
    assert occupied_extent(x[2])[2] == RES and occupied_extent(x[2])[0] < RES * 0.6  # chair: 1x1x2 along z
    assert not x[0][RES // 2, RES // 2, RES // 2]  # a surface, hollow


def test_off_sampling_is_deterministic(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for d in ("a", "b"):
        (tmp_path / d / "chair_0001.off").write_text(box_off((1, 2, 3)))
    s = [vox._Shape(tmp_path / d / "chair_0001.off", 0, True) for d in ("a", "b")]
    g1, g2 = (vox._shape_grid(x, 32, False) for x in s)
    np.testing.assert_array_equal(g1, g2)
    assert g1.dtype == np.uint8 and set(np.unique(g1).tolist()) == {0, 255}


def test_modelnet_prefers_point_clouds_over_off(tmp_path):
    write_off_archive(tmp_path / "ModelNet10", classes=("bed", "sofa"))
    write_pointlist(tmp_path / "modelnet40_normal_resampled", "modelnet10")
    assert load("ModelNet10", tmp_path, tmp_path).class_names == ["night_stand", "chair"]


def test_shapenet_layout(tmp_path):
    write_shapenet(tmp_path)
    d = load("ShapeNet", tmp_path, tmp_path)
    assert d.class_names == ["Airplane", "Bag"] and d.num_classes == 2
    assert d.images_train.shape == (4, 1, RES, RES, RES) and d.images_test.shape == (2, 1, RES, RES, RES)
    assert d.labels_train.tolist() == [0, 0, 1, 1] and d.labels_test.tolist() == [0, 1]
    x = d.images_train[torch.tensor([0, 2])].numpy()[:, 0] > 0.5
    assert occupied_extent(x[0])[0] == RES and occupied_extent(x[1])[1] == RES


def test_mnist3d(tmp_path):
    h5 = write_mnist3d(tmp_path)
    with h5py.File(h5) as f:
        x_tr, y_te = f["X_train"][:], f["y_test"][:]
    d = get_dataset("3DMNIST", str(tmp_path), cache_dir=str(tmp_path / "cache"))
    assert d.im_size == (16, 16, 16) and d.class_names == [str(i) for i in range(10)] and d.num_classes == 10
    assert d.images_train.shape == (20, 1, 16, 16, 16) and d.images_test.shape == (10, 1, 16, 16, 16)
    assert d.labels_test.tolist() == y_te.tolist()
    got = d.images_train[torch.arange(20)].numpy()
    # the values, quantised to 1/255, not binarised; the flat vector is C-order (x, y, z)
    np.testing.assert_allclose(got.reshape(20, 4096), np.round(x_tr * 255) / 255, atol=1e-6)
    assert len(np.unique(got)) > 2
    i, j, k = 3, 7, 11
    assert got[0, 0, i, j, k] == pytest.approx(np.round(x_tr[0, i * 256 + j * 16 + k] * 255) / 255)
    # another res: trilinear resize
    d32 = get_dataset("3DMNIST", str(tmp_path), res=32, cache_dir=str(tmp_path / "cache"))
    x32 = d32.images_test[torch.arange(2)]
    assert x32.shape == (2, 1, 32, 32, 32) and 0 <= x32.min() and x32.max() <= 1
    assert abs(x32.mean().item() - d.images_test[torch.arange(2)].mean().item()) < 0.02
    with pytest.raises(UserError, match="solid"):
        get_dataset("3DMNIST", str(tmp_path), solid=True, cache_dir=str(tmp_path / "cache"))


# ---- the voxeliser -------------------------------------------------------------------------------------


def occupied_extent(grid: np.ndarray) -> list[int]:
    idx = np.argwhere(grid)
    return (idx.max(0) - idx.min(0) + 1).tolist()


def test_voxelise_cube_shell_and_solid():
    pts = box_surface((1, 1, 1), n_per_face=20000)
    g = voxelise(pts, 32)
    assert g.shape == (32, 32, 32) and g.dtype == bool
    idx = np.argwhere(g)
    lo, hi = idx.min(0), idx.max(0)
    assert lo.tolist() == [0, 0, 0] and hi.tolist() == [31, 31, 31]
    on_boundary = ((idx == lo) | (idx == hi)).any(axis=1)
    assert on_boundary.all()  # every occupied voxel is on the shell
    assert not g[1:-1, 1:-1, 1:-1].any()  # the interior is empty
    shell = np.ones((32, 32, 32), bool)
    shell[1:-1, 1:-1, 1:-1] = False
    assert (g == shell).all()  # and the shell is closed
    solid = voxelise(pts, 32, solid=True)
    assert solid.all()


def test_solid_closes_pinholes_not_openings():
    shell = np.zeros((20, 20, 20), bool)
    shell[2:18, 2:18, 2:18] = True
    shell[3:17, 3:17, 3:17] = False
    interior = np.zeros_like(shell)
    interior[3:17, 3:17, 3:17] = True
    pinholed = shell.copy()
    pinholed[2, 8:10, 8:10] = False  # a 2x2 gap in one wall, as sparse sampling leaves
    pinholed[10, 17, 5] = False
    solid = vox.fill_solid(pinholed)
    assert solid[interior].all() and not solid[~(shell | interior)].any()
    opened = shell.copy()
    opened[2, 6:12, 6:12] = False  # a 6x6 opening: a cup, not a pinhole
    assert not vox.fill_solid(opened)[10, 10, 10]
    # a shape touching the grid border is filled too
    border = np.zeros((8, 8, 8), bool)
    border[:, :, :] = True
    border[1:-1, 1:-1, 1:-1] = False
    assert vox.fill_solid(border).all()


def test_voxelise_flat_and_single_point():
    g = np.random.default_rng(0)
    pts = np.concatenate([g.random((5000, 2)), np.full((5000, 1), 7.0)], axis=1)  # all z equal
    with np.errstate(all="raise"):
        grid = voxelise(pts, 32)
    zs = np.unique(np.argwhere(grid)[:, 2])
    assert zs.tolist() == [16]  # one z-slice, in the middle
    assert occupied_extent(grid)[:2] == [32, 32]
    with np.errstate(all="raise"):
        one = voxelise(np.array([[1.0, 2.0, 3.0]] * 3), 16)
    assert np.argwhere(one).tolist() == [[8, 8, 8]]
    assert not voxelise(np.zeros((0, 3)), 8).any()


def test_voxelise_keeps_aspect_ratio_and_axis_order():
    pts = box_surface((2, 1, 1), n_per_face=20000, offset=(-5, 3, 100))
    ext = occupied_extent(voxelise(pts, 32))
    assert ext[0] == 32 and abs(ext[1] - 16) <= 1 and abs(ext[2] - 16) <= 1
    # the minor axes are centred
    idx = np.argwhere(voxelise(pts, 32))
    assert abs((idx[:, 1].min() + idx[:, 1].max()) / 2 - 15.5) <= 0.5
    # axis order: grid[i, j, k] = (x, y, z)
    line = np.zeros((100, 3))
    line[:, 1] = np.linspace(0, 1, 100)
    assert occupied_extent(voxelise(line, 16)) == [1, 16, 1]
    for res in (16, 64):
        assert voxelise(pts, res).shape == (res, res, res)


# ---- the cache -----------------------------------------------------------------------------------------


def test_cache_reused_and_rebuilt(tmp_path, monkeypatch):
    root = write_pointlist(tmp_path / "modelnet40_normal_resampled", "modelnet10")
    first = load("ModelNet10", tmp_path, tmp_path)
    x1 = first.images_test[torch.arange(2)]
    files = sorted((tmp_path / "cache").glob("*.npy"))
    assert len(files) == 2 and all(np.load(f, mmap_mode="r").dtype == np.uint8 for f in files)

    def boom(*a, **k):
        raise AssertionError("re-voxelised")

    with monkeypatch.context() as m:
        m.setattr(vox, "voxelise", boom)
        m.setattr(vox, "read_points", boom)
        again = load("ModelNet10", tmp_path, tmp_path)
        assert torch.equal(again.images_test[torch.arange(2)], x1)
        with pytest.raises(AssertionError, match="re-voxelised"):  # another res is another cache
            load("ModelNet10", tmp_path, tmp_path, res=8)
        with pytest.raises(AssertionError, match="re-voxelised"):  # so is solid
            load("ModelNet10", tmp_path, tmp_path, solid=True)
    # changing a test shape rebuilds the test split (and keeps the train cache)
    test_id = (root / "modelnet10_test.txt").read_text().split()[0]
    f = root / "night_stand" / f"{test_id}.txt"
    write_points(f, box_surface((1, 1, 1), n_per_face=300))
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 10 ** 9))
    calls = []
    real = vox.voxelise
    monkeypatch.setattr(vox, "voxelise", lambda *a, **k: calls.append(1) or real(*a, **k))
    rebuilt = load("ModelNet10", tmp_path, tmp_path)
    assert len(calls) == 2  # the two test shapes, not the four train shapes
    ext = occupied_extent(rebuilt.images_test[0][0].numpy() > 0.5)
    assert ext == [RES, RES, RES]  # now a cube
    assert len(list((tmp_path / "cache").glob(".*tmp*"))) == 0


def test_solid_fill_through_loader(tmp_path):
    write_pointlist(tmp_path / "modelnet40_normal_resampled", "modelnet10")
    hollow = load("ModelNet10", tmp_path, tmp_path).images_train[torch.arange(4)]
    solid = load("ModelNet10", tmp_path, tmp_path, solid=True).images_train[torch.arange(4)]
    assert (solid >= hollow).all() and solid.sum() > hollow.sum()
    assert solid[0, 0, RES // 2, RES // 2, RES // 2] == 1 and hollow[0, 0, RES // 2, RES // 2, RES // 2] == 0


def test_mnist3d_cache_rebuilt_when_file_changes(tmp_path, monkeypatch):
    h5 = write_mnist3d(tmp_path)
    load("3DMNIST", tmp_path, tmp_path)
    monkeypatch.setattr(vox, "_mnist3d_grids", lambda *a: (_ for _ in ()).throw(AssertionError("rebuilt")))
    load("3DMNIST", tmp_path, tmp_path)
    st = h5.stat()
    os.utime(h5, ns=(st.st_atime_ns, st.st_mtime_ns + 10 ** 9))
    with pytest.raises(AssertionError, match="rebuilt"):
        load("3DMNIST", tmp_path, tmp_path)


# ---- bad input -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,where", [("ModelNet10", "modelnet40_normal_resampled"), ("ModelNet40", "ModelNet40"),
                                        ("ShapeNet", "shapenetcore_partanno"), ("3DMNIST", "3DMNIST"),
                                        ("VoxelFashionMNIST", "VoxelFashionMNIST")])
def test_missing_folder(tmp_path, name, where):
    with pytest.raises(DatasetNotFoundError) as e:
        load(name, tmp_path / "nowhere", tmp_path)
    msg = str(e.value)
    assert "\n" not in msg and where in msg and "To get it" in msg


def test_bad_off_file(tmp_path):
    write_off_archive(tmp_path / "ModelNet10")
    bad = tmp_path / "ModelNet10" / "chair" / "train" / "chair_train_0001.off"
    bad.write_text("OFF\n8 1 0\n0 0 0\n1 0 0\n0 1 zero\n" + "0 0 1\n" * 5 + "3 0 1 2\n")
    with pytest.raises(UserError) as e:
        load("ModelNet10", tmp_path, tmp_path)
    assert str(bad) in str(e.value) and "line 5" in str(e.value) and "\n" not in str(e.value)
    assert not list((tmp_path / "cache").glob("*.npy"))  # no half-written cache
    for text, line in [("PLY\n", 1), ("OFF\n3 1\n0 0 0\n1 0 0\n", 4), ("OFF\nthree 1 0\n", 2),
                       ("OFF3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 7\n", 5),
                       ("OFF3 1 0\n0 0 0\n1 0 0\n0 1 0\n4 0 1 2\n", 5)]:
        bad.write_text(text)
        with pytest.raises(UserError, match=f"line {line}"):
            read_off(bad)


def test_bad_point_file(tmp_path):
    f = tmp_path / "p.txt"
    f.write_text("0,0,0,0,0,1\n1,1,1,0,0,1\n1,x,1,0,0,1\n")
    with pytest.raises(UserError, match=r"p\.txt line 3"):
        read_points(f)
    f.write_text("0,0,0,0,0,1\n1,1,1\n")
    with pytest.raises(UserError, match=r"line 2"):
        read_points(f)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e50"])  # 1e50 overflows float32 to inf
def test_non_finite_points_are_an_error_naming_the_file(tmp_path, value):
    """A NaN or infinite coordinate in a point cloud or an OFF mesh is a one-line error naming the file and the
    line, and no cache is written (it used to load silently as an empty or two-voxel grid)."""
    root = write_pointlist(tmp_path / "modelnet40_normal_resampled", "modelnet10")
    bad = root / "chair" / "chair_0003.txt"
    lines = bad.read_text().splitlines()
    lines[6] = f"0.5,{value},0.5,0,0,1"
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(UserError) as e:
        load("ModelNet10", tmp_path, tmp_path)
    msg = str(e.value)
    assert str(bad) in msg and "line 7" in msg and "not finite" in msg and "\n" not in msg
    assert not list((tmp_path / "cache").glob("*.npy")) and not list((tmp_path / "cache").glob(".*tmp*"))

    if value == "1e50":  # finite in the float64 of the OFF reader
        return
    off_root = tmp_path / "off"
    write_off_archive(off_root / "ModelNet10")
    bad_off = off_root / "ModelNet10" / "chair" / "train" / "chair_train_0001.off"
    text = box_off((1.0, 1.0, 2.0)).replace("0 0 2.0\n", f"0 {value} 2.0\n", 1)
    assert text != box_off((1.0, 1.0, 2.0))
    bad_off.write_text(text)
    with pytest.raises(UserError) as e:
        load("ModelNet10", off_root, tmp_path / "off_cache")
    msg = str(e.value)
    assert str(bad_off) in msg and "line 5" in msg and "not finite" in msg and "\n" not in msg
    assert not list((tmp_path / "off_cache" / "cache").glob("*.npy"))


def test_h5_without_keys(tmp_path):
    write_mnist3d(tmp_path, keys=("X_train", "y_train"))
    with pytest.raises(UserError) as e:
        load("3DMNIST", tmp_path, tmp_path)
    msg = str(e.value)
    assert "X_test" in msg and "y_test" in msg and "found X_train, y_train" in msg


def test_bad_lists(tmp_path):
    root = write_pointlist(tmp_path / "modelnet40_normal_resampled", "modelnet10")
    (root / "modelnet10_test.txt").write_text("sofa_0001\n")
    with pytest.raises(UserError, match="sofa_0001"):
        load("ModelNet10", tmp_path, tmp_path)
    (root / "modelnet10_test.txt").write_text("chair_9999\n")
    with pytest.raises(DatasetNotFoundError, match="chair_9999"):
        load("ModelNet10", tmp_path, tmp_path)


def test_zca_refused(tmp_path):
    write_pointlist(tmp_path / "modelnet40_normal_resampled", "modelnet10")
    with pytest.raises(UserError, match="zca"):
        load("ModelNet10", tmp_path, tmp_path, zca=True)
