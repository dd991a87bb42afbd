"""Tests of common/data/images.py: every on-disk layout, loaded from small files written here, plus the real
Debian Fashion-MNIST when it is installed."""
from __future__ import annotations

import gzip
import pickle
import struct
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from common.data import images as data
from common.data import (DATASETS, IMAGE_DATASETS, IMAGENET_SUBSET_INDICES, IMAGENET_SUBSETS, RealData, get_dataset)
from common.errors import DatasetNotFoundError, UnknownChoiceError, UserError

REAL_DEBIAN_FASHION_MNIST = data.DEBIAN_FASHION_MNIST
CONST = 51  # a constant image of this byte value must map to (CONST / 255 - mean) / std


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """No download attempts and no Debian Fashion-MNIST, unless a test says otherwise."""
    monkeypatch.setenv(data.NO_DOWNLOAD_ENV, "1")
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", tmp_path / "no-debian-fashion-mnist")


# ------------------------------------------------------------------------------------------------------
# Writers of small datasets in each on-disk layout. Each returns what the loaded dataset must look like.

def _images(n: int, shape, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).integers(0, 256, size=(n, *shape), dtype=np.uint8)
    x[0] = CONST
    return x


def _write_idx(path: Path, array: np.ndarray, gz: bool) -> None:
    payload = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    if gz:
        with gzip.open(f"{path}.gz", "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)


def write_idx_folder(folder: Path, gz: bool, n_train=20, n_test=10) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n, seed in (("train", n_train, 0), ("t10k", n_test, 1)):
        _write_idx(folder / f"{prefix}-images-idx3-ubyte", _images(n, (28, 28), seed), gz)
        _write_idx(folder / f"{prefix}-labels-idx1-ubyte", (np.arange(n) % 10).astype(np.uint8), gz)


def make_mnist_like(name, gz=True):
    def make(root: Path) -> dict:
        write_idx_folder(root / name / "raw", gz)
        return dict(kwargs={}, n_train=20, n_test=10, channel=1, size=(28, 28), num_classes=10)
    return make


def _pickle(path: Path, obj) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f)


def make_cifar10(root: Path) -> dict:
    folder = root / "cifar-10-batches-py"
    folder.mkdir()
    for i in range(1, 6):
        x = _images(4, (3072,), i)
        _pickle(folder / f"data_batch_{i}", {b"data": x, b"labels": [(4 * i + j) % 10 for j in range(4)]})
    _pickle(folder / "test_batch", {b"data": _images(10, (3072,), 9), b"labels": list(range(10))})
    _pickle(folder / "batches.meta", {b"label_names": [f"c{i}".encode() for i in range(10)]})
    return dict(kwargs={}, n_train=20, n_test=10, channel=3, size=(32, 32), num_classes=10)


