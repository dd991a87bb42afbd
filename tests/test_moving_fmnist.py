"""Moving Fashion-MNIST (common/data/moving_fmnist.py): the clips' motion, the choice of source images, and the
dataset written in the UCF101 frames layout -- deterministic, class-balanced, atomic -- and its command line.

The behaviour both offline sets share (Moving and Voxel Fashion-MNIST, built by common/data/offline.py's helpers:
the choice of sources, deterministic builds, argument errors, --overwrite, interruptions, the command line's errors)
is tested at the end of this file, parametrised over both builders."""
import csv
import itertools
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
from PIL import Image

from common.data import moving_fmnist as mfm
from common.data import voxel_fmnist as vfm
from common.errors import UserError
from tests.helpers import OFFLINE_TEST, OFFLINE_TRAIN, REPO, needs_fmnist

TRAIN, TEST = OFFLINE_TRAIN, OFFLINE_TEST  # clips per class of the small builds (conftest's offline_builds)


def _tree(root: Path) -> dict[str, bytes]:
    """Every file under root, by relative path, with its bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _rows(root: Path) -> list[dict]:
    with open(root / mfm.CSV_NAME, newline="") as f:
        return list(csv.DictReader(f))


def _read_clip(folder: Path) -> np.ndarray:
    return np.stack([np.asarray(Image.open(folder / mfm.frame_name(t))) for t in range(mfm.FRAMES)])


def _garment(seed: int = 0) -> np.ndarray:
    """A garment-like test image: a bright blob with texture, not touching its own border."""
    rng = np.random.default_rng(seed)
    img = np.zeros((28, 28), np.uint8)
    img[4:24, 6:22] = rng.integers(60, 256, size=(20, 16))
    return img


def _centre_of_mass(frame: np.ndarray) -> np.ndarray:
    w = frame.astype(np.float64)
    ys, xs = np.indices(frame.shape)
    return np.array([(w * ys).sum(), (w * xs).sum()]) / w.sum()


# ------------------------------------------------------------------------------------------------------------
# labels and motion (no data needed)

def test_class_labels_are_sanitised_and_sort_in_class_order():
    labels = [mfm.class_label(c) for c in range(10)]
    assert labels[0] == "0_T-shirt-top" and labels[9] == "9_Ankle-boot" and labels[1] == "1_Trouser"
    assert all(set(lab) <= set("0123456789_-abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") for lab in labels)
    assert sorted(labels) == labels and len(set(labels)) == 10


def test_bounce_path_is_stepwise_reflection():
    """The folded straight path equals a frame-by-frame simulation that reflects the velocity at the walls."""
    span = 36.0
    for start, vel in [((3.5, 30.25), (4.75, -2.5)), ((0.0, 36.0), (-5.0, 5.0)), ((17.0, 1.0), (0.0, -3.0))]:
        p, v, sim = np.array(start), np.array(vel), []
        for _ in range(200):
            sim.append(p.copy())
            p = p + v
            for a in range(2):
                if p[a] < 0:
                    p[a], v[a] = -p[a], -v[a]
                elif p[a] > span:
                    p[a], v[a] = 2 * span - p[a], -v[a]
        np.testing.assert_allclose(mfm.bounce_path(start, vel, 200, span), np.array(sim), atol=1e-9)


def test_trajectory_stays_inside_and_moves_at_its_speed():
    span = mfm.SIZE - mfm.GARMENT
    speeds = []
    for s in range(200):
        p = mfm.trajectory(np.random.default_rng(s))
        assert p.shape == (mfm.FRAMES, 2)
        assert p.min() >= 0 and p.max() <= span
        step = np.linalg.norm(np.diff(p, axis=0), axis=1)
        assert step.max() <= mfm.SPEED[1] + 1e-9
        # a step with a bounce in it is shorter than the speed; most steps have none (at most 2 per axis here)
        speeds.append(step.max())
        assert np.isclose(step, step.max()).sum() >= mfm.FRAMES - 1 - 4
    assert mfm.SPEED[0] - 1e-9 <= min(speeds) and max(speeds) <= mfm.SPEED[1] + 1e-9
    assert max(speeds) - min(speeds) > 2  # speeds really are drawn from the range


def test_long_fast_trajectory_bounces():
    for s in range(20):
        p = mfm.trajectory(np.random.default_rng(s), frames=100, speed=(5.0, 5.0))
        d = np.diff(p, axis=0)
        reversed_axes = [np.any(d[1:, a] * d[:-1, a] < 0) for a in range(2)]
        assert any(reversed_axes), f"seed {s}: no bounce in 100 frames at 5 px/frame"
        assert p.min() >= 0 and p.max() <= mfm.SIZE - mfm.GARMENT


def test_make_clip_renders_its_trajectory():
    img = _garment()
    clip = mfm.make_clip(img, np.random.default_rng(7))
    assert clip.shape == (mfm.FRAMES, mfm.SIZE, mfm.SIZE) and clip.dtype == np.uint8
    pos = mfm.trajectory(np.random.default_rng(7))
    np.testing.assert_array_equal(clip, mfm.render(img, pos))
    small = mfm.make_clip(img, np.random.default_rng(7), size=40, frames=5)
    assert small.shape == (5, 40, 40)


def test_integer_positions_paste_the_garment_exactly():
    img = _garment(1)
    pos = np.array([[0, 0], [36, 36], [5, 17], [36, 0]], np.float64)
    clip = mfm.render(img, pos)
    for frame, (y, x) in zip(clip, pos.astype(int)):
        want = np.zeros((64, 64), np.uint8)
        want[y:y + 28, x:x + 28] = img
        np.testing.assert_array_equal(frame, want)


def test_garment_moves_with_its_centre_of_mass():
    img = _garment(2)
    com0 = _centre_of_mass(img)
    for s in range(10):
        pos = mfm.trajectory(np.random.default_rng(s))
        clip = mfm.render(img, pos)
        assert all(not np.array_equal(a, b) for a, b in zip(clip[:-1], clip[1:]))
        com = np.stack([_centre_of_mass(f) for f in clip])
        np.testing.assert_allclose(com, pos + com0, atol=0.05)  # bilinear placement keeps the centre of mass
        moved = np.linalg.norm(np.diff(com, axis=0), axis=1)
        assert np.median(moved) >= mfm.SPEED[0] - 0.1 and moved.max() <= mfm.SPEED[1] + 0.1


def test_garment_is_never_cut_by_the_border():
    """A solid 28x28 square bouncing fast for a long time keeps its whole intensity in every frame."""
    square = np.full((28, 28), 255, np.uint8)
    for s in range(5):
        pos = mfm.trajectory(np.random.default_rng(s), frames=80, speed=(5.0, 5.0))
        clip = mfm.render(square, pos).astype(np.int64)
        total = clip.sum(axis=(1, 2))
        # bilinear rounding moves at most 0.5 per pixel of the 29x29 footprint; a lost row would lose >= 28*255/2
        assert np.abs(total - 255 * 28 * 28).max() <= 29 * 29 // 2
        assert (clip == 255).sum(axis=(1, 2)).min() >= 27 * 27  # the square's interior is always there


def test_real_garment_intensity_is_kept():
    img = _garment(3)
    clip = mfm.make_clip(img, np.random.default_rng(3))
    np.testing.assert_allclose(clip.astype(np.int64).sum(axis=(1, 2)), int(img.astype(np.int64).sum()),
                               atol=29 * 29 // 2)


# ------------------------------------------------------------------------------------------------------------
# source images and the dataset on disk (real Fashion-MNIST)

@pytest.fixture
def builds(offline_builds):
    """Three small builds: seed 0 twice into different folders ("a", "b"), and seed 1 ("c")."""
    return offline_builds(mfm)


@needs_fmnist
def test_csv_is_class_balanced_with_the_fixed_header(builds):
    root = builds["a"]
    assert (root / mfm.CSV_NAME).read_text().splitlines()[0] == "folder_name,label,split"
    rows = _rows(root)
    assert len(rows) == 10 * (TRAIN + TEST)
    counts = Counter((r["label"], r["split"]) for r in rows)
    assert counts == {**{(mfm.class_label(c), "train"): TRAIN for c in range(10)},
                      **{(mfm.class_label(c), "test"): TEST for c in range(10)}}
    assert len({r["folder_name"] for r in rows}) == len(rows)
    assert all(r["folder_name"].startswith(f"v_{r['label']}_{r['split']}_") for r in rows)


@needs_fmnist
def test_every_clip_is_its_split_source_image_moving(builds, sources):
    """Each written clip is exactly make_clip of the source image chosen for it in its own split, with its own
    generator: train clips come from train images and test clips from test images."""
    rows = _rows(builds["a"])
    chosen = {s: mfm.choose_sources(sources.split(s)[1], n, 0, s) for s, n in [("train", TRAIN), ("test", TEST)]}
    for r in rows:
        split, c, i = r["split"], int(r["label"].split("_")[0]), int(r["folder_name"].rsplit("_", 1)[1])
        assert r["folder_name"] == mfm.folder_name(c, split, i)
        x, y = sources.split(split)
        src = chosen[split][c, i]
        assert y[src] == c
        clip = _read_clip(builds["a"] / mfm.FRAMES_DIR / r["folder_name"])
        np.testing.assert_array_equal(clip, mfm.make_clip(x[src], mfm.clip_rng(0, split, c, i)))
        other = sources.split("test" if split == "train" else "train")[0]
        assert not np.array_equal(clip[0], mfm.make_clip(other[src % len(other)], mfm.clip_rng(0, split, c, i))[0])


@needs_fmnist
def test_layout_is_ucf_frames_layout(builds):
    root = builds["a"]
    assert root.name == mfm.NAME and sorted(p.name for p in root.iterdir()) == sorted([mfm.CSV_NAME, mfm.FRAMES_DIR,
                                                                                        mfm.BUILD_INFO])
    assert sorted(p.name for p in root.parent.iterdir()) == [mfm.NAME]  # no temporary folder left behind
    rows = _rows(root)
    assert sorted(p.name for p in (root / mfm.FRAMES_DIR).iterdir()) == sorted(r["folder_name"] for r in rows)
    names = [f"frame{t:06d}.png" for t in range(1, 17)]
    for r in rows:
        folder = root / mfm.FRAMES_DIR / r["folder_name"]
        assert sorted(p.name for p in folder.iterdir()) == names
        for name in names:
            with Image.open(folder / name) as im:
                assert im.format == "PNG" and im.mode == "L" and im.size == (64, 64)
    assert json.loads((root / mfm.BUILD_INFO).read_text()) == dict(train_per_class=TRAIN, test_per_class=TEST, seed=0,
                                                                   frames=16, size=64)
    assert mfm.train_count(root.parent) == 10 * TRAIN


# ------------------------------------------------------------------------------------------------------------
# command line (its errors, and the argument errors, --overwrite and interruptions of the builds: at the end of this
# file, with Voxel Fashion-MNIST's)

def _cli(module, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module.__name__, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300)


@needs_fmnist
def test_cli_builds_a_tiny_dataset(tmp_path):
    r = _cli(mfm, "--data_path", "data", "--out", str(tmp_path), "--train_per_class", "1", "--test_per_class", "2",
             "--seed", "3", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert str(tmp_path / mfm.NAME) in r.stdout and "10 train + 20 test clips" in r.stdout
    assert "mean" in r.stdout and "std" in r.stdout
    assert len(_rows(tmp_path / mfm.NAME)) == 30


# ------------------------------------------------------------------------------------------------------------
# what both offline sets share, parametrised over both builders


class Offline(NamedTuple):
    module: object
    listings: tuple[str, ...]  # the files that list the items (the same for every seed); the others hold them
    files_per_item: int  # content files per clip or shape
    all_change: bool  # another seed changes every content file (else more than 90 % of them)
    saver: str  # the module's function that writes one content file
    fail_build: int  # interrupt a fresh build after this many content files ...
    fail_overwrite: int  # ... and an overwriting one after this many
    bad_arguments: tuple  # (build kwargs, the value its error names)
    unparsable_flag: str  # a flag of the command line that takes a number


OFFLINE = {
    "moving": Offline(mfm, (mfm.CSV_NAME,), mfm.FRAMES, False, "_save_png", 100, 30,
                      ((dict(train_per_class=0), "0"), (dict(test_per_class=-2), "-2"), (dict(frames=0), "0"),
                       (dict(size=27), "27"), (dict(seed=-1), "-1"), (dict(train_per_class=2.5), "2.5")), "--size"),
    "voxel": Offline(vfm, (vfm.SHAPE_NAMES, vfm.list_name("train"), vfm.list_name("test")), 1, True, "_save_points",
                     20, 10, ((dict(train_per_class=0), "0"), (dict(test_per_class=-2), "-2"), (dict(points=0), "0"),
                              (dict(seed=-1), "-1"), (dict(train_per_class=2.5), "2.5"), (dict(points=True), "True")),
                     "--points"),
}


@needs_fmnist
@pytest.mark.parametrize("kind", OFFLINE)
def test_sources_are_distinct_images_of_their_class_and_split(kind, sources):
    module = OFFLINE[kind].module
    for split, per_class in [("train", 50), ("test", 20)]:
        x, y = sources.split(split)
        idx = module.choose_sources(y, per_class, seed=0, split=split)
        assert idx.shape == (10, per_class)
        assert len(np.unique(idx)) == idx.size and idx.min() >= 0 and idx.max() < len(y)
        for c in range(10):
            assert (y[idx[c]] == c).all()
        # more items per class only appends sources; another seed picks other images
        np.testing.assert_array_equal(module.choose_sources(y, per_class + 5, 0, split)[:, :per_class], idx)
        assert not np.array_equal(module.choose_sources(y, per_class, 1, split), idx)
    assert len(sources.y_train) == 60000 and len(sources.y_test) == 10000
    with pytest.raises(UserError, match="1001"):
        module.choose_sources(sources.y_test, 1001, 0, "test")


@needs_fmnist
@pytest.mark.parametrize("kind", OFFLINE)
def test_build_is_deterministic_and_depends_on_the_seed(kind, offline_builds):
    spec = OFFLINE[kind]
    a, b, c = (_tree(offline_builds(spec.module)[k]) for k in "abc")
    assert a == b  # same seed, another folder: byte-identical listings and content files
    assert all(a[k] == c[k] for k in spec.listings)  # the listings name items, not their content
    info = getattr(spec.module, "BUILD_INFO", None)  # the build's settings, seed included
    if info:
        assert json.loads(a[info])["seed"] == 0 and json.loads(c[info])["seed"] == 1
    content = [k for k in a if k not in spec.listings and k != info]
    assert len(content) == 10 * (TRAIN + TEST) * spec.files_per_item
    changed = sum(a[k] != c[k] for k in content)
    assert changed == len(content) if spec.all_change else changed > 0.9 * len(content)


@pytest.mark.parametrize("kind, kwargs, value", [(kind, kwargs, value) for kind, spec in OFFLINE.items()
                                                  for kwargs, value in spec.bad_arguments])
def test_bad_arguments_raise_user_error(tmp_path, kind, kwargs, value):
    module = OFFLINE[kind].module
    with pytest.raises(UserError, match=value):
        module.build(tmp_path, **kwargs, progress=False)
    assert not (tmp_path / module.NAME).exists()


@needs_fmnist
@pytest.mark.parametrize("kind", OFFLINE)
def test_too_many_items_per_class_raise_user_error(kind, tmp_path):
    with pytest.raises(UserError, match="1001"):
        OFFLINE[kind].module.build(tmp_path, train_per_class=1, test_per_class=1001, progress=False)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kind", OFFLINE)
def test_existing_target_needs_overwrite(kind, tmp_path):
    module = OFFLINE[kind].module
    (tmp_path / module.NAME).mkdir()
    (tmp_path / module.NAME / "keep").write_text("x")
    with pytest.raises(UserError, match="already exists.*--overwrite"):
        module.build(tmp_path, train_per_class=1, test_per_class=1, progress=False)
    assert (tmp_path / module.NAME / "keep").read_text() == "x"


@needs_fmnist
@pytest.mark.parametrize("kind", OFFLINE)
def test_overwrite_replaces_the_dataset(kind, tmp_path, offline_builds):
    module = OFFLINE[kind].module
    (tmp_path / module.NAME).mkdir()
    (tmp_path / module.NAME / "stale").write_text("x")
    module.build(tmp_path, train_per_class=TRAIN, test_per_class=TEST, seed=1, overwrite=True, progress=False)
    assert _tree(tmp_path / module.NAME) == _tree(offline_builds(module)["c"])
    assert sorted(p.name for p in tmp_path.iterdir()) == [module.NAME]


def _fail_after(monkeypatch, spec: Offline, n: int) -> None:
    """Make the n+1-th content-file write raise, as if the build was interrupted there."""
    calls, real = itertools.count(), getattr(spec.module, spec.saver)

    def save(content, path):
        if next(calls) >= n:
            raise KeyboardInterrupt("simulated interruption")
        real(content, path)

    monkeypatch.setattr(spec.module, spec.saver, save)


@needs_fmnist
@pytest.mark.parametrize("kind", OFFLINE)
def test_interrupted_build_leaves_no_dataset(kind, tmp_path, monkeypatch):
    spec = OFFLINE[kind]
    _fail_after(monkeypatch, spec, spec.fail_build)
    with pytest.raises(KeyboardInterrupt):
        spec.module.build(tmp_path, train_per_class=TRAIN, test_per_class=TEST, progress=False)
    assert list(tmp_path.iterdir()) == []


@needs_fmnist
@pytest.mark.parametrize("kind", OFFLINE)
def test_interrupted_overwrite_keeps_the_old_dataset(kind, tmp_path, monkeypatch, offline_builds):
    spec = OFFLINE[kind]
    spec.module.build(tmp_path, train_per_class=TRAIN, test_per_class=TEST, seed=0, progress=False)
    _fail_after(monkeypatch, spec, spec.fail_overwrite)
    with pytest.raises(KeyboardInterrupt):
        spec.module.build(tmp_path, train_per_class=TRAIN, test_per_class=TEST, seed=1, overwrite=True,
                          progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == [spec.module.NAME]
    assert _tree(tmp_path / spec.module.NAME) == _tree(offline_builds(spec.module)["a"])


@pytest.mark.parametrize("kind", OFFLINE)
def test_cli_bad_value_is_one_error_line(kind, tmp_path):
    r = _cli(OFFLINE[kind].module, "--out", str(tmp_path), "--train_per_class", "0", "--no-progress")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "--train_per_class" in lines[0], r.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kind", OFFLINE)
def test_cli_unparsable_value_is_a_user_error(kind, tmp_path, capsys):
    """argparse's own errors also end as one line and status 2 (in process: the subprocess test covers the rest)."""
    from common.cli import run_main

    spec = OFFLINE[kind]
    with pytest.raises(SystemExit) as e:
        run_main(lambda: spec.module.main(["--out", str(tmp_path), spec.unparsable_flag, "abc"]))
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "abc" in err[0]
    assert list(tmp_path.iterdir()) == []


@needs_fmnist
def test_a_demo_builds_its_own_set_once_and_refuses_one_built_otherwise(tmp_path):
    from common.demo import build_once
    root = tmp_path / "demo_root"
    build_once(mfm, mfm.CSV_NAME, str(root), source_path="data", train_per_class=1, test_per_class=1, frames=2,
               size=30)  # Fashion-MNIST read from source_path (or the Debian path), the set written under root
    assert mfm.train_count(root) == 10 and (root / mfm.NAME / mfm.BUILD_INFO).is_file()
    build_once(mfm, mfm.CSV_NAME, str(root), source_path="data", frames=2, size=30)  # the same: used as it is
    with pytest.raises(UserError, match=r"built with size 30; this table needs --size 48: rebuild it with python -m "
                                        r"common.data.moving_fmnist --data_path data --out .*demo_root --overwrite "
                                        r"--size 48$"):
        build_once(mfm, mfm.CSV_NAME, str(root), source_path="data", frames=2, size=48)
    (root / mfm.NAME / mfm.BUILD_INFO).unlink()  # a set built before the build was recorded
    with pytest.raises(UserError, match="built with size unrecorded"):
        build_once(mfm, mfm.CSV_NAME, str(root), size=30)
