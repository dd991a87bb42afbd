"""Video end to end on the offline Moving Fashion-MNIST (built from the real Fashion-MNIST in the UCF101 frames
layout, read by the real loader): DDiF fields over (t, h, w), FreD's 3-D DCT and pixel clips; DM through
Video/main_DM.py, DC and TM through their own entry points; eval.py at other frame counts and sizes; the
shipped scripts; the bad inputs of a run."""
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from common.data import get_dataset
from common.data import moving_fmnist as mfm
from common.errors import UserError
from common.synsets import DDiF, FreD, Pixel
from common.synsets import ddif as ddif_mod
from common.synsets.fred import dctn
from tests.helpers import TEST_DEVICE, cli, needs_fmnist

pytestmark = [needs_fmnist, pytest.mark.e2e]  # end-to-end runs: the slow tier

# a short, narrow video run: 16 frames of 48x48 (ConvNet3D's smallest valid side is 43), ConvNet3DW32
VIDEO_SMALL = ["--dataset", "MovingFashionMNIST", "--model", "ConvNet3DW32", "--res", "48", "--frames", "8",
               "--ipc", "1", "--num_eval", "1", "--epoch_eval_train", "2", "--batch_real", "4", "--no-progress",
               "--device", TEST_DEVICE, "--epochs_init", "30", "--n_test", "40"]

# a small field for 48x48 (no hyper_params row): one per class
DDIF_SMALL = ["--dipc", "1", "--layer_size", "16", "--num_layers", "3", "--dim_in", "3", "--dim_out", "1",
              "--w0_initial", "5", "--w0", "5"]


@pytest.fixture(scope="module")
def mfm_root(tmp_path_factory) -> Path:
    """A small Moving Fashion-MNIST: 6 train and 4 test clips per class."""
    root = tmp_path_factory.mktemp("mfm")
    mfm.build(root, train_per_class=6, test_per_class=4, seed=0, progress=False)
    return root


@pytest.fixture(scope="module")
def clips(mfm_root, tmp_path_factory):
    return get_dataset("MovingFashionMNIST", str(mfm_root), cache_dir=str(tmp_path_factory.mktemp("clips")))


def run_flags(tmp_path, mfm_root):
    return ["--data_path", str(mfm_root), "--save_path", str(tmp_path / "runs"),
            "--init_cache", str(tmp_path / "cache")]


# ---- the offline set through the real loader ---------------------------------------------------------------

def test_moving_fmnist_loads_through_the_frames_loader(clips):
    assert clips.domain == "video" and clips.im_size == (16, 64, 64) and clips.channel == 1
    assert clips.num_classes == 10 and [len(i) for i in clips.indices_class] == [6] * 10
    assert len(clips.images_test) == 40
    x = clips.images_train[:]
    pix = x * clips.std[0] + clips.mean[0]
    assert pix.min() >= -1e-6 and pix.max() <= 1 + 1e-6
    assert (x[:, :, 1:] - x[:, :, :-1]).abs().mean() > 0.01  # the garments move


# ---- synthetic sets on clips ------------------------------------------------------------------------------

def fit_error(real, size_fn, dim_in, steps=300):
    """MSE of a field of ~the same size fitted to real.images_train[0]: a 3-D field over (t, h, w), or a 2-D
    field over (h, w) fitted to the mean frame and repeated over time (a field forced to be constant in time)."""
    clip = real.images_train[0:1]
    if dim_in == 3:
        f = DDiF(1, 1, clip.shape[2:], 1, dipc=1, dim_in=3, num_layers=3, layer_size=24, w0_initial=10, w0=10)
        f.fit(clip, steps, 2e-3, torch.Generator().manual_seed(0), progress=False)
        out = f.get()[0]
    else:
        f = DDiF(1, 1, clip.shape[3:], 1, dipc=1, dim_in=2, num_layers=3, layer_size=24, w0_initial=10, w0=10)
        f.fit(clip.mean(2), steps, 2e-3, torch.Generator().manual_seed(0), progress=False)
        out = f.get()[0].unsqueeze(2).expand_as(clip)
    return (out - clip).square().mean().item(), f.params_per_instance()


def test_3d_field_fits_a_moving_clip_far_better_than_a_field_constant_in_time(clips):
    real = clips
    err3, p3 = fit_error(real, None, 3)
    err2, p2 = fit_error(real, None, 2)
    assert p3 - p2 == 24  # one more input coordinate: the same field otherwise
    assert err3 < 0.5 * err2, (err3, err2)


