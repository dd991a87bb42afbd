"""The frames-layout video loader (common/data/video.py) on tiny clips written here in the UCF101 layout:
clip sampling, normalisation, the uint8 cache and its rebuild, the lazy MappedArray, and every bad input."""
import csv
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from common.data import DATASETS, get_dataset, is_video
from common.data import video as video_mod
from common.data.base import MappedArray
from common.data.video import VIDEO_DATASETS, VIDEO_SPECS
from common.errors import DatasetNotFoundError, UserError

UCF = VIDEO_SPECS["miniUCF101"]


def frame_image(clip: int, t: int, mode: str = "RGB", size=(160, 120)) -> Image.Image:
    """Frame t of clip `clip`: its left half has the grey value 4 * t (which frame it is), its right half
    200 - clip (which clip), so a sampled frame and a horizontal flip can be read back from the pixels."""
    w, h = size
    a = np.zeros((h, w), np.uint8)
    a[:, : w // 2] = 4 * t
    a[:, w // 2:] = 200 - clip
    img = Image.fromarray(a, "L")
    return img.convert(mode)


def write_ucf(root: Path, n_classes=2, train=2, test=1, lengths=None, ext="png", csv_name=UCF.csv,
              folder=UCF.folder) -> list[tuple[str, str, str, int]]:
    """A miniUCF101-layout dataset: <root>/<folder>/jpegs_112/<clip>/frame%06d.<ext> and the split csv.
    Returns the csv rows with each clip's number of frames."""
    base = root / folder
    rows, k = [], 0
    for c in range(n_classes):
        for split, n in (("train", train), ("test", test)):
            for i in range(n):
                name = f"v_Class{c}_g{i:02d}_{split}"
                length = lengths[k] if lengths else 20 + 3 * k
                d = base / "jpegs_112" / name
                d.mkdir(parents=True, exist_ok=True)
                for t in range(1, length + 1):
                    frame_image(k, t).save(d / f"frame{t:06d}.{ext}")
                rows.append((name, f"Class{c}", split, length))
                k += 1
    with open(base / csv_name, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["folder_name", "label", "split"])
        w.writerows(r[:3] for r in rows)
    return rows


def make_frames_layout(name: str):
    """A writer of a tiny `name` dataset in the frames layout, where its spec says (folder and split csv): 2 classes,
    2 train and 1 test clips each. Returns what the loaded dataset must look like (as test_data's writers)."""
    spec = VIDEO_SPECS[name]

    def make(root: Path) -> dict:
        write_ucf(root, csv_name=spec.csv, folder=spec.folder)
        return dict(kwargs=dict(res=48, frames=4, frame_gap=2, cache_dir=str(root / "cache")), n_train=4, n_test=2,
                    channel=spec.channel, size=(4, 48, 48), num_classes=2)
    return make


# every video dataset's layout (tests/test_registries.py loads each through get_dataset)
LAYOUTS = {name: (name, make_frames_layout(name)) for name in VIDEO_DATASETS}


def load(root, tmp_path, **kw):
    kw.setdefault("frames", 4)
    kw.setdefault("frame_gap", 2)
    return get_dataset("miniUCF101", str(root), res=kw.pop("res", 48), cache_dir=str(tmp_path / "cache"), **kw)


def pixels(real, split="train"):
    """uint8 pixels back from the normalised clips."""
    x = (real.images_train if split == "train" else real.images_test)[:]
    mean = torch.tensor(real.mean).view(1, -1, 1, 1, 1)
    std = torch.tensor(real.std).view(1, -1, 1, 1, 1)
    return ((x * std + mean) * 255).round()


def test_video_datasets_are_listed():
    assert {"miniUCF101", "UCF101", "HMDB51", "MovingFashionMNIST"} <= set(DATASETS)
    assert is_video("miniUCF101") and not is_video("CIFAR10")


def test_frames_layout_loads_and_samples_as_specified(tmp_path):
    rows = write_ucf(tmp_path / "data")
    real = load(tmp_path / "data", tmp_path)
    assert real.domain == "video" and real.channel == 3 and real.im_size == (4, 48, 48)
    assert real.class_names == ["Class0", "Class1"]
    assert isinstance(real.images_train, MappedArray) and isinstance(real.images_train.data, np.memmap)
    assert real.images_train.shape == (4, 3, 4, 48, 48) and real.images_test.shape == (2, 3, 4, 48, 48)
    assert real.labels_train.tolist() == [0, 0, 1, 1] and real.labels_test.tolist() == [0, 1]
    assert [len(i) for i in real.indices_class] == [2, 2]
    px_train, px_test = pixels(real, "train"), pixels(real, "test")
    train_rows = [r for r in rows if r[2] == "train"]
    for clip, (name, _, _, length) in zip(px_train, train_rows):
        left, right = clip[0, :, 24, 5], clip[0, :, 24, 42]  # the first channel, a pixel in each half
        flipped = bool((left == left[0]).all())  # the clip's constant half is on the left
        ids = ((right if flipped else left) / 4).round().long()
        assert ((ids[1:] - ids[:-1]) == 2).all(), (name, ids)  # frame_gap 2
        assert 1 <= ids[0] and ids[-1] <= length
    # test clips: the centred start, never flipped
    test_rows = [r for r in rows if r[2] == "test"]
    for clip, (name, _, _, length) in zip(px_test, test_rows):
        ids = (clip[0, :, 24, 5] / 4).round().long()
        need = 3 * 2 + 1
        assert ids.tolist() == [1 + (length - need) // 2 + 2 * j for j in range(4)]


def test_sampling_is_deterministic_from_the_seed_and_flips_half(tmp_path):
    write_ucf(tmp_path / "data", n_classes=2, train=12, test=1, lengths=[40] * 26)
    a = pixels(load(tmp_path / "data", tmp_path, clip_seed=0))
    b = pixels(load(tmp_path / "data", tmp_path, clip_seed=0))
    c = pixels(load(tmp_path / "data", tmp_path, clip_seed=1))
    assert torch.equal(a, b) and not torch.equal(a, c)
    # a flipped clip has the clip's constant value 200 - k (k < 26: above 174) on its left; an unflipped one
    # has 4 * t there (t <= 40: at most 160)
    flipped = (a[:, 0, 0, 24, 5] > 170).float()
    assert 0.2 < flipped.mean() < 0.8  # 24 clips, each flipped with probability 1/2
    starts = (torch.where(flipped.bool(), a[:, 0, 0, 24, 42], a[:, 0, 0, 24, 5]) / 4).round()
    assert len(set(starts.tolist())) > 3  # random starts


def test_normalisation_and_values(tmp_path):
    write_ucf(tmp_path / "data", lengths=[8] * 6)
    real = load(tmp_path / "data", tmp_path, frames=8, frame_gap=1, res=112)
    x = real.images_test[0:1]  # test clip 0 (written third): not flipped, frames 1..8
    # UCF frames are resized to 160x120 (here already) and centre-cropped to 112: column 24 is in the left half
    expect = (torch.tensor([4.0 * t for t in range(1, 9)]) / 255 - UCF.mean[0]) / UCF.std[0]
    torch.testing.assert_close(x[0, 0, :, 50, 24], expect, atol=2 / 255 / UCF.std[0], rtol=0)


def test_cache_is_reused_and_rebuilt_when_the_source_changes(tmp_path, monkeypatch):
    write_ucf(tmp_path / "data", lengths=[10] * 6)
    first = pixels(load(tmp_path / "data", tmp_path, frames=4, frame_gap=1))
    cached = sorted((tmp_path / "cache").glob("*.npy"))
    assert len(cached) == 2  # train and test

    def no_decoding(*a, **k):
        raise AssertionError("decoded JPEG/PNG frames although the cache is valid")

    with monkeypatch.context() as m:
        m.setattr(video_mod, "_read_frames", no_decoding)
        assert torch.equal(pixels(load(tmp_path / "data", tmp_path, frames=4, frame_gap=1)), first)
    # change every frame of one test clip: that split's cache is rebuilt with the new pixels
    d = tmp_path / "data" / "UCF101" / "jpegs_112" / "v_Class0_g00_test"
    for t in range(1, 11):
        Image.fromarray(np.full((120, 160, 3), 77, np.uint8)).save(d / f"frame{t:06d}.png")
        os.utime(d / f"frame{t:06d}.png", ns=(1, 1))  # a different modification time as well
    again = load(tmp_path / "data", tmp_path, frames=4, frame_gap=1)
    assert len(sorted((tmp_path / "cache").glob("*.npy"))) == 3
    assert (pixels(again, "test")[0] == 77).all()
    assert torch.equal(pixels(again, "train"), pixels(load(tmp_path / "data", tmp_path, frames=4, frame_gap=1)))
    # another frame count or resolution is another cache file
    load(tmp_path / "data", tmp_path, frames=3, frame_gap=1)
    assert len(sorted((tmp_path / "cache").glob("*.npy"))) == 5


def test_clip_array_indexing_and_restrict(tmp_path):
    write_ucf(tmp_path / "data", n_classes=2, train=3, test=2)
    real = load(tmp_path / "data", tmp_path)
    x = real.images_train
    full = x[:]
    assert full.dtype == torch.float32 and full.shape == x.shape
    idx = torch.tensor([4, 0, 2])
    assert torch.equal(x[idx], full[idx]) and torch.equal(x[1:3], full[1:3]) and torch.equal(x[3], full[3])
    sub = x.take(torch.tensor([5, 1]))
    assert isinstance(sub, MappedArray) and torch.equal(sub[:], full[[5, 1]])
    small = real.restrict(n_train_per_class=1, n_test=2, seed=0)
    assert isinstance(small.images_train, MappedArray) and len(small.images_train) == 2
    assert small.labels_train.tolist() == [0, 1]
    g = torch.Generator().manual_seed(0)
    assert real.get_images(1, 2, g).shape == (2, 3, 4, 48, 48)


# every video dataset (UCF101 and HMDB51 from their own folder and csv) loads its LAYOUTS writer's files:
# tests/test_registries.py::test_dataset_loads


# ---- bad input ----------------------------------------------------------------------------------------

def test_missing_frames_folder(tmp_path):
    write_ucf(tmp_path / "data")
    import shutil
    shutil.rmtree(tmp_path / "data" / "UCF101" / "jpegs_112")
    with pytest.raises(DatasetNotFoundError) as e:
        load(tmp_path / "data", tmp_path)
    assert str(tmp_path / "data" / "UCF101") in str(e.value) and "jpegs_112" in str(e.value)
    assert "\n" not in str(e.value)


def test_csv_naming_a_missing_clip_folder(tmp_path):
    write_ucf(tmp_path / "data")
    with open(tmp_path / "data" / "UCF101" / UCF.csv, "a") as f:
        f.write("v_Ghost_g01_c01,Class1,train\n")
    with pytest.raises(DatasetNotFoundError, match="v_Ghost_g01_c01"):
        load(tmp_path / "data", tmp_path)


def test_csv_without_the_columns(tmp_path):
    write_ucf(tmp_path / "data")
    (tmp_path / "data" / "UCF101" / UCF.csv).write_text("name,class\nv_a,x\n")
    with pytest.raises(UserError, match="folder_name,label,split"):
        load(tmp_path / "data", tmp_path)


def test_clips_shorter_than_frames_times_gap(tmp_path):
    write_ucf(tmp_path / "data", lengths=[20, 20, 9, 20, 20, 20])
    with pytest.raises(UserError) as e:
        load(tmp_path / "data", tmp_path, frames=4, frame_gap=4)  # needs 13 frames
    msg = str(e.value)
    assert "v_Class0_g00_test" in msg and "9" in msg and "13" in msg and "--short_clips shrink" in msg
    # the original's behaviour on request: that clip is sampled with gap 9 // 4 = 2
    real = load(tmp_path / "data", tmp_path, frames=4, frame_gap=4, short_clips="shrink")
    assert len(real.images_train) == 4
    with pytest.raises(UserError, match="short_clips"):
        load(tmp_path / "data", tmp_path, frames=4, frame_gap=4, short_clips="pad")


def test_shrink_is_the_originals_rule(tmp_path):
    """--short_clips shrink: a clip of fewer than frames * gap frames takes the gap length // frames (the
    original's rule), even when (frames - 1) * gap + 1 frames would do; longer clips keep the gap. The default
    mode reads the same clips with their gap."""
    # frames 4 x gap 4: the test clip of Class0 has 14 frames (>= 13 but < 16), the others 20 or more
    write_ucf(tmp_path / "data", lengths=[20, 22, 14, 24, 26, 28])
    step = {}
    for mode in ("error", "shrink"):
        real = load(tmp_path / "data", tmp_path, frames=4, frame_gap=4, short_clips=mode)
        t = pixels(real, "test")[:, 0, :, 0, 0] / 4  # (clips, frames): the frame number of each sampled frame
        step[mode] = (t[:, 1:] - t[:, :-1]).tolist()
    assert step["error"] == [[4, 4, 4], [4, 4, 4]]
    assert step["shrink"] == [[3, 3, 3], [4, 4, 4]]  # 14 // 4 = 3; the 28-frame clip keeps gap 4
    # a 47-frame clip at 8 frames x gap 6 (the example of the README): gap 5 in shrink mode
    clip = video_mod._Clip(folder="v", label=0, frames=tuple(Path(f"f{i}") for i in range(47)))
    numbers = {mode: [int(f.name[1:]) for f in video_mod._sample(clip, 8, 6, False, 0, mode)[0]]
               for mode in ("shrink", "error")}
    assert numbers["shrink"] == [5 + 5 * i for i in range(8)]  # test clips: the centred start (47 - 36) // 2
    assert numbers["error"] == [2 + 6 * i for i in range(8)]  # (47 - 43) // 2
    # fewer frames than --frames: an error in both modes, naming the clip
    write_ucf(tmp_path / "short", lengths=[20, 20, 3, 20, 20, 20])
    with pytest.raises(UserError, match=r"v_Class0_g00_test with 3; lower --frames"):
        load(tmp_path / "short", tmp_path, frames=4, frame_gap=4, short_clips="shrink")


def test_test_only_leaves_the_training_split_empty_and_a_class_without_train_clips_is_an_error(tmp_path):
    write_ucf(tmp_path / "data")
    real = load(tmp_path / "data", tmp_path, test_only=True)
    assert len(real.images_train) == 0 and len(real.images_test) == 2 and real.num_classes == 2
    with open(tmp_path / "data" / "UCF101" / UCF.csv, "a") as f:
        f.write("v_Class0_g00_test,Lonely,test\n")
    with pytest.raises(UserError, match="Lonely have no train clips"):
        load(tmp_path / "data", tmp_path)


def test_an_unreadable_frame_is_one_clear_error(tmp_path):
    write_ucf(tmp_path / "data", lengths=[8] * 6)
    (tmp_path / "data" / "UCF101" / "jpegs_112" / "v_Class1_g01_train" / "frame000002.png").write_bytes(b"junk")
    with pytest.raises(UserError, match="v_Class1_g01_train"):
        load(tmp_path / "data", tmp_path, frames=8, frame_gap=1)
    assert not list((tmp_path / "cache").glob("*train*"))  # no half-written cache


def test_zca_and_bad_counts_on_video(tmp_path):
    write_ucf(tmp_path / "data")
    with pytest.raises(UserError, match="zca"):
        load(tmp_path / "data", tmp_path, zca=True)
    with pytest.raises(UserError, match="--frames must be >= 1"):
        load(tmp_path / "data", tmp_path, frames=0)
