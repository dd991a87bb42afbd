"""Fidelity to the original protocols: ZCA on [0, 1] pixels, the evaluation schedule, ConvNetLN, optimiser state
on the parameters' device after a resume, FieldAdam's bias corrections, DDiF decoding in float64, and refusing
expert files, warm-start caches and synthetic sets made with this code's earlier ZCA."""
import dataclasses
import gzip
import io
import json
import sys
import types

import numpy as np
import pytest
import torch
from torch import nn

from common import data as data_mod
from common import evaluate as evaluate_mod
from common.data import (DEBIAN_FASHION_MNIST, TRANSFORM_NORMALISE, TRANSFORM_ZCA, RealData, data_transform,
                         get_dataset)
from common.distill import initialise
from common.errors import UserError
from common.evaluate import EvalConfig, lr_decay_epoch, train_network
from common.experts import check_expert_folder, save_expert_file
from common.networks import get_network
from common.optim import FieldAdam
from common.domains import to_display
from common.runlog import RunRecord
from common.synsets import DDiF, FreD, Pixel
from common.tm import step_size_optimizer

needs_debian_fmnist = pytest.mark.skipif(not DEBIAN_FASHION_MNIST.is_dir(),
                                         reason="apt-get install dataset-fashion-mnist")


def _idx_pixels(name: str) -> np.ndarray:
    """An IDX image file of the Debian package read with numpy alone, as float64 in [0, 1], (N, 784)."""
    with gzip.open(DEBIAN_FASHION_MNIST / f"{name}-images-idx3-ubyte.gz", "rb") as f:
        raw = f.read()
    n = int.from_bytes(raw[4:8], "big")
    return np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(n, 784).astype(np.float64) / 255


@pytest.fixture(scope="module")
def fmnist_zca():
    pytest.importorskip("kornia")
    return get_dataset("FashionMNIST", "/nonexistent", zca=True)


# ---- ZCA ----------------------------------------------------------------------------------------------------

@needs_debian_fmnist
def test_zca_whitens_plain_pixels_like_an_independent_numpy_whitening(fmnist_zca):
    x_train, x_test = _idx_pixels("train"), _idx_pixels("t10k")
    mean = x_train.mean(0)
    centred = x_train - mean
    cov = centred.T @ centred / (len(x_train) - 1)  # kornia's default: unbiased
    lam, vec = np.linalg.eigh(cov)
    w = vec @ np.diag(1 / np.sqrt(lam + 0.1)) @ vec.T
    for ours, ref in ((fmnist_zca.images_train, centred @ w), (fmnist_zca.images_test, (x_test - mean) @ w)):
        ours = ours.reshape(len(ref), -1).double().numpy()
        assert np.linalg.norm(ours - ref) / np.linalg.norm(ref) < 1e-3
    assert fmnist_zca.mean == [0.0] and fmnist_zca.std == [1.0] and fmnist_zca.transform == TRANSFORM_ZCA
    # whitening the mean/std-normalised images (this code before) is far from it
    norm = (x_train - 0.2861) / 0.3530
    nc = norm - norm.mean(0)
    lam_n, vec_n = np.linalg.eigh(nc.T @ nc / (len(norm) - 1))
    old = nc[:2000] @ (vec_n @ np.diag(1 / np.sqrt(lam_n + 0.1)) @ vec_n.T)
    ref = centred[:2000] @ w
    assert np.linalg.norm(old - ref) / np.linalg.norm(ref) > 0.5


@needs_debian_fmnist
def test_zca_grids_show_the_original_pixels(fmnist_zca):
    shown = to_display(fmnist_zca.images_test[:16], fmnist_zca.mean, fmnist_zca.std, fmnist_zca.zca)
    pixels = torch.from_numpy(_idx_pixels("t10k")[:16]).float().view(16, 1, 28, 28)
    assert (shown - pixels).abs().max() < 1e-3


def _expert_header(zca: bool, transform) -> dict:
    header = dict(dataset="FashionMNIST", subset=None, res=28, model="ConvNetW32", channel=1, num_classes=10,
                  im_size=[28, 28], num_params=4, param_shapes=[["w", [4]]], zca=zca, train_epochs=2,
                  lr_teacher=0.01, mom=0.0, l2=0.0, batch_train=256, dsa=None, n_train_per_class=None, seed=0)
    if transform is not None:
        header["transform"] = transform
    return header