def test_ddif_on_clips_budget_and_decoding_at_other_frame_counts_and_sizes(clips):
    s = DDiF(10, 1, (16, 64, 64), 1, num_layers=6, layer_size=40, dim_out=1, w0_initial=5, w0=5)
    assert s.params_per_instance() == 8401 and s.n_per_class == 16 * 64 * 64 // 8401 == 7
    s1 = DDiF(10, 1, (16, 64, 64), 1, dipc=1, num_layers=6, layer_size=40, dim_out=1, w0_initial=5, w0=5)
    with torch.no_grad():
        x16, _ = s1.get()
        x32, _ = s1.get(res=(32, 96, 96))
    assert x16.shape == (10, 1, 16, 64, 64) and x32.shape == (10, 1, 32, 96, 96)
    # the grids share their end points: the first and last frames' corners are the same points of the field
    torch.testing.assert_close(x32[:, :, [0, -1]][..., [0, -1], :][..., [0, -1]],
                               x16[:, :, [0, -1]][..., [0, -1], :][..., [0, -1]], atol=1e-5, rtol=0)
    # and a field decoded at 32 frames varies smoothly between the 16 frames it was decoded at
    assert (x32[:, :, 1:] - x32[:, :, :-1]).abs().mean() < (x16[:, :, 1:] - x16[:, :, :-1]).abs().mean()


def test_a_large_field_is_decoded_in_blocks_of_points_with_the_same_values_and_gradients(monkeypatch):
    """One 8,483-parameter field over 16x112x112 points: 8M hidden activations per layer, decoded in blocks of
    frames. Here on 16x24x24 with a small chunk limit so that the test is fast; the blocks are the same code."""
    torch.manual_seed(0)
    size = (16, 24, 24)
    s = DDiF(2, 3, size, 1, dipc=1, num_layers=6, layer_size=40, w0_initial=5, w0=5).double()
    assert s.params_per_instance() == 8483
    target = torch.randn(2, 3, *size, dtype=torch.float64)

    def value_and_grads():
        for p in s.parameters():
            p.grad = None
        out = s.get()[0]
        (out * target).sum().backward()
        return out.detach(), [p.grad.clone() for p in s.trainable()]

    whole, g_whole = value_and_grads()
    assert len(ddif_mod.point_blocks(size, 2, 40, s.chunk_limit())) == 1
    monkeypatch.setattr(ddif_mod, "CHUNK_ELEMENTS", 40 * 24 * 24 * 3)  # 3 frames of one field at a time
    assert s.chunk_fields(math.prod(size)) == 1
    blocks = ddif_mod.point_blocks(size, 1, 40, s.chunk_limit())
    assert blocks == [(a, min(a + 3, 16)) for a in range(0, 16, 3)]
    blocked, g_blocked = value_and_grads()
    torch.testing.assert_close(blocked, whole, rtol=1e-12, atol=1e-12)
    for a, b in zip(g_blocked, g_whole):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    # the warm start of such a field goes block by block too, to the same fields
    targets = torch.randn(2, 3, *size, dtype=torch.float64)
    s.fit(targets, 3, 1e-3, torch.Generator().manual_seed(0), progress=False)
    blocked_fit = [p.detach().clone() for p in s.trainable()]
    monkeypatch.setattr(ddif_mod, "CHUNK_ELEMENTS", 1 << 21)
    s.fit(targets, 3, 1e-3, torch.Generator().manual_seed(0), progress=False)
    for a, b in zip(blocked_fit, s.trainable()):
        torch.testing.assert_close(a, b.detach(), rtol=1e-9, atol=1e-12)
    # the paper's clip size: 4 blocks of 4 frames keep a chunk at 2M activations
    assert ddif_mod.point_blocks((16, 112, 112), 1, 40, 1 << 21) == [(0, 4), (4, 8), (8, 12), (12, 16)]


