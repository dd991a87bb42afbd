"""Pinned numbers: two iterations of each objective, run through the entry points as a user runs them, on real
Fashion-MNIST (images, and the offline video and voxel sets built from it), give exactly these synthetic sets,
step sizes, expert trajectories and accuracies. They guard refactorings that must change no number: a change
that moves one must say why and re-pin it in the same commit (``DD_PIN_PRINT=1 pytest tests/test_pinned.py -s``
prints the current values)."""
from __future__ import annotations

import importlib
import json
import os
from pathlib import Path

import pytest
import torch

from common.data import moving_fmnist as mfm
from common.data import voxel_fmnist as vfm
from common.synsets import load_checkpoint
from helpers import needs_fmnist

pytestmark = needs_fmnist

BASE = ["--n_test", "100", "--no-progress", "--device", "cpu", "--num_eval", "1", "--epoch_eval_train", "1",
        "--Iteration", "2", "--eval_it", "2", "--no-eval_at_start", "--batch_real", "8", "--epochs_init", "20"]
IMAGE = ["--dataset", "FashionMNIST", "--model", "ConvNetW32", "--n_train_per_class", "20"]
VIDEO = ["--dataset", "MovingFashionMNIST", "--model", "ConvNet3DW32", "--res", "48", "--frames", "8", "--dipc",
         "1", "--layer_size", "16", "--num_layers", "3", "--dim_in", "3", "--dim_out", "1", "--w0_initial", "5",
         "--w0", "5"]
VOXEL = ["--dataset", "VoxelFashionMNIST", "--model", "Conv3DNetW32", "--res", "16"]
TM = ["--syn_steps", "3", "--expert_epochs", "1", "--max_start_epoch", "1"]
BUFFER = ["--num_experts", "1", "--train_epochs", "2", "--n_train_per_class", "20", "--no-progress", "--device",
          "cpu", "--dataset", "FashionMNIST", "--model", "ConvNetW32", "--no-zca"]

# name: (entry module, synset, flags); the values below: float64 sum, sum of squares and the first four
# numbers of the final set's state (every tensor flattened, in state_dict order), the step size (TM), the
# final accuracy
CASES = {
    "image_ddif_DM": ("DM.main_DM", "ddif", IMAGE),
    "image_fred_DC": ("DC.main_DC", "fred", IMAGE),
    "image_pixel_TM": ("TM.main_TM", "pixel", IMAGE + TM + ["--no-zca"]),
    "video_ddif_DM": ("Video.main_DM", "ddif", VIDEO),
    "voxel_ddif_DC": ("3D_Voxel.main_DC", "ddif", VOXEL),
}
PINNED: dict[str, dict] = {}


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """The offline video and voxel sets (small) and one expert for TM."""
    from TM.buffer import main as buffer_main

    root = tmp_path_factory.mktemp("pinned")
    mfm.build(root, train_per_class=4, test_per_class=2, seed=0, progress=False)
    vfm.build(root, train_per_class=4, test_per_class=2, seed=0, points=1024, progress=False)
    buffer_main(BUFFER + ["--buffer_path", str(root / "buffers")])
    return root


def summary(tensors) -> dict:
    flat = torch.cat([t.detach().reshape(-1).double() for t in tensors])
    return {"sum": flat.sum().item(), "sumsq": flat.square().sum().item(), "head": flat[:4].tolist()}


def run_case(name: str, work: Path, tmp_path: Path) -> dict:
    module, synset, flags = CASES[name]
    main = importlib.import_module(module).main
    main(BASE + flags + ["--synset", synset, "--data_path", str(work), "--save_path", str(tmp_path / "runs"),
                         "--init_cache", str(tmp_path / "cache")]
         + (["--buffer_path", str(work / "buffers")] if module.startswith("TM") else []))
    run = next((tmp_path / "runs").glob("*/*/*/checkpoint.pt")).parent
    state = load_checkpoint(str(run / "checkpoint.pt"))
    out = summary(state["synset"]["state"].values())
    if "syn_lr" in (state.get("objective") or {}):
        out["syn_lr"] = float(state["objective"]["syn_lr"])
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    out["acc"] = rows[-1]["acc_mean"]
    return out


@pytest.mark.parametrize("name", list(CASES))
def test_two_iterations_give_the_pinned_set(name, work, tmp_path):
    got = run_case(name, work, tmp_path)
    if os.environ.get("DD_PIN_PRINT"):
        print(f"\n    {name!r}: {got!r},")
    want = PINNED[name]
    assert got.keys() == want.keys()
    for k in want:
        torch.testing.assert_close(torch.tensor(got[k], dtype=torch.float64),
                                   torch.tensor(want[k], dtype=torch.float64), rtol=1e-6, atol=1e-9, msg=f"{name} {k}")


def test_the_expert_is_pinned(work):
    """The expert trajectory buffer.py wrote (one expert, 2 epochs, 20 images per class)."""
    files = sorted((work / "buffers").rglob("replay_buffer_*.pt"))
    assert len(files) == 1
    payload = load_checkpoint(str(files[0]))
    got = dict(summary(payload["trajectories"]), acc=payload["test_acc"][0])
    if os.environ.get("DD_PIN_PRINT"):
        print(f"\n    expert: {got!r},")
    want = PINNED["expert"]
    for k in want:
        torch.testing.assert_close(torch.tensor(got[k], dtype=torch.float64),
                                   torch.tensor(want[k], dtype=torch.float64), rtol=1e-6, atol=1e-9, msg=f"expert {k}")
