"""Fashion-MNIST-C (common/data/fmnist_c.py): the corruptions, the build in the CIFAR-10-C layout, the real reader
on it, and -- end to end -- a network trained on the whole Fashion-MNIST losing accuracy with severity."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from common.data import get_dataset
from common.data import fmnist_c as fc
from common.data.shifted import CORRUPTIONS, load_shifted
from common.errors import UnknownChoiceError, UserError
from common import evaluate
from common.networks import get_network
from tests.helpers import needs_fmnist

pytestmark = needs_fmnist


@pytest.fixture(scope="module")
def garments(sources):
    return sources.x_test[:40]


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_each_corruption_is_deterministic_from_its_seed_and_grows_its_change_with_severity(garments, name):
    levels = [fc.corrupt(garments, name, s, seed=0) for s in (1, 2, 3, 4, 5)]
    for s, out in enumerate(levels, 1):
        assert out.dtype == np.uint8 and out.shape == garments.shape
        assert np.array_equal(out, fc.corrupt(garments, name, s, seed=0))
        assert not np.array_equal(out, garments)
    change = [np.abs(lv.astype(float) - garments).mean() for lv in levels]
    # severity 5 changes the images more than severity 1 does, except elastic_transform, whose published affine
    # jitter is largest at severity 1 (0.08 of the side) and smallest at 5 (0.03)
    if name == "elastic_transform":
        assert change[4] < change[0]
    else:
        assert change[4] > change[0]


def test_random_corruptions_change_with_the_seed_and_formula_ones_match_the_published_formula(garments):
    for name in ("gaussian_noise", "shot_noise", "impulse_noise", "glass_blur", "motion_blur", "snow", "frost",
                 "fog", "elastic_transform"):
        assert not np.array_equal(fc.corrupt(garments, name, 3, seed=0), fc.corrupt(garments, name, 3, seed=1))
    x = garments / 255.0
    for s in (1, 5):
        want = np.uint8(np.clip(x + fc.BRIGHTNESS[s - 1], 0, 1) * 255)
        assert np.array_equal(fc.corrupt(garments, "brightness", s), want)
        mean = x.mean(axis=(1, 2), keepdims=True)
        want = np.uint8(np.clip((x - mean) * fc.CONTRAST[s - 1] + mean, 0, 1) * 255)
        assert np.array_equal(fc.corrupt(garments, "contrast", s), want)
    hit = fc.corrupt(garments, "impulse_noise", 5) != garments  # pixels set to 0 or 255, a fraction of 0.07
    assert 0.03 < hit.mean() < 0.08
    assert set(np.unique(fc.corrupt(garments, "impulse_noise", 5)[hit])) <= {0, 255}


def test_the_build_is_the_cifar10c_layout_and_the_real_reader_reads_it(tmp_path, sources):
    out = fc.build(tmp_path, seed=0, test_per_class=3, progress=False)
    assert out == tmp_path / "FashionMNIST-C"
    assert sorted(p.name for p in out.iterdir()) == sorted([f"{c}.npy" for c in CORRUPTIONS]
                                                           + ["labels.npy", "preview.png"])
    labels = np.load(out / "labels.npy")
    idx = fc.choose_test_images(sources.y_test, 3)
    assert labels.dtype == np.uint8 and np.array_equal(labels, np.tile(sources.y_test[idx], 5))
    fog = np.load(out / "fog.npy")
    assert fog.shape == (5 * 30, 28, 28) and fog.dtype == np.uint8
    assert np.array_equal(fog[2 * 30:3 * 30], fc.corrupt(sources.x_test[idx], "fog", 3, seed=0))
    # one corruption alone is the same file as in the whole build
    alone = fc.build(tmp_path / "alone", seed=0, test_per_class=3, corruptions=["snow"], progress=False)
    assert np.array_equal(np.load(alone / "snow.npy"), np.load(out / "snow.npy"))
    # the reader: severity 3's rows, prepared like the clean test set
    real = get_dataset("FashionMNIST")
    shifted = load_shifted("FashionMNIST-C", real, str(tmp_path), severity=3, corruptions=["fog", "contrast"])
    x, y = shifted["fog"]
    assert torch.equal(y, torch.from_numpy(sources.y_test[idx]).long())
    mean, std = (torch.tensor(v).view(1, -1, 1, 1) for v in (real.mean, real.std))
    want = (torch.from_numpy(fog[60:90]).float().unsqueeze(1) / 255 - mean) / std
    torch.testing.assert_close(x, want)


def test_n_test_keeps_the_same_test_images_under_the_corruption(tmp_path):
    real = get_dataset("FashionMNIST")
    small = real.restrict(n_test=50, seed=3)
    fc.build(tmp_path / "whole", seed=0, corruptions=["contrast"], progress=False)  # the whole test set
    x, y = load_shifted("FashionMNIST-C", small, str(tmp_path / "whole"), 2, ["contrast"])["contrast"]
    full_x, full_y = load_shifted("FashionMNIST-C", real, str(tmp_path / "whole"), 2, ["contrast"])["contrast"]
    assert torch.equal(y, small.labels_test) and torch.equal(x, full_x[small.test_rows])
    assert torch.equal(small.restrict(n_test=10, seed=1).test_rows, small.test_rows[torch.randperm(
        50, generator=torch.Generator().manual_seed(1))[:10].sort().values])  # restricting twice composes
    fc.build(tmp_path / "part", seed=0, test_per_class=3, corruptions=["contrast"], progress=False)
    with pytest.raises(UserError, match="--n_test keeps 50 of FashionMNIST's test images, but FashionMNIST-C is "
                                        "not a copy of its whole test set in the same order \\(30 images"):
        load_shifted("FashionMNIST-C", small, str(tmp_path / "part"), 2, ["contrast"])


def test_bad_builds_are_one_line_errors_and_leave_nothing(tmp_path):
    with pytest.raises(UnknownChoiceError, match="frosting.*gaussian_noise"):
        fc.main(["--out", str(tmp_path), "--corruptions", "frosting", "--no-progress"])
    with pytest.raises(UnknownChoiceError, match="speckle_noise.*valid choices: gaussian_noise"):
        fc.main(["--out", str(tmp_path), "--corruptions", "speckle_noise", "--no-progress"])
    with pytest.raises(UserError, match="--test_per_class 2000 is more than the 1000"):
        fc.main(["--out", str(tmp_path), "--test_per_class", "2000", "--no-progress"])
    assert list(tmp_path.iterdir()) == []
    fc.main(["--out", str(tmp_path), "--test_per_class", "1", "--corruptions", "fog", "--no-progress"])
    with pytest.raises(UserError, match="already exists; pass --overwrite"):
        fc.main(["--out", str(tmp_path), "--test_per_class", "1", "--corruptions", "fog", "--no-progress"])
    fc.main(["--out", str(tmp_path), "--test_per_class", "2", "--corruptions", "fog", "--overwrite", "--no-progress"])
    assert len(np.load(tmp_path / "FashionMNIST-C" / "labels.npy")) == 5 * 20
    assert [p.name for p in tmp_path.iterdir()] == ["FashionMNIST-C"]  # no temporary folder left


@pytest.mark.e2e
def test_a_network_trained_on_all_of_fashion_mnist_loses_accuracy_with_severity(tmp_path):
    fc.build(tmp_path, seed=0, test_per_class=100, progress=False)
    real = get_dataset("FashionMNIST")
    torch.manual_seed(0)
    net = get_network("ConvNetW32", 1, 10, (28, 28))
    one_pass = evaluate.EvalConfig(epochs=0, num_eval=1, device=torch.device("cpu"))  # over the 60,000 images
    evaluate.train_network(net, real.images_train, real.labels_train, one_pass, seed=0)
    idx = torch.from_numpy(fc.choose_test_images(real.labels_test.numpy(), 100))
    clean = 100 * evaluate.test_accuracy(net, real.images_test[idx], real.labels_test[idx])
    acc = {c: [100 * evaluate.test_accuracy(net, *load_shifted("FashionMNIST-C", real, str(tmp_path), s, [c])[c])
               for s in (1, 2, 3, 4, 5)] for c in CORRUPTIONS}
    table = "\n".join(f"{c:18s} " + " ".join(f"{a:5.1f}" for a in accs) for c, accs in acc.items())
    print(f"clean {clean:.1f}\n{table}")
    tol = 2.5  # points, about two standard errors: 1,000 images, the same ones at every severity
    for c, accs in acc.items():
        assert accs[4] <= clean + tol, (c, table)  # no corruption helps
        if c != "elastic_transform":  # its affine jitter shrinks with severity (see the first test)
            assert all(b <= a + tol for a, b in zip(accs, accs[1:])), (c, table)
    first, last = (np.mean([accs[k] for accs in acc.values()]) for k in (0, 4))
    assert clean - last > 5 and first - last > 3, table