def test_fred_3d_dct_on_clips(clips):
    x = clips.images_train[:4]
    mats = [FreD(1, 1, (16, 64, 64), 1, msz_per_channel=8).dct_mats[i] for i in range(3)]
    spec = dctn(x, mats)
    torch.testing.assert_close(dctn(spec, mats, inverse=True), x, atol=1e-4, rtol=0)
    torch.testing.assert_close(spec.square().sum(), x.square().sum(), rtol=1e-4, atol=0)  # orthonormal
    f = FreD(10, 1, (16, 64, 64), 1, msz_per_channel=16 * 64 * 64 // 8)
    assert f.n_per_class == 8
    init = f.init_from_real(clips, torch.Generator().manual_seed(0))
    with torch.no_grad():
        dec, labels = f.get()
    assert dec.shape == (80, 1, 16, 64, 64) and labels.tolist() == [c for c in range(10) for _ in range(8)]
    # 1/8 of the coefficients, chosen by the class's variance, keep most of a clip's energy
    rel = ((dec - init).square().sum() / (init - init.mean()).square().sum()).item()
    assert rel < 0.3, rel


def test_pixel_clips(clips):
    p = Pixel(10, 1, (16, 64, 64), 1)
    init = p.init_from_real(clips, torch.Generator().manual_seed(0))
    assert torch.equal(p.get()[0].detach(), init) and init.shape == (10, 1, 16, 64, 64)


# ---- runs ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("synset", ["ddif", "fred", "pixel"])
def test_dm_on_clips_writes_every_run_file(synset, tmp_path, mfm_root):
    from Video.main_DM import main
    flags = VIDEO_SMALL + run_flags(tmp_path, mfm_root) + ["--synset", synset, "--Iteration", "2", "--eval_it", "2"]
    if synset == "ddif":
        flags += DDIF_SMALL
    main(flags)
    run = next((tmp_path / "runs" / "DM").glob("MovingFashionMNIST*/*"))
    for name in ("config.json", "log.txt", "metrics.jsonl", "accuracy.png", "synset_best.pt", "checkpoint.pt",
                 "imgs/init_real.gif", "imgs/init_real_frames.png", "imgs/syn_latest.gif",
                 "imgs/syn_latest_frames.png", "imgs/syn_000002.gif", "imgs/syn_000000_frames.png"):
        assert (run / name).is_file(), name
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["frames"] == 8 and cfg["frame_gap"] == 1 and cfg["dsa"] is False and cfg["model"] == "ConvNet3DW32"
    rows = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [0, 2]
    from PIL import Image
    with Image.open(run / "imgs" / "syn_latest.gif") as gif:
        assert gif.n_frames == 8
        assert gif.size[1] == 10 * (48 + 2) + 2  # one row per class
    with Image.open(run / "imgs" / "syn_latest_frames.png") as strip:
        assert strip.size == (8 * (48 + 2) + 2, 10 * (48 + 2) + 2)  # frames across, classes down


def test_eval_decodes_at_other_frames_and_sizes_exports_gifs_and_shuffles(tmp_path, mfm_root):
    from Video.main_DM import main
    main(VIDEO_SMALL + run_flags(tmp_path, mfm_root) +
         ["--synset", "ddif", *DDIF_SMALL, "--Iteration", "1"])
    ckpt = next((tmp_path / "runs").rglob("synset_best.pt"))
    from common.eval_main import main as eval_main
    common = ["--ckpt", str(ckpt), "--num_eval", "1", "--epoch_eval_train", "1", "--n_test", "20", "--no-progress",
              "--device", TEST_DEVICE, "--clip_cache", str(tmp_path / "clips")]
    res = eval_main(common + ["--frames", "12", "--res", "56", "--export_dir", str(tmp_path / "export")])
    assert set(res) == {"ConvNet3DW32"}
    gifs = sorted((tmp_path / "export").glob("*/*.gif"))
    assert len(gifs) == 10 and gifs[0].parent.name == "000_0_T-shirt-top"
    from PIL import Image
    with Image.open(gifs[0]) as g:
        assert g.n_frames == 12 and g.size == (56, 56)
    res = eval_main(common + ["--shuffle_frames"])
    assert set(res) == {"ConvNet3DW32"}
    # evaluation reads only the test clips: no training-clip cache was written for it
    assert not list((tmp_path / "clips").glob("*_train_*")) and list((tmp_path / "clips").glob("*_test_*"))


def test_shuffle_frames_permutes_each_clip_in_time():
    from common.domains.video import shuffle_frames
    x = torch.arange(3 * 2 * 5, dtype=torch.float32).view(3, 1, 5, 1, 2).expand(3, 2, 5, 4, 2).contiguous()
    y = shuffle_frames(x, 0)
    for i in range(3):
        frames = [tuple(y[i, 0, t, 0].tolist()) for t in range(5)]
        assert sorted(frames) == sorted(tuple(x[i, 0, t, 0].tolist()) for t in range(5))
        assert torch.equal(y[i, 1], y[i, 0])  # every channel the same order
    assert not torch.equal(y, x)


def test_dc_runs_on_clips(tmp_path, mfm_root):
    from DC.main_DC import main
    main(VIDEO_SMALL + run_flags(tmp_path, mfm_root) + ["--synset", "pixel", "--Iteration", "2", "--eval_it", "2",
                                                        "--no-eval_at_start"])
    run = next((tmp_path / "runs" / "DC").glob("MovingFashionMNIST*/*"))
    assert (run / "imgs" / "syn_latest.gif").is_file() and (run / "synset_best.pt").is_file()


def test_tm_runs_on_clips_with_convnet3d_experts(tmp_path, mfm_root):
    from TM.buffer import main as buffer_main
    from TM.main_TM import main as tm_main
    data = ["--dataset", "MovingFashionMNIST", "--model", "ConvNet3DW32", "--res", "48", "--frames", "8",
            "--data_path", str(mfm_root), "--device", TEST_DEVICE, "--no-progress"]
    buffer_main(data + ["--buffer_path", str(tmp_path / "buffers"), "--num_experts", "1", "--train_epochs", "3",
                        "--clip_cache", str(tmp_path / "cache" / "clips"), "--n_test", "20"])
    tm_main(VIDEO_SMALL + run_flags(tmp_path, mfm_root) +
            ["--synset", "ddif", *DDIF_SMALL, "--Iteration", "2",
             "--eval_it", "2", "--no-eval_at_start", "--buffer_path", str(tmp_path / "buffers"), "--syn_steps", "3",
             "--expert_epochs", "1", "--max_start_epoch", "2"])
    run = next((tmp_path / "runs" / "TM").glob("MovingFashionMNIST*/*"))
    rows = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["iteration"] == 2 and math.isfinite(rows[-1]["syn_lr"])


@pytest.mark.parametrize("script", ["run_DDiF.sh", "run_FreD.sh", "run_pixel.sh"])
def test_video_scripts_run_with_small_overrides(script, tmp_path, mfm_root):
    extra = DDIF_SMALL if script == "run_DDiF.sh" else []
    r = cli("bash", f"Video/scripts/{script}", *VIDEO_SMALL, *run_flags(tmp_path, mfm_root), "--Iteration", "1",
            "--eval_it", "1", "--no-eval_at_start", *extra)
    assert r.returncode == 0, r.stderr
    assert list((tmp_path / "runs" / "DM").glob("MovingFashionMNIST*/*/synset_best.pt"))


def test_a_resolution_too_small_for_convnet3d_is_one_clear_line(tmp_path, mfm_root):
    r = cli(".venv/bin/python" if Path(".venv/bin/python").exists() else "python", "Video/main_DM.py",
            *VIDEO_SMALL, *run_flags(tmp_path, mfm_root), "--synset", "pixel", "--res", "32")
    assert r.returncode != 0
    lines = [l for l in r.stderr.strip().splitlines() if l.strip()]
    assert len(lines) == 1 and "43" in lines[0] and "(8, 32, 32)" in lines[0], r.stderr


def test_video_flags_on_an_image_dataset_are_an_error():
    from common.args import build_parser, resolve_args
    with pytest.raises(UserError, match="--frames"):
        resolve_args(build_parser("x").parse_args(["--dataset", "FashionMNIST", "--frames", "8"]), "DM",
                     log=lambda m: None)


def test_fred_on_clips_keeps_an_eighth_of_the_coefficients_by_default():
    from common.args import build_parser, resolve_args
    a = resolve_args(build_parser("x").parse_args(["--dataset", "MovingFashionMNIST", "--synset", "fred",
                                                   "--frames", "8", "--res", "48"]), "DC", log=lambda m: None)
    assert a.msz_per_channel == 8 * 48 * 48 // 8 and a.dsa is False
    a = resolve_args(build_parser("x").parse_args(["--dataset", "MovingFashionMNIST", "--synset", "fred",
                                                   "--msz_per_channel", "100"]), "TM", log=lambda m: None)
    assert a.msz_per_channel == 100 and a.frames == 16 and a.frame_gap == 1


def test_the_video_demo_runs_every_row(tmp_path, mfm_root):
    from Video.demo import main
    main(["--protocol", "smoke", "--data_path", str(mfm_root), "--out", str(tmp_path / "demo"), "--device",
          TEST_DEVICE])
    rows = json.loads((tmp_path / "demo" / "results.json").read_text())
    assert [r["method"] for r in rows] == ["ddif + DM", "ddif + DM, frames shuffled", "fred + DM", "pixel + DM",
                                           "whole training set (60 clips, 1 epoch)", "random real"]
    assert rows[4]["per_class"] == 6 and rows[4]["numbers"] == 60 * 8 * 48 * 48  # the fixture's 6 clips per class
    table = (tmp_path / "demo" / "results.md").read_text()
    assert "| ddif + DM, frames shuffled |" in table and "Model selection: none." in table
    assert "Moving Fashion-MNIST (8 frames of 48x48)" in table and "DDiF warm start fit: PSNR" in table
