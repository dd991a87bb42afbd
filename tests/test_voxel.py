"""3-D voxels end to end on the offline Voxel Fashion-MNIST (built from the real Fashion-MNIST in the ModelNet
point-cloud layout, read by the real reader and voxeliser): DDiF fields over (d, h, w), FreD's 3-D DCT and pixel
grids; DC and DM through 3D_Voxel/, TM through TM/; eval.py decoding at another resolution and exporting; the
shipped scripts."""
import importlib
import json
import math
from pathlib import Path

import pytest
import torch

from common.data import get_dataset
from common.data import voxel_fmnist as vfm
from common.dc import gradient_distance
from common.networks import get_network
from common.synsets import DDiF, FreD
from tests.helpers import TEST_DEVICE, cli, needs_fmnist

pytestmark = [needs_fmnist, pytest.mark.e2e]  # end-to-end runs: the slow tier

# a short, narrow voxel run: 16^3 grids, Conv3DNetW32, a small field (4 per class at ipc 1 and 16^3)
VOXEL_SMALL = ["--dataset", "VoxelFashionMNIST", "--model", "Conv3DNetW32", "--res", "16", "--ipc", "1",
               "--num_eval", "1", "--epoch_eval_train", "2", "--batch_real", "4", "--no-progress",
               "--device", TEST_DEVICE, "--epochs_init", "30", "--n_test", "20"]


def entry(name: str):
    return importlib.import_module(f"3D_Voxel.{name}")


@pytest.fixture(scope="module")
def vfm_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("vfm")
    vfm.build(root, train_per_class=4, test_per_class=2, seed=0, points=1024, progress=False)
    return root


@pytest.fixture(scope="module")
def shapes(vfm_root, tmp_path_factory):
    return get_dataset("VoxelFashionMNIST", str(vfm_root), res=16, cache_dir=str(tmp_path_factory.mktemp("vox")))


def run_flags(tmp_path, root):
    return ["--data_path", str(root), "--save_path", str(tmp_path / "runs"), "--init_cache", str(tmp_path / "cache")]


def test_voxel_fashion_mnist_through_the_reader_and_voxeliser(shapes):
    assert shapes.domain == "voxel" and shapes.im_size == (16, 16, 16) and shapes.channel == 1
    assert shapes.num_classes == 10 and [len(i) for i in shapes.indices_class] == [4] * 10
    x = shapes.images_train[:]
    assert set(x.unique().tolist()) <= {0.0, 1.0}
    occupied = x.flatten(1).sum(1)
    assert (occupied > 20).all() and (occupied < 0.5 * 16 ** 3).all()  # surfaces, not empty, not full
    # isotropic scaling: the largest extent of every shape spans the grid, the others keep their proportion (the
    # original's per-axis scaling would stretch every axis to the full grid)
    spans = torch.stack([(lambda i: i.max(0).values - i.min(0).values)(v.nonzero()) for v in x[:, 0]])
    assert (spans.max(1).values == 15).all()
    assert (spans.min(1).values < 13).float().mean() > 0.5, spans


def test_ddif_voxel_budget_and_decoding_at_another_resolution():
    s = DDiF(10, 1, (32, 32, 32), 1, num_layers=3, layer_size=20, w0_initial=30, w0=40)
    assert s.params_per_instance() == 941 and s.n_per_class == 34 and s.n_total == 340
    s16 = DDiF(10, 1, (16, 16, 16), 1, num_layers=3, layer_size=20, w0_initial=30, w0=40)
    assert s16.n_per_class == 4
    with torch.no_grad():
        x = s16.get(res=(32, 32, 32))[0]
        y = s16.get()[0]
    assert x.shape == (40, 1, 32, 32, 32)
    torch.testing.assert_close(x[..., 0, 0, 0], y[..., 0, 0, 0], atol=1e-5, rtol=0)  # shared corner
    f = FreD(10, 1, (16, 16, 16), 1, msz_per_channel=512)
    assert f.n_per_class == 8  # FreD's 3D-MNIST setting


def test_dc_distance_on_5_axis_conv3d_gradients(shapes):
    torch.manual_seed(0)
    net = get_network("Conv3DNetW32", 1, 10, (16, 16, 16))
    params = [p for p in net.parameters() if p.dim() >= 2]
    assert any(p.dim() == 5 for p in params)
    x = shapes.images_train[:8]
    y = shapes.labels_train[:8]
    ga = torch.autograd.grad(torch.nn.functional.cross_entropy(net(x[:4]), y[:4]), params)
    gb = torch.autograd.grad(torch.nn.functional.cross_entropy(net(x[4:]), y[4:]), params)
    expect = 0.0
    for a, b in zip(ga, gb):  # per output unit: 1 - cos over everything else (in, d, h, w)
        for u in range(a.shape[0]):
            ra, rb = a[u].flatten(), b[u].flatten()
            expect += 1 - (ra @ rb / (ra.norm() * rb.norm() + 1e-6)).item()
    assert math.isclose(gradient_distance(ga, gb).item(), expect, rel_tol=1e-4)
    assert gradient_distance(ga, ga).item() < 1e-2 * expect  # (eps keeps tiny rows from being exactly 0)


