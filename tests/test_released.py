"""Sets released by other code bases, evaluated by eval.py: each format is built here by the test's own code
(small tensors, lists and dicts written with torch.save), on the real Fashion-MNIST."""
from __future__ import annotations

import pickle
import re

import pytest
import torch
import torch.nn.functional as F

from common import released
from common.errors import CheckpointError, UserError
from common.eval_main import main as eval_main
from common.synsets import Pixel
from helpers import TEST_DEVICE, needs_fmnist

pytestmark = needs_fmnist
EVAL = ["--dataset", "FashionMNIST", "--model", "ConvNetW32", "--num_eval", "1", "--epoch_eval_train", "2",
        "--n_test", "300", "--no-progress", "--device", TEST_DEVICE]


def _images(n_per_class=2, channel=1, side=28, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(10 * n_per_class, channel, side, side, generator=g)
    return x, torch.arange(10).repeat_interleave(n_per_class)


def _mtt(folder, images, labels, lr=None):
    torch.save(images, folder / "images_best.pt")
    torch.save(labels, folder / "labels_best.pt")
    if lr is not None:
        torch.save(torch.tensor(lr), folder / "lr_best.pt")
    return str(folder / "images_best.pt")


def test_an_imported_pixel_set_evaluates_exactly_as_the_same_native_set(tmp_path, capsys):
    x, y = _images()
    native = Pixel(10, 1, (28, 28), ipc=2)
    with torch.no_grad():
        native.images.copy_(x)
    torch.save(dict(native.payload(), meta={"dataset": "FashionMNIST", "res": 28, "objective": "DM"}),
               tmp_path / "synset_best.pt")
    a = eval_main(["--ckpt", str(tmp_path / "synset_best.pt"), *EVAL])
    b = eval_main(["--ckpt", _mtt(tmp_path, x, y), *EVAL])
    assert a == b and 0 < a["ConvNetW32"][0] <= 1
    out = capsys.readouterr().out
    assert "mtt format, 20 instances of (1, 28, 28), 2 per class, int labels" in out
    torch.save({"data": [[(x + 1, y)], [(x, y)]], "accs_all_exps": {"ConvNet": [0.5]}},
               tmp_path / "res_DM_FashionMNIST_ConvNet_2ipc.pt")
    c = eval_main(["--ckpt", str(tmp_path / "res_DM_FashionMNIST_ConvNet_2ipc.pt"), *EVAL])
    assert c == a  # the last experiment's set
    assert "fred format" in capsys.readouterr().out


def test_datm_soft_labels_are_the_softmax_of_its_logits_and_train_with_its_loss(tmp_path):
    x, y = _images()
    logits = torch.randn(len(x), 10) + 5 * F.one_hot(y, 10)
    found = released.load(_mtt(tmp_path, x, logits.requires_grad_(), lr=0.02))
    assert found.format == "mtt" and found.lr == pytest.approx(0.02)
    assert torch.allclose(found.labels, torch.softmax(logits.detach(), 1)) and not found.labels.requires_grad
    # evaluation's cross-entropy on these probabilities is DATM's SoftCrossEntropy on the logits
    out = torch.randn(len(x), 10)
    datm = (-F.log_softmax(out, 1) * F.softmax(logits.detach(), 1)).sum() / len(x)
    assert torch.allclose(F.cross_entropy(out, found.labels), datm)
    res = eval_main(["--ckpt", str(tmp_path / "images_best.pt"), "--export_dir", str(tmp_path / "out"), *EVAL])
    assert 0 < res["ConvNetW32"][0] <= 1
    assert len(list((tmp_path / "out").rglob("*.png"))) == len(x)  # exported under each soft label's top class


def _siren_state(g, dim_in=2, width=6, layers=2, dim_out=1):
    shapes = [(width, dim_in)] + [(width, width)] * (layers - 1)
    sd = {}
    for i, (o, k) in enumerate(shapes):
        sd[f"net.{i}.linear.weight"] = torch.rand(o, k, generator=g) - 0.5
        sd[f"net.{i}.linear.bias"] = torch.rand(o, generator=g) - 0.5
    sd["last_layer.linear.weight"] = torch.rand(dim_out, width, generator=g) - 0.5
    sd["last_layer.linear.bias"] = torch.rand(dim_out, generator=g) - 0.5
    return sd


def _siren_by_hand(sd, side, w0_initial, w0):
    """The official code's decoding: (row, col) of every pixel scaled to [-1, 1], sin layers, a linear last layer,
    (P, C) -> (H, W, C) -> (C, H, W)."""
    coords = (torch.ones(side, side).nonzero().float() / (side - 1) - 0.5) * 2
    h, i = coords, 0
    while f"net.{i}.linear.weight" in sd:
        h = torch.sin((w0_initial if i == 0 else w0) * (h @ sd[f"net.{i}.linear.weight"].T
                                                         + sd[f"net.{i}.linear.bias"]))
        i += 1
    out = h @ sd["last_layer.linear.weight"].T + sd["last_layer.linear.bias"]
    return out.reshape(side, side, -1).permute(2, 0, 1)


def test_an_official_ddif_set_decodes_as_its_sirens_at_any_resolution(tmp_path, capsys):
    g = torch.Generator().manual_seed(1)
    labels = torch.arange(10).repeat(3)[torch.randperm(30, generator=g)]  # 3 fields per class, shuffled
    fields = [_siren_state(g) for _ in range(30)]
    path = tmp_path / "DDiF_DM_1ipc#synset_best.pt"
    torch.save({"nf": fields, "label": labels, "syn_lr": torch.tensor(0.03)}, path)
    found = released.load(str(path), "ddif", 10.0, 10.0)
    for side in (28, 40):
        synset = found.synset_for((side, side))
        images, got = synset.get()
        for k, c in enumerate(got.tolist()):
            i = [j for j, lab in enumerate(labels.tolist()) if lab == c][k % 3]  # class-by-class, file order kept
            assert torch.allclose(images[k], _siren_by_hand(fields[i], side, 10.0, 10.0), atol=1e-5)
    assert found.lr == pytest.approx(0.03)
    res = eval_main(["--ckpt", str(path), "--w0_initial", "10", "--w0", "10", "--res", "32", *EVAL])
    out = capsys.readouterr().out
    assert "ddif format, 30 neural fields, 3 per class, int labels, saved evaluation lr 0.03" in out
    # the protocol, said before the networks train (--n_test 300 of EVAL)
    assert ("protocol: 1 x ConvNetW32 networks, each trained 3 epochs (batch 256, lr 0.03, DSA) on 30 images on "
            f"{TEST_DEVICE}, tested on 300 test images") in out
    assert out.index("protocol: ") < out.index("ConvNetW32 accuracy")
    assert "ConvNetW32 accuracy" in out and 0 < res["ConvNetW32"][0] <= 1


def test_bad_released_files_are_one_line_errors(tmp_path):
    x, y = _images()
    with pytest.raises(UserError, match=r"holds instances of \(3, 28, 28\); FashionMNIST has 1 channel"):
        eval_main(["--ckpt", _mtt(tmp_path, torch.randn(20, 3, 28, 28), y), *EVAL])
    with pytest.raises(UserError, match=r"holds instances of \(32, 32\).*pass --res"):
        eval_main(["--ckpt", _mtt(tmp_path, torch.randn(20, 1, 32, 32), y), *EVAL])
    with pytest.raises(CheckpointError, match="expected 20 labels"):
        released.load(_mtt(tmp_path, x, y[:5]))
    (tmp_path / "labels_best.pt").unlink()
    with pytest.raises(CheckpointError, match="labels file .* is missing"):
        released.load(str(tmp_path / "images_best.pt"))
    (tmp_path / "cut.pt").write_bytes((tmp_path / "images_best.pt").read_bytes()[:100])
    with pytest.raises(CheckpointError, match="cannot read checkpoint .*cut.pt"):
        released.load(str(tmp_path / "cut.pt"))
    with open(tmp_path / "obj.pt", "wb") as f:
        pickle.dump(UserError("a class instance"), f, protocol=2)
    torch.save({"nf": [UserError("x")], "label": y}, tmp_path / "obj2.pt")
    for name in ("obj.pt", "obj2.pt"):
        with pytest.raises(CheckpointError, match="could run arbitrary code") as err:
            released.load(str(tmp_path / name))
        assert "weights_only" not in str(err.value)  # not PyTorch's advice to turn the safe loader off
    (tmp_path / "notes.md").write_text("# a text file\n")
    with pytest.raises(CheckpointError, match=r"notes.md: not a torch file \(it starts with b'# a '") as err:
        released.load(str(tmp_path / "notes.md"))
    assert "weights_only" not in str(err.value) and "arbitrary code" not in str(err.value)
    torch.save({"nf": [{"net.0.linear.weight": torch.zeros(2, 2)}] * 20, "label": y}, tmp_path / "ddif.pt")
    with pytest.raises(CheckpointError, match="not a SIREN"):
        released.load(str(tmp_path / "ddif.pt"), "auto", 30.0, 10.0)
    with pytest.raises(UserError, match="pass --w0_initial and --w0"):
        eval_main(["--ckpt", str(tmp_path / "ddif.pt"), *EVAL])  # FashionMNIST's rows disagree on w0_initial
    torch.save({"something": 1}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a distilled set this code knows"):
        released.load(str(tmp_path / "other.pt"))
    with pytest.raises(CheckpointError, match="holds the mtt format, not ddif"):
        released.load(_mtt(tmp_path, x, y), "ddif")
    with pytest.raises(UserError, match="pass --dataset"):
        eval_main(["--ckpt", str(tmp_path / "images_best.pt"), "--no-progress"])


def test_bad_original_buffers_are_one_line_errors(tmp_path):
    from common.experts import ParamLayout, original_trajectories
    from common.networks import get_network
    layout = ParamLayout.of(get_network("ConvNetW32", 1, 10, (28, 28)))
    snap = [torch.zeros(s) for s in layout.shapes]
    torch.save([[snap, snap, snap]], tmp_path / "good.pt")
    (traj,) = original_trajectories(str(tmp_path / "good.pt"), layout)
    assert traj.shape == (3, layout.num_params)
    cases = {"dict.pt": {"a": snap}, "short.pt": [[snap, snap[:-1]]], "ragged.pt": [[snap, snap], [snap]]}
    for name, obj in cases.items():
        torch.save(obj, tmp_path / name)
    with pytest.raises(CheckpointError, match="not an original replay buffer"):
        original_trajectories(str(tmp_path / "dict.pt"), layout)
    with pytest.raises(UserError, match=f"snapshot 1 holds {len(snap) - 1} tensors; the network has {len(snap)}"):
        original_trajectories(str(tmp_path / "short.pt"), layout)
    with pytest.raises(CheckpointError, match="one length per file"):
        original_trajectories(str(tmp_path / "ragged.pt"), layout)
    (tmp_path / "cut.pt").write_bytes((tmp_path / "good.pt").read_bytes()[:200])
    with pytest.raises(CheckpointError, match="cannot read buffer file"):
        original_trajectories(str(tmp_path / "cut.pt"), layout)


def test_each_network_has_a_progress_bar_with_its_eta(capsys):
    """--progress: one bar per network over its epochs (tqdm on stderr, with the remaining time)."""
    res = eval_main(["--random_real", "--ipc", "2", *[a for a in EVAL if a != "--no-progress"], "--num_eval", "2",
                     "--progress"])
    err = capsys.readouterr().err
    assert "eval ConvNetW32 network 1/2" in err and "eval ConvNetW32 network 2/2" in err
    assert re.search(r"network 2/2: +\d+%\|.*\| \d/3 \[\d\d:\d\d<", err)  # over 3 epochs: [elapsed<remaining
    assert len(res["ConvNetW32"]) == 2