def _args(tmp_path, zca: bool):
    return types.SimpleNamespace(dataset="FashionMNIST", subset=None, res=28, model="ConvNetW32", zca=zca,
                                 buffer_path=str(tmp_path), data_path="data")


def test_experts_built_with_the_old_zca_are_refused(tmp_path):
    folder = tmp_path / "FashionMNIST" / "ConvNetW32"
    save_expert_file(str(folder / "replay_buffer_0.pt"), _expert_header(True, None), [torch.zeros(3, 4)], [0], [0.5])
    with pytest.raises(UserError) as e:
        check_expert_folder(str(folder), _args(tmp_path, zca=True))
    msg = str(e.value)
    assert "ZCA-whitened mean/std-normalised images" in msg and "ZCA-whitened [0, 1] pixels" in msg
    assert "run_buffer.sh" in msg and "--zca" in msg
    # the same folder, rewritten by this code, is accepted; experts without ZCA written before the tag are too
    save_expert_file(str(folder / "replay_buffer_0.pt"), _expert_header(True, TRANSFORM_ZCA), [torch.zeros(3, 4)],
                     [0], [0.5])
    assert len(check_expert_folder(str(folder), _args(tmp_path, zca=True))) == 1
    plain = tmp_path / "FashionMNIST_NO_ZCA" / "ConvNetW32"
    save_expert_file(str(plain / "replay_buffer_0.pt"), _expert_header(False, None), [torch.zeros(3, 4)], [0], [0.5])
    assert len(check_expert_folder(str(plain), _args(tmp_path, zca=False))) == 1


def test_buffer_refuses_to_continue_a_folder_of_old_zca_experts(tmp_path):
    from TM.buffer import existing_experts
    save_expert_file(str(tmp_path / "replay_buffer_0.pt"), _expert_header(True, None), [torch.zeros(3, 4)], [0],
                     [0.5])
    header = dict(_expert_header(True, TRANSFORM_ZCA))
    with pytest.raises(UserError, match="transform 'zca_normalised_eps0.1'"):
        existing_experts(str(tmp_path), header)
    header = dict(_expert_header(False, TRANSFORM_NORMALISE))
    save_expert_file(str(tmp_path / "replay_buffer_0.pt"), _expert_header(False, None), [torch.zeros(3, 4)], [0],
                     [0.5])
    assert existing_experts(str(tmp_path), header) == (1, 1)


def _fake_real(zca: bool) -> RealData:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(12, 1, 6, 6, generator=g)
    y = torch.arange(3).repeat_interleave(4)
    return RealData(name="FashionMNIST", channel=1, im_size=(6, 6), num_classes=3, class_names=["a", "b", "c"],
                    mean=[0.0], std=[1.0], images_train=x, labels_train=y, images_test=x, labels_test=y,
                    indices_class=[torch.nonzero(y == c).squeeze(1) for c in range(3)],
                    zca="fitted" if zca else None)


def test_warm_start_cache_made_with_the_old_zca_is_refitted(tmp_path):
    from common.paths import init_cache_path
    from common.atomic import torch_save
    args = types.SimpleNamespace(cache=str(tmp_path / "cache"), dataset="FashionMNIST", subset=None, res=6,
                                 zca=True, seed=0, n_train_per_class=None, progress=False, ipc=1)
    real = _fake_real(zca=True)

    def fresh():
        return DDiF(3, 1, (6, 6), ipc=1, dipc=1, layer_size=3, epochs_init=5, lr_nf_init=1e-2)

    legacy = fresh()
    with torch.no_grad():
        for p in legacy.parameters():
            p.fill_(0.25)
    from common.utils import derive_seed
    targets = legacy.init_targets(real, torch.Generator().manual_seed(derive_seed(0, "init")))
    cache = init_cache_path(args, legacy.config(), targets)
    torch_save({"synset": legacy.payload(), "init_images": real.images_train[:3]}, cache)  # no transform: old ZCA
    record = RunRecord(str(tmp_path / "run"), quiet=True)
    s = fresh()
    initialise(args, s, real, record)
    log = (tmp_path / "run" / "log.txt").read_text()
    assert "ignoring unusable warm-start cache" in log and "ZCA-whitened mean/std-normalised images" in log
    assert not torch.equal(s.weights[1], legacy.weights[1])  # fitted again, not loaded
    # the cache it wrote records the transform and is used by the next run
    again = fresh()
    initialise(args, again, real, record)
    assert "warm start loaded from cache" in (tmp_path / "run" / "log.txt").read_text()
    assert all(torch.equal(a, b) for a, b in zip(again.parameters(), s.parameters()))
    # the same name, other data (a dataset rebuilt in place): fitted again, to the new instances
    moved = dataclasses.replace(real, images_train=real.images_train.flip(-1))
    third = fresh()
    initialise(args, third, moved, record)
    log = (tmp_path / "run" / "log.txt").read_text()
    assert log.count("initialised ddif from real data") == 2 and log.count("warm start fit: PSNR") == 3
    assert not torch.equal(third.weights[0], s.weights[0]) and len(list((tmp_path / "cache").glob("*.pt"))) == 2