@pytest.mark.parametrize("objective,synset", [("DC", "ddif"), ("DC", "pixel"), ("DM", "fred"), ("DM", "ddif")])
def test_dc_and_dm_on_voxels_write_every_run_file(objective, synset, tmp_path, vfm_root):
    main = entry(f"main_{objective}").main
    flags = VOXEL_SMALL + run_flags(tmp_path, vfm_root) + ["--synset", synset, "--Iteration", "2", "--eval_it", "2"]
    main(flags)
    run = next((tmp_path / "runs" / objective).glob("VoxelFashionMNIST*/*"))
    for name in ("config.json", "log.txt", "metrics.jsonl", "accuracy.png", "synset_best.pt", "checkpoint.pt",
                 "imgs/init_real.png", "imgs/syn_latest.png", "imgs/syn_000002.png", "imgs/syn_000000.png"):
        assert (run / name).is_file(), name
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["dsa"] is False and cfg["model"] == "Conv3DNetW32" and cfg["res"] == 16
    if synset == "ddif":
        assert cfg["budget"]["per_class"] == 4
    if synset == "fred":
        assert cfg["msz_per_channel"] == 16 ** 3 // 8
    rows = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [0, 2]


def test_eval_decodes_a_16_cubed_set_at_32_cubed_and_exports(tmp_path, vfm_root):
    entry("main_DM").main(VOXEL_SMALL + run_flags(tmp_path, vfm_root) + ["--synset", "ddif", "--Iteration", "1"])
    ckpt = next((tmp_path / "runs").rglob("synset_best.pt"))
    from common.eval_main import main as eval_main
    res = eval_main(["--ckpt", str(ckpt), "--num_eval", "1", "--epoch_eval_train", "1", "--no-progress",
                     "--device", TEST_DEVICE, "--res", "32", "--clip_cache", str(tmp_path / "cache" / "clips"),
                     "--export_dir", str(tmp_path / "export")])
    assert set(res) == {"Conv3DNetW32"}
    grids = sorted((tmp_path / "export").glob("*/*.npy"))
    assert len(grids) == 40 and grids[0].parent.name == "000_t_shirt_top"
    import numpy as np
    assert np.load(grids[0]).shape == (32, 32, 32)
    assert len(sorted((tmp_path / "export").glob("*/*.png"))) == 40
    # the test shapes were voxelised at 32^3 for it (and only the test split)
    cached = [p.name for p in (tmp_path / "cache" / "voxels").glob("*.npy")]
    assert any("_test_r32" in n for n in cached) and not any("_train_r32" in n for n in cached)


def test_tm_runs_on_conv3dnet_experts(tmp_path, vfm_root):
    from TM.buffer import main as buffer_main
    from TM.main_TM import main as tm_main
    buffer_main(["--dataset", "VoxelFashionMNIST", "--model", "Conv3DNetW32", "--res", "16", "--data_path",
                 str(vfm_root), "--device", TEST_DEVICE, "--no-progress", "--buffer_path", str(tmp_path / "buffers"),
                 "--num_experts", "1", "--train_epochs", "3", "--clip_cache", str(tmp_path / "cache" / "voxels"),
                 "--n_test", "20"])
    tm_main(VOXEL_SMALL + run_flags(tmp_path, vfm_root) +
            ["--synset", "ddif", "--Iteration", "2", "--eval_it", "2", "--no-eval_at_start", "--buffer_path",
             str(tmp_path / "buffers"), "--syn_steps", "3", "--expert_epochs", "1", "--max_start_epoch", "2"])
    run = next((tmp_path / "runs" / "TM").glob("VoxelFashionMNIST*/*"))
    rows = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["iteration"] == 2 and math.isfinite(rows[-1]["syn_lr"])


SCRIPTS = [f"run_{s}#{o}.sh" for s in ("DDiF", "FreD", "pixel") for o in ("DC", "DM")]


@pytest.mark.parametrize("script", SCRIPTS)
def test_voxel_scripts_run_with_small_overrides(script, tmp_path, vfm_root):
    r = cli("bash", f"3D_Voxel/scripts/{script}", *VOXEL_SMALL, *run_flags(tmp_path, vfm_root), "--Iteration",
            "1", "--eval_it", "1", "--no-eval_at_start")
    assert r.returncode == 0, r.stderr
    objective = script.split("#")[1][:2]
    assert list((tmp_path / "runs" / objective).glob("VoxelFashionMNIST*/*/synset_best.pt"))


def test_solid_is_for_voxels_only():
    from common.args import build_parser, resolve_args
    from common.errors import UserError
    with pytest.raises(UserError, match="--solid"):
        resolve_args(build_parser("x").parse_args(["--dataset", "FashionMNIST", "--solid"]), "DM",
                     log=lambda m: None)


def test_the_voxel_demo_runs_every_row(tmp_path, vfm_root):
    entry("demo").main(["--protocol", "smoke", "--data_path", str(vfm_root), "--out", str(tmp_path / "demo"),
                        "--device", TEST_DEVICE])
    rows = json.loads((tmp_path / "demo" / "results.json").read_text())
    assert [r["method"] for r in rows] == [
        "ddif + DC", "fred + DC", "pixel + DC", "ddif + DM", "fred + DM", "pixel + DM",
        "whole training set (40 shapes, 1 epoch)", "random real", "random real at 32^3",
        "ddif + DM trained at 16^3, decoded at 32^3"]
    assert rows[0]["per_class"] == 4 and rows[1]["per_class"] == 8 and rows[2]["per_class"] == 1
    assert rows[6]["per_class"] == 4 and rows[6]["numbers"] == 40 * 16 ** 3
    table = (tmp_path / "demo" / "results.md").read_text()  # the DDiF warm starts' fit, under the table
    assert "DDiF warm start fit (DC run): PSNR" in table and "occupancy IoU" in table
