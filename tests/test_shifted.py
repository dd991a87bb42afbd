"""Shifted test sets (CIFAR-10-C, CIFAR-10.1 and ImageNet-C layouts, written here with tiny files) and eval.py
--test_set."""
from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch

from common.data import IMAGENET_SUBSETS, get_dataset
from common.data.shifted import load_shifted
from common.errors import DatasetNotFoundError, UnknownChoiceError, UserError
from common.eval_main import main as eval_main
from test_data import make_cifar10, make_imagenet

EVAL = ["--random_real", "--dataset", "CIFAR10", "--model", "ConvNetW32", "--num_eval", "1", "--epoch_eval_train",
        "2", "--no-progress", "--device", "cpu"]


@pytest.fixture
def cifar(tmp_path):
    """A tiny CIFAR-10, its CIFAR-10-C (gaussian_noise: the clean test images at every severity; fog: the same but
    inverted at severity 5) and its CIFAR-10.1 (the clean test images)."""
    make_cifar10(tmp_path)
    with open(tmp_path / "cifar-10-batches-py" / "test_batch", "rb") as f:
        batch = pickle.load(f)
    clean = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    labels = np.asarray(batch[b"labels"], dtype=np.uint8)
    c = tmp_path / "CIFAR-10-C"
    c.mkdir()
    np.save(c / "gaussian_noise.npy", np.concatenate([clean] * 5))
    np.save(c / "fog.npy", np.concatenate([clean] * 4 + [255 - clean]))
    np.save(c / "labels.npy", np.concatenate([labels] * 5))
    v = tmp_path / "CIFAR-10.1"
    v.mkdir()
    np.save(v / "cifar10.1_v6_data.npy", clean)
    np.save(v / "cifar10.1_v6_labels.npy", labels.astype(np.int32))
    return tmp_path


@pytest.mark.parametrize("zca", [False, True])
def test_shifted_images_are_prepared_exactly_as_the_clean_test_set(cifar, zca):
    real = get_dataset("CIFAR10", str(cifar), zca=zca, res=8)  # resized as the clean images (a small ZCA fit)
    sets = load_shifted("CIFAR10-C", real, str(cifar), severity=3, corruptions=["gaussian_noise", "fog"])
    assert list(sets) == ["gaussian_noise", "fog"]
    for x, y in sets.values():
        assert torch.equal(x, real.images_test) and torch.equal(y, real.labels_test)
    x5, _ = load_shifted("CIFAR10-C", real, str(cifar), severity=5, corruptions=["fog"])["fog"]
    assert not torch.allclose(x5, real.images_test)
    x, y = load_shifted("CIFAR10.1", real, str(cifar))["CIFAR10.1"]
    assert torch.equal(x, real.images_test) and torch.equal(y, real.labels_test)


def test_eval_tests_the_same_networks_on_every_corruption(cifar, tmp_path, capsys):
    base = EVAL + ["--data_path", str(cifar)]
    plain = eval_main(base)
    out = tmp_path / "r.json"
    res = eval_main(base + ["--test_set", "CIFAR10-C", "--severity", "3", "--corruptions", "gaussian_noise,fog",
                            "--json_out", str(out), "--plot", str(tmp_path / "r.png")])["ConvNetW32"]
    assert res["clean"] == plain["ConvNetW32"]  # the same networks as a plain evaluation
    assert res["gaussian_noise"] == res["fog"] == res["mean corruption"] == res["clean"]  # severity 3 is clean
    saved = json.loads(out.read_text())
    assert saved["severity"] == 3 and set(saved["accuracy"]["ConvNetW32"]) == {"clean", "gaussian_noise", "fog",
                                                                             "mean corruption"}
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| mean corruption |" in capsys.readouterr().out
    five = eval_main(base + ["--test_set", "CIFAR10-C", "--corruptions", "gaussian_noise,fog"])["ConvNetW32"]
    assert five["gaussian_noise"] == res["clean"]
    assert five["mean corruption"][0] == pytest.approx((five["gaussian_noise"][0] + five["fog"][0]) / 2)


def test_bad_shifted_sets_are_one_line_errors(cifar, tmp_path):
    real = get_dataset("CIFAR10", str(cifar))
    with pytest.raises(UnknownChoiceError, match="speckle"):
        load_shifted("CIFAR10-C", real, str(cifar), corruptions=["speckles"])
    with pytest.raises(DatasetNotFoundError, match="corruption snow not found"):
        load_shifted("CIFAR10-C", real, str(cifar), corruptions=["snow"])
    with pytest.raises(UserError, match="--severity must be one of"):
        load_shifted("CIFAR10-C", real, str(cifar), severity=6)
    with pytest.raises(DatasetNotFoundError, match="CIFAR10-C not found: looked for .*labels.npy"):
        load_shifted("CIFAR10-C", real, str(tmp_path / "nowhere"))
    with pytest.raises(UserError, match="FashionMNIST-C holds FashionMNIST's classes; this set was distilled on "
                                        "CIFAR10"):
        load_shifted("FashionMNIST-C", real, str(cifar))
    np.save(cifar / "CIFAR-10-C" / "fog.npy", np.zeros((50, 32, 32, 3), dtype=np.float32))
    with pytest.raises(UserError, match="expected uint8 images"):
        load_shifted("CIFAR10-C", real, str(cifar), corruptions=["fog"])


def test_imagenet_c_reads_the_subsets_classes_prepared_as_the_clean_val_images(tmp_path):
    """ImageNet-C's folders hold, here, copies of the clean val images (and, at severity 3, other images):
    prepared they equal the clean test set; classes outside the subset are not read."""
    make_imagenet("imagenette", res=16)(tmp_path)
    real = get_dataset("ImageNet", str(tmp_path), subset="imagenette", res=16)
    for wnid in IMAGENET_SUBSETS["imagenette"]:
        for sev in (3, 5):
            target = tmp_path / "ImageNet-C" / "fog" / str(sev) / wnid
            target.mkdir(parents=True)
            src = tmp_path / "val" / wnid / f"val_{wnid}.JPEG"
            data = src.read_bytes() if sev == 5 else (tmp_path / "train" / wnid / f"{wnid}_1.JPEG").read_bytes()
            (target / src.name).write_bytes(data)
    (tmp_path / "ImageNet-C" / "fog" / "5" / "n99999999").mkdir()  # another class: ignored
    x, y = load_shifted("ImageNet-C", real, str(tmp_path), 5, ["fog"], subset="imagenette")["fog"]
    assert torch.equal(x, real.images_test) and torch.equal(y, real.labels_test)
    x3, _ = load_shifted("ImageNet-C", real, str(tmp_path), 3, ["fog"], subset="imagenette")["fog"]
    assert not torch.equal(x3, real.images_test)
    with pytest.raises(DatasetNotFoundError, match="no images of corruption snow, severity 5"):
        load_shifted("ImageNet-C", real, str(tmp_path), 5, ["snow"], subset="imagenette")