def test_eval_refuses_a_set_distilled_with_the_old_zca(tmp_path):
    from common.eval_main import main
    s = Pixel(10, 1, (28, 28), 1)
    path = tmp_path / "synset_best.pt"
    torch.save(dict(s.payload(), meta=dict(dataset="FashionMNIST", zca=True, res=28)), path)
    with pytest.raises(UserError, match="ZCA-whitened mean/std-normalised images"):
        main(["--ckpt", str(path), "--no_eval", "--device", "cpu"])


def test_transform_tags():
    assert data_transform(False) == TRANSFORM_NORMALISE and data_transform(True) == TRANSFORM_ZCA
    assert _fake_real(True).transform == TRANSFORM_ZCA and _fake_real(False).transform == TRANSFORM_NORMALISE


# ---- evaluation schedule ------------------------------------------------------------------------------------

@pytest.mark.parametrize("epochs", [1, 4, 7])
def test_evaluation_runs_e_plus_1_epochs_and_decays_with_a_new_sgd_after_e_half_plus_1(monkeypatch, epochs):
    seen = []
    real_epoch = evaluate_mod.train_epoch

    def recording_epoch(net, optimizer, *a, **k):
        fresh = not any(optimizer.state.get(p) for p in net.parameters())
        seen.append((id(optimizer), optimizer.param_groups[0]["lr"], fresh))
        return real_epoch(net, optimizer, *a, **k)

    monkeypatch.setattr(evaluate_mod, "train_epoch", recording_epoch)
    net = get_network("ConvNetW32", 1, 3, (8, 8))
    x, y = torch.randn(6, 1, 8, 8), torch.arange(3).repeat(2)
    train_network(net, x, y, EvalConfig(epochs=epochs, num_eval=1, device=torch.device("cpu"), lr=0.01), seed=0)
    assert len(seen) == epochs + 1  # epochs 0..E
    decay = lr_decay_epoch(epochs)
    assert decay == epochs // 2 + 1
    for e, (opt_id, lr, fresh) in enumerate(seen):
        assert lr == pytest.approx(0.01 if e <= decay else 0.001), (e, lr)
        assert opt_id == seen[0][0] if e <= decay else opt_id != seen[0][0]
        assert fresh == (e == 0 or e == decay + 1), e  # momentum reset with the new optimiser


# ---- networks -----------------------------------------------------------------------------------------------

def test_convnet_ln_is_layernorm_over_c_h_w_with_elementwise_affine():
    net = get_network("ConvNetLN", 1, 10, (28, 28))
    norms = [m for m in net.modules() if isinstance(m, nn.LayerNorm)]
    assert [tuple(m.normalized_shape) for m in norms] == [(128, 32, 32), (128, 16, 16), (128, 8, 8)]
    assert all(m.elementwise_affine and m.weight.shape == m.normalized_shape for m in norms)
    with torch.no_grad():
        norms[0].weight.normal_()
        norms[0].bias.normal_()
    h = torch.randn(2, 128, 32, 32)
    ref = (h - h.mean(dim=(1, 2, 3), keepdim=True)) / torch.sqrt(h.var(dim=(1, 2, 3), unbiased=False,
                                                                       keepdim=True) + 1e-5)
    torch.testing.assert_close(norms[0](h), ref * norms[0].weight + norms[0].bias, rtol=1e-4, atol=1e-4)
    assert net(torch.randn(2, 1, 28, 28)).shape == (2, 10)


# ---- optimiser state after a resume ---------------------------------------------------------------------------

def _round_trip(state: dict) -> dict:
    """What a checkpoint gives back: saved, then loaded on the CPU with weights_only."""
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, map_location="cpu", weights_only=True)