def make_cifar100(root: Path) -> dict:
    folder = root / "cifar-100-python"
    folder.mkdir()
    for split, n, seed in (("train", 200, 0), ("test", 20, 1)):
        labels = list(np.arange(n) % 100)
        _pickle(folder / split, {b"data": _images(n, (3072,), seed), b"fine_labels": labels,
                                 b"coarse_labels": [v // 5 for v in labels]})
    _pickle(folder / "meta", {b"fine_label_names": [f"f{i}".encode() for i in range(100)],
                              b"coarse_label_names": [f"g{i}".encode() for i in range(20)]})
    return dict(kwargs={}, n_train=200, n_test=20, channel=3, size=(32, 32), num_classes=100)


def make_svhn(subfolder=""):
    def make(root: Path) -> dict:
        import scipy.io
        folder = root / subfolder
        folder.mkdir(exist_ok=True)
        for split, n, seed in (("train", 20, 0), ("test", 10, 1)):
            x = _images(n, (3, 32, 32), seed).transpose(2, 3, 1, 0)  # NCHW -> HWCN as in the .mat files
            y = (np.arange(n) % 10 + 1).reshape(-1, 1)  # 1..10, 10 meaning the digit 0
            scipy.io.savemat(folder / f"{split}_32x32.mat", {"X": x, "y": y})
        return dict(kwargs={}, n_train=20, n_test=10, channel=3, size=(32, 32), num_classes=10)
    return make


def _save_image(path: Path, array_hwc: np.ndarray) -> None:
    from PIL import Image
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array_hwc).save(path)


TINY_WNIDS = ["n01443537", "n01629819", "n01641577"]


def make_tiny(val_layout="annotations"):
    def make(root: Path) -> dict:
        base = root / "tiny-imagenet-200"
        rng = np.random.default_rng(0)
        (base).mkdir()
        (base / "wnids.txt").write_text("\n".join(reversed(TINY_WNIDS)) + "\n")
        (base / "words.txt").write_text("".join(f"{w}\tname {w}, other\n" for w in TINY_WNIDS))
        for c, w in enumerate(TINY_WNIDS):
            for j in range(4):
                img = np.full((64, 64, 3), CONST, np.uint8) if (c, j) == (0, 0) else \
                    rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
                ext = "png" if j == 0 else "JPEG"  # PNG keeps the constant image exact
                _save_image(base / "train" / w / "images" / f"{w}_{j}.{ext}", img)
        lines = []
        for k in range(6):
            w = TINY_WNIDS[k % 3]
            img = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
            if val_layout == "annotations":
                _save_image(base / "val" / "images" / f"val_{k}.JPEG", img)
                lines.append(f"val_{k}.JPEG\t{w}\t0\t0\t63\t63")
            else:
                _save_image(base / "val" / w / f"val_{k}.JPEG", img)
        if lines:
            (base / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
        return dict(kwargs={}, n_train=12, n_test=6, channel=3, size=(64, 64), num_classes=3)
    return make


def make_imagenet(subset="imagenette", res=16, folders=None):
    def make(root: Path) -> dict:
        rng = np.random.default_rng(0)
        for c, w in enumerate(folders or IMAGENET_SUBSETS[subset]):
            for j in range(2):
                img = np.full((40, 48, 3), CONST, np.uint8) if (c, j) == (0, 0) else \
                    rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
                _save_image(root / "train" / w / f"{w}_{j}.{'png' if j == 0 else 'JPEG'}", img)
            _save_image(root / "val" / w / f"val_{w}.JPEG", rng.integers(0, 256, (50, 30, 3), dtype=np.uint8))
        size = (res, res) if res else (128, 128)
        return dict(kwargs=dict(subset=subset, res=res), n_train=20, n_test=10, channel=3, size=size,
                    num_classes=10)
    return make


LAYOUTS = {
    "FashionMNIST-gz": ("FashionMNIST", make_mnist_like("FashionMNIST", gz=True)),
    "FashionMNIST-plain": ("FashionMNIST", make_mnist_like("FashionMNIST", gz=False)),
    "MNIST-gz": ("MNIST", make_mnist_like("MNIST", gz=True)),
    "MNIST-plain": ("MNIST", make_mnist_like("MNIST", gz=False)),
    "CIFAR10": ("CIFAR10", make_cifar10),
    "CIFAR100": ("CIFAR100", make_cifar100),
    "SVHN-root": ("SVHN", make_svhn("")),
    "SVHN-subfolder": ("SVHN", make_svhn("SVHN")),
    "Tiny-annotations": ("Tiny", make_tiny("annotations")),
    "Tiny-folders": ("Tiny", make_tiny("folders")),
    "ImageNet-imagenette": ("ImageNet", make_imagenet("imagenette")),
    "ImageNet-imagesquawk-native": ("ImageNet", make_imagenet("imagesquawk", res=None)),
}


def test_every_dataset_has_a_layout_test():
    assert {name for name, _ in LAYOUTS.values()} == set(IMAGE_DATASETS)
    assert tuple(data._SPECS) == IMAGE_DATASETS


# every layout of LAYOUTS loads through get_dataset -- shapes, dtypes, labels, the normalisation of the constant
# image 0, indices_class -- with every other domain's: tests/test_registries.py::test_dataset_loads


def test_cifar_and_tiny_class_names(tmp_path):
    make_cifar100(tmp_path)
    assert get_dataset("CIFAR100", str(tmp_path)).class_names[:2] == ["f0", "f1"]
    make_tiny()(tmp_path)
    tiny = get_dataset("Tiny", str(tmp_path))
    assert tiny.class_names == [f"name {w}" for w in sorted(TINY_WNIDS)]  # labels follow the sorted wnids
    make_imagenet("imagenette")(tmp_path)
    assert get_dataset("ImageNet", str(tmp_path), subset="imagenette", res=16).class_names[0] == "tench"


def test_svhn_label_10_is_digit_0(tmp_path):
    make_svhn()(tmp_path)
    d = get_dataset("SVHN", str(tmp_path))
    assert d.labels_train.tolist() == [(i % 10 + 1) % 10 for i in range(20)]


def test_cifar10_labels_and_pixels_follow_the_pickles(tmp_path):
    make_cifar10(tmp_path)
    d = get_dataset("CIFAR10", str(tmp_path))
    batch = pickle.loads((tmp_path / "cifar-10-batches-py" / "data_batch_2").read_bytes())
    assert d.labels_train[4:8].tolist() == batch[b"labels"]
    raw = torch.from_numpy(batch[b"data"][1].reshape(3, 32, 32)).float() / 255
    mean, std = torch.tensor(d.mean).view(3, 1, 1), torch.tensor(d.std).view(3, 1, 1)
    assert torch.allclose(d.images_train[5], (raw - mean) / std, atol=1e-5)
    assert d.class_names == [f"c{i}" for i in range(10)]


@pytest.mark.parametrize("name,make,res", [("CIFAR10", make_cifar10, 16),
                                           ("FashionMNIST", make_mnist_like("FashionMNIST"), 32),
                                           ("Tiny", make_tiny(), 32)])
def test_res_resizes(name, make, res, tmp_path):
    make(tmp_path)
    d = get_dataset(name, str(tmp_path), res=res)
    assert d.im_size == (res, res) and d.images_train.shape[-2:] == (res, res)
    expected = (CONST / 255 - torch.tensor(d.mean)) / torch.tensor(d.std)  # a constant image stays constant
    assert torch.allclose(d.images_train[0], expected.view(-1, 1, 1).expand_as(d.images_train[0]), atol=1e-4)


def test_imagenet_crops_to_square_and_uses_fastai_parachute_folder(tmp_path):
    folders = [w if w != "n03888257" else "n03888605" for w in IMAGENET_SUBSETS["imagenette"]]
    make_imagenet("imagenette", res=24, folders=folders)(tmp_path)
    d = get_dataset("ImageNet", str(tmp_path), subset="imagenette", res=24)
    assert d.images_train.shape == (20, 3, 24, 24) and d.images_test.shape == (10, 3, 24, 24)
    assert d.labels_train.tolist() == [c for c in range(10) for _ in range(2)]


def test_imagenet_missing_class_folder(tmp_path):
    make_imagenet("imagewoof")(tmp_path)
    missing = IMAGENET_SUBSETS["imagewoof"][3]
    for f in (tmp_path / "val" / missing).iterdir():
        f.unlink()
    with pytest.raises(DatasetNotFoundError, match=missing) as e:
        get_dataset("ImageNet", str(tmp_path), subset="imagewoof", res=16)
    assert str(tmp_path / "val") in str(e.value)


def test_imagenet_subset_tables():
    assert set(IMAGENET_SUBSETS) == {"imagenette", "imagewoof", "imagefruit", "imageyellow", "imagemeow", "imagesquawk",
                                     *(f"imagenet-{x}" for x in "abcde")}
    assert IMAGENET_SUBSET_INDICES["imagenette"] == [0, 217, 482, 491, 497, 566, 569, 571, 574, 701]
    # GLaD's ImageNet-A..E (utils.py, Config), as FreD's ImageNet-abcde code uses them
    assert IMAGENET_SUBSET_INDICES["imagenet-a"] == [255, 376, 984, 364, 500, 986, 333, 576, 148, 135]
    assert IMAGENET_SUBSET_INDICES["imagenet-b"] == [129, 916, 90, 275, 995, 874, 102, 259, 685, 139]
    assert IMAGENET_SUBSET_INDICES["imagenet-c"] == [565, 94, 554, 535, 92, 392, 291, 136, 324, 11]
    assert IMAGENET_SUBSET_INDICES["imagenet-d"] == [9, 258, 13, 262, 19, 339, 321, 24, 93, 322]
    assert IMAGENET_SUBSET_INDICES["imagenet-e"] == [816, 96, 100, 145, 739, 713, 783, 76, 688, 326]
    for s, wnids in IMAGENET_SUBSETS.items():
        assert len(wnids) == len(set(wnids)) == 10 == len(IMAGENET_SUBSET_INDICES[s])
        assert all(len(w) == 9 and w[0] == "n" and w[1:].isdigit() for w in wnids)
    # index i is the i-th wnid in sorted order, so the index order and the wnid order agree
    pairs = sorted({(i, w) for s in IMAGENET_SUBSETS for i, w in zip(IMAGENET_SUBSET_INDICES[s], IMAGENET_SUBSETS[s])})
    assert [w for _, w in pairs] == sorted(w for _, w in pairs)
    assert len({i for i, _ in pairs}) == len(pairs)


# ------------------------------------------------------------------------------------------------------
# RealData methods

@pytest.fixture
def cifar(tmp_path) -> RealData:
    make_cifar100(tmp_path)
    return get_dataset("CIFAR100", str(tmp_path))


def test_get_images(cifar):
    c = 7
    own = cifar.images_train[cifar.indices_class[c]]
    got = cifar.get_images(c, 1, torch.Generator().manual_seed(0))
    assert got.shape == (1, 3, 32, 32) and any(torch.equal(got[0], x) for x in own)
    everything = cifar.get_images(c, 10)
    assert len(everything) == len(own) == 2
    assert sorted(x.sum().item() for x in everything) == sorted(x.sum().item() for x in own)  # no repeats


def test_get_images_reproducible(tmp_path):
    write_idx_folder(tmp_path / "MNIST" / "raw", gz=True, n_train=200)  # 20 images per class
    d = get_dataset("MNIST", str(tmp_path))
    a = d.get_images(3, 5, torch.Generator().manual_seed(1))
    b = d.get_images(3, 5, torch.Generator().manual_seed(1))
    c = d.get_images(3, 5, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c) and len(a) == 5


def test_restrict(cifar):
    small = cifar.restrict(n_train_per_class=1, n_test=5, seed=3)
    assert small.images_train.shape == (100, 3, 32, 32) and small.images_test.shape == (5, 3, 32, 32)
    assert [len(i) for i in small.indices_class] == [1] * 100
    for c, idx in enumerate(small.indices_class):
        assert (small.labels_train[idx] == c).all()
    again = cifar.restrict(n_train_per_class=1, n_test=5, seed=3)
    assert torch.equal(small.images_train, again.images_train) and torch.equal(small.labels_test, again.labels_test)
    other = cifar.restrict(n_train_per_class=1, n_test=5, seed=4)
    assert not torch.equal(small.images_train, other.images_train)
    assert small.labels_test.tolist() == sorted(small.labels_test.tolist())  # test labels are 0..19 in order
    kept_order = cifar.restrict(n_train_per_class=2)  # everything, in the original order (labels 0..99, 0..99)
    assert kept_order.labels_train.tolist() == cifar.labels_train.tolist()
    assert cifar.images_train.shape[0] == 200  # the original is untouched
    full = cifar.restrict()
    assert torch.equal(full.images_train, cifar.images_train)


def test_to(cifar):
    moved = cifar.to("cpu")
    assert moved.images_train.device.type == "cpu" and torch.equal(moved.labels_test, cifar.labels_test)
    assert "images_train" not in repr(moved)  # tensors stay out of the repr


def test_zca_whitens_the_pixels_with_augments_zca(cifar, tmp_path, monkeypatch):
    calls = []

    def fake_zca_whiten(train, test, eps):
        calls.append((train.shape, test.shape))
        return train * 2, test * 2, "fitted"

    monkeypatch.setattr(data, "zca_whiten", fake_zca_whiten)
    d = get_dataset("CIFAR100", str(tmp_path), zca=True)
    assert calls == [((200, 3, 32, 32), (20, 3, 32, 32))]
    # the original whitens [0, 1] pixels: no mean/std normalisation when ZCA is on
    mean, std = torch.tensor(cifar.mean).view(3, 1, 1), torch.tensor(cifar.std).view(3, 1, 1)
    pixels = cifar.images_train * std + mean
    assert d.zca == "fitted" and torch.allclose(d.images_train, pixels * 2, atol=1e-5)
    assert d.mean == [0.0] * 3 and d.std == [1.0] * 3


# ------------------------------------------------------------------------------------------------------
# Errors

@pytest.mark.parametrize("name", DATASETS)
def test_missing_dataset_names_the_path(name, tmp_path):
    kwargs = dict(subset="imagenette") if name == "ImageNet" else {}
    with pytest.raises(DatasetNotFoundError) as e:
        get_dataset(name, str(tmp_path / "nowhere"), **kwargs)
    message = str(e.value)
    assert str(tmp_path / "nowhere") in message and "\n" not in message
    if name == "FashionMNIST":
        assert str(data.DEBIAN_FASHION_MNIST) in message and "apt-get install dataset-fashion-mnist" in message


def test_download_attempt_when_allowed(tmp_path, monkeypatch):
    import torchvision
    monkeypatch.delenv(data.NO_DOWNLOAD_ENV)

    class FakeMNIST:  # a "download" that writes the files where torchvision would
        def __init__(self, root, download=False, **kwargs):
            assert download
            write_idx_folder(Path(root) / "MNIST" / "raw", gz=True)

    monkeypatch.setattr(torchvision.datasets, "MNIST", FakeMNIST)
    assert get_dataset("MNIST", str(tmp_path)).images_train.shape == (20, 1, 28, 28)


def test_failed_download_is_reported(tmp_path, monkeypatch):
    import torchvision
    monkeypatch.delenv(data.NO_DOWNLOAD_ENV)

    def offline(*args, **kwargs):
        raise RuntimeError("Error downloading x:\nTried somewhere, got: no network")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    with pytest.raises(DatasetNotFoundError, match="download failed: RuntimeError: Error downloading x:") as e:
        get_dataset("CIFAR10", str(tmp_path))
    assert "\n" not in str(e.value)


def test_fashion_mnist_debian_fallback(tmp_path, monkeypatch):
    debian = tmp_path / "debian"
    write_idx_folder(debian, gz=True, n_train=30)
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", debian)
    assert get_dataset("FashionMNIST", str(tmp_path / "empty")).images_train.shape == (30, 1, 28, 28)


def test_corrupt_idx_file(tmp_path):
    write_idx_folder(tmp_path / "MNIST" / "raw", gz=False)
    (tmp_path / "MNIST" / "raw" / "train-labels-idx1-ubyte").write_bytes(b"not an idx file")
    with pytest.raises(UserError, match="train-labels-idx1-ubyte"):
        get_dataset("MNIST", str(tmp_path))


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(UnknownChoiceError) as e:
        get_dataset("CIFAR11")
    assert all(name in str(e.value) for name in DATASETS)


@pytest.mark.parametrize("subset", [None, "imagecat"])
def test_imagenet_needs_a_known_subset(subset):
    with pytest.raises(UnknownChoiceError, match="imagenette, imagewoof"):
        get_dataset("ImageNet", subset=subset)


# ------------------------------------------------------------------------------------------------------
# The real Fashion-MNIST of the Debian package

def test_real_debian_fashion_mnist(tmp_path, monkeypatch):
    if not REAL_DEBIAN_FASHION_MNIST.is_dir():
        pytest.skip(f"{REAL_DEBIAN_FASHION_MNIST} missing (apt-get install dataset-fashion-mnist)")
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", REAL_DEBIAN_FASHION_MNIST)
    start = time.perf_counter()
    d = get_dataset("FashionMNIST", str(tmp_path))
    seconds = time.perf_counter() - start
    assert d.images_train.shape == (60000, 1, 28, 28) and d.images_test.shape == (10000, 1, 28, 28)
    assert d.num_classes == 10 and [len(i) for i in d.indices_class] == [6000] * 10
    assert abs(d.images_train.mean().item()) < 0.01 and abs(d.images_train.std().item() - 1) < 0.01
    assert seconds < 10, f"loading Fashion-MNIST took {seconds:.1f} s"


def test_zca_with_the_real_augment(tmp_path):
    """--zca whitens the [0, 1] pixels (not the mean/std-normalised images) with eps 0.1, fitted on the training
    images only: with C the covariance of the training pixels, x -> (x - train mean) (C + eps I)^(-1/2), so the
    whitened training images have the covariance C (C + eps I)^(-1) -- the identity on directions of variance much
    above eps, shrunk by s / (s + eps) on a direction of variance s -- and the fitted transform inverts back to the
    pixels."""
    pytest.importorskip("kornia")
    pytest.importorskip("common.augment")
    make_cifar10(tmp_path)
    d = get_dataset("CIFAR10", str(tmp_path), res=8, zca=True)  # 8x8: the 3072-dim eigensolve of 32x32 takes ~1 min
    assert d.zca is not None and d.images_train.shape == (20, 3, 8, 8) and torch.isfinite(d.images_train).all()
    assert d.mean == [0.0] * 3 and d.std == [1.0] * 3

    plain = get_dataset("CIFAR10", str(tmp_path), res=8)  # the same images, normalised: back to [0, 1] pixels
    mean, std = torch.tensor(plain.mean).view(3, 1, 1), torch.tensor(plain.std).view(3, 1, 1)
    pixels = {split: (x * std + mean).flatten(1).double()
              for split, x in (("train", plain.images_train), ("test", plain.images_test))}
    eps = 0.1  # the original's kornia ZCAWhitening(eps=0.1)
    cov = torch.cov(pixels["train"].T)  # unbiased, as kornia's
    s, u = torch.linalg.eigh(cov)
    whiten = u @ torch.diag((s.clamp_min(0) + eps).rsqrt()) @ u.T
    centre = pixels["train"].mean(0)
    for split, x in (("train", d.images_train), ("test", d.images_test)):
        torch.testing.assert_close(x.flatten(1).double(), (pixels[split] - centre) @ whiten, rtol=1e-3, atol=1e-4)
        restored = d.zca.inverse_transform(x.flatten(1)).double()
        torch.testing.assert_close(restored, pixels[split], rtol=1e-3, atol=1e-4)

    white_cov = torch.cov(d.images_train.flatten(1).double().T)
    torch.testing.assert_close(white_cov, cov @ torch.linalg.inv(cov + eps * torch.eye(len(cov), dtype=cov.dtype)),
                               rtol=1e-3, atol=1e-4)
    # its spectrum: s / (s + eps) for each variance s of the pixels, below 1; the 20 training images are 16 distinct
    # ones (the first image of each of the 5 batches is the same constant image), which span 15 directions
    spectrum = torch.linalg.eigvalsh(white_cov)
    torch.testing.assert_close(spectrum, s.clamp_min(0) / (s.clamp_min(0) + eps), rtol=0, atol=1e-4)
    assert spectrum.max() < 1 and (spectrum > 1e-3).sum() == 15


def test_hold_out_takes_n_per_class_from_the_train_set_and_keeps_the_rest(cifar):
    rest, (x, y) = cifar.hold_out(1, seed=3)
    assert torch.equal(torch.bincount(y, minlength=100), torch.ones(100, dtype=torch.long))
    assert len(rest.labels_train) + len(y) == len(cifar.labels_train)
    flat = lambda t: {tuple(v.tolist()) for v in t.flatten(1)[:, :8]}
    assert flat(x).isdisjoint(flat(rest.images_train)) and flat(x) | flat(rest.images_train) == \
        flat(cifar.images_train)
    again, (x2, _) = cifar.hold_out(1, seed=3)
    assert torch.equal(x, x2) and torch.equal(again.images_train, rest.images_train)
    assert sum(len(i) for i in rest.indices_class) == len(rest.labels_train)
    with pytest.raises(UserError, match="--n_val 2 would hold out every train instance of a class"):
        cifar.hold_out(2, seed=0)