@pytest.mark.parametrize("make", [
    lambda: DDiF(2, 1, (6, 6), ipc=2, dipc=2, layer_size=3),
    lambda: FreD(2, 1, (6, 6), ipc=1, msz_per_channel=4),
    lambda: Pixel(2, 1, (6, 6), 1),
], ids=["ddif", "fred", "pixel"])
@pytest.mark.parametrize("target", ["meta", "float64", "device"])
def test_optimiser_state_follows_the_parameters_after_load_state_dict(make, target, device):
    s = make()
    opt = s.make_optimizer()
    x, _ = s.get()
    x.square().sum().backward()
    opt.step()
    state = _round_trip(opt.state_dict())
    other = make()
    other = {"meta": lambda: other.to("meta"), "float64": other.double, "device": lambda: other.to(device)}[target]()
    opt2 = other.make_optimizer()
    opt2.load_state_dict(state)
    if target == "device":  # the resumed set takes its next step where it lives
        x, _ = other.get()
        x.square().sum().backward()
        opt2.step()
    tensors = [(p, k, v) for p in other.trainable() for k, v in opt2.state[p].items() if torch.is_tensor(v)]
    assert tensors
    for p, k, v in tensors:
        assert v.device == p.device, (k, v.device)
        if v.is_floating_point():
            assert v.dtype == p.dtype, (k, v.dtype)


def test_step_size_optimiser_state_follows_the_step_size():
    syn_lr = torch.tensor(0.01, requires_grad=True)
    opt = step_size_optimizer(syn_lr, 1e-5)
    (syn_lr * 3).backward()
    opt.step()
    moved = torch.tensor(0.01, device="meta", requires_grad=True)
    opt2 = step_size_optimizer(moved, 1e-5)
    opt2.load_state_dict(_round_trip(opt.state_dict()))
    assert all(v.device.type == "meta" for v in opt2.state[moved].values() if torch.is_tensor(v))


def test_field_adam_equals_torch_adam_in_float64():
    torch.manual_seed(3)
    n = 4
    stacked = [torch.randn(n, 3, 2, dtype=torch.float64, requires_grad=True)]
    separate = [stacked[0][i].detach().clone().requires_grad_() for i in range(n)]
    opt_b = FieldAdam(stacked, lr=0.01)
    opt_s = torch.optim.Adam(separate, lr=0.01)
    for _ in range(30):
        target = torch.randn(n, 3, 2, dtype=torch.float64)
        opt_b.zero_grad()
        opt_s.zero_grad()
        (stacked[0] - target).pow(3).sum().backward()
        sum((p - t).pow(3).sum() for p, t in zip(separate, target)).backward()
        opt_b.step()
        opt_s.step()
    for i in range(n):
        torch.testing.assert_close(stacked[0][i], separate[i], rtol=1e-12, atol=1e-14)


# ---- DDiF in float64 --------------------------------------------------------------------------------------

def test_float64_ddif_decodes_at_another_resolution():
    s = DDiF(2, 1, (8, 8), ipc=1, layer_size=4)
    ref = s.get(res=15)[0].detach()
    s = s.double()
    out = s.get(res=15)[0]
    assert out.dtype == torch.float64 and out.shape == (s.n_total, 1, 15, 15)
    torch.testing.assert_close(out.float(), ref, rtol=1e-4, atol=1e-5)
    out.square().sum().backward()
    assert s.weights[0].grad.dtype == torch.float64


# ---- the GPU suite and the fitting benchmark, checked on the CPU ----------------------------------------------

def test_gpu_suite_dry_run_prints_the_plan_and_refuses_without_cuda():
    from helpers import cli
    r = cli("bash", "benchmarks/gpu_suite.sh", "--dry-run")
    assert r.returncode == 0, r.stderr
    for step, what in (("tests", "DD_TEST_DEVICE=cuda"), ("bench", "bench_ddif.py --device cuda"),
                       ("3d", "--configs ucf_dipc1 ucf_budget modelnet10_ipc1"), ("tm", "bench_tm_memory.py --device cuda"),
                       ("fit", "bench_fit.py --device cuda"), ("dist", "bench_dist.py --device cuda"),
                       ("dm", "DM/main_DM.py --synset ddif")):
        assert any(line.split()[:1] == [step] and what in line for line in r.stdout.splitlines()), (step, r.stdout)
    r = cli("bash", "benchmarks/gpu_suite.sh", "--only", "tm,fit,dm", "--dry-run")
    assert [line.split()[0] for line in r.stdout.splitlines()[1:]] == ["tm", "fit", "dm"]
    r = cli("bash", "benchmarks/gpu_suite.sh", "--only", "fit,speed", "--dry-run")
    assert r.returncode == 2 and "unknown step 'speed'" in r.stderr
    if not torch.cuda.is_available():
        r = cli("bash", "benchmarks/gpu_suite.sh", "--only", "fit", "--out", "/nonexistent/x.md")
        assert r.returncode == 2 and "sees no CUDA GPU" in r.stderr


@needs_debian_fmnist
def test_fitting_benchmark_runs_small_on_the_cpu(tmp_path):
    from helpers import cli
    out = tmp_path / "fit.json"
    r = cli(sys.executable, "benchmarks/bench_fit.py", "--device", "cpu", "--fields", "6", "--steps", "30",
            "--res", "16", "--json_out", str(out))
    assert r.returncode == 0, r.stderr
    row, = json.loads(out.read_text())
    assert (row["fields"], row["params_per_field"], row["steps"]) == (6, 963, 30)
    assert row["seconds"] > 0 and 0 < row["final_mse"] < 2


def test_field_adam_counts_steps_in_float32_for_half_precision_fields():
    p = torch.zeros(3, 2, dtype=torch.bfloat16, requires_grad=True)
    opt = FieldAdam([p], lr=0.01)
    for _ in range(300):  # bfloat16 itself cannot count past 256
        p.grad = torch.ones_like(p)
        opt.step()
    assert opt.state[p]["step"].dtype == torch.float32 and opt.state[p]["step"].tolist() == [300.0] * 3
    q = torch.zeros(3, 2, dtype=torch.bfloat16, requires_grad=True)
    opt2 = FieldAdam([q], lr=0.01)
    opt2.load_state_dict(_round_trip(opt.state_dict()))
    assert opt2.state[q]["step"].dtype == torch.float32 and opt2.state[q]["exp_avg"].dtype == torch.bfloat16


@needs_debian_fmnist
def test_resume_checkpoint_and_eval_refuse_a_set_made_with_the_old_zca(tmp_path):
    pytest.importorskip("kornia")
    from common.errors import CheckpointError
    from common.eval_main import main as eval_main
    from common.atomic import torch_save
    from common.synsets import load_checkpoint
    from DM.main_DM import main
    from helpers import SMALL_DISTILL
    flags = SMALL_DISTILL + ["--synset", "pixel", "--zca", "--Iteration", "1", "--no-eval_at_start",
                             "--save_path", str(tmp_path / "runs"), "--exp_name", "z"]
    main(flags)
    ckpt = tmp_path / "runs" / "DM" / "FashionMNIST" / "z" / "checkpoint.pt"
    state = load_checkpoint(str(ckpt))
    assert state["transform"] == TRANSFORM_ZCA
    del state["transform"], state["meta"]  # what a checkpoint of this code before the ZCA fix holds
    torch_save(state, str(ckpt))
    with pytest.raises(CheckpointError, match="ZCA-whitened mean/std-normalised images"):
        main(flags[:flags.index("--Iteration")] + ["--Iteration", "2", "--no-eval_at_start", "--save_path",
                                                    str(tmp_path / "runs"), "--exp_name", "z", "--resume"])
    with pytest.raises(UserError, match="ZCA-whitened mean/std-normalised images"):
        eval_main(["--ckpt", str(ckpt), "--no_eval", "--device", "cpu"])


def test_the_warm_start_fit_is_measured_class_by_class_as_over_the_whole_set(tmp_path):
    """log_fit decodes one class at a time; its PSNR (mean and lowest, over the targets' range) is the whole set's."""
    import re
    from common.distill import log_fit
    real = _fake_real(zca=False)
    s = DDiF(3, 1, (6, 6), ipc=2, dipc=2, layer_size=3, epochs_init=5, lr_nf_init=1e-2)
    targets = s.init_from_real(real, torch.Generator().manual_seed(0), progress=False)
    record = RunRecord(str(tmp_path / "run"), quiet=True)
    log_fit(s, targets, real, record)
    found = re.search(r"warm start fit: PSNR (\S+) dB \(lowest (\S+)\) over the 6 instances",
                      (tmp_path / "run" / "log.txt").read_text())
    with torch.no_grad():
        mse = ((s.get()[0] - targets) ** 2).flatten(1).mean(1)
    psnr = 10 * torch.log10((targets.max() - targets.min()) ** 2 / mse)
    assert found and (float(found[1]), float(found[2])) == (round(psnr.mean().item(), 1), round(psnr.min().item(), 1))
    assert psnr.max() - psnr.min() > 0.5  # the instances differ, so a per-class mix-up would show
