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

# name: (entry module, synset, flags); PINNED: the final set's state (summary()), the step size (TM) and the
# final accuracy
CASES = {
    "image_ddif_DM": ("DM.main_DM", "ddif", IMAGE),
    "image_fred_DC": ("DC.main_DC", "fred", IMAGE),
    "image_pixel_TM": ("TM.main_TM", "pixel", IMAGE + TM + ["--no-zca"]),
    "video_ddif_DM": ("Video.main_DM", "ddif", VIDEO),
    "voxel_ddif_DC": ("3D_Voxel.main_DC", "ddif", VOXEL),
}
PINNED: dict[str, dict] = {'image_ddif_DM': {'sums': {'labels': 495.0,
                                                      'weights.0': -3.880490710900631,
                                                      'weights.1': -1.0362351677613333,
                                                      'weights.2': -3.166740096756257,
                                                      'biases.0': 12.51723298089928,
                                                      'biases.1': 1.3851606941898353,
                                                      'biases.2': 0.23881836648797616},
                                             'sumsq': 3321.5714614987814,
                                             'tail': [0.08457368612289429, 0.06005363538861275, -0.03629371151328087, -0.012230612337589264],
                                             'acc': 0.12},
                           'image_fred_DC': {'sums': {'coefs': -4688.458174917381, 'labels': 1080.0, 'freq_index': 25763.0},
                                             'sumsq': 5115799.911608933,
                                             'tail': [253.0, 115.0, 63.0, 33.0],
                                             'acc': 0.15},
                           'image_pixel_TM': {'sums': {'images': 106.9287680927664, 'labels': 45.0},
                                              'sumsq': 30135.982611865336,
                                              'tail': [6.0, 7.0, 8.0, 9.0],
                                              'syn_lr': 0.009141969494521618,
                                              'acc': 0.13},
                           'video_ddif_DM': {'sums': {'labels': 45.0,
                                                      'weights.0': -2.3665116913907696,
                                                      'weights.1': 0.36994456450338475,
                                                      'weights.2': -1.7062484082125593,
                                                      'weights.3': -0.6440303461859003,
                                                      'biases.0': 3.0424127485603094,
                                                      'biases.1': 1.2030347457621247,
                                                      'biases.2': 0.39348640129173873,
                                                      'biases.3': 0.006561426213011146},
                                             'sumsq': 338.27156906430565,
                                             'tail': [0.032050829380750656,
                                                      -0.06800316274166107,
                                                      0.002003710949793458,
                                                      -0.047048382461071014],
                                             'acc': 0.1},
                           'voxel_ddif_DC': {'sums': {'labels': 180.0,
                                                      'weights.0': 6.512923999805935,
                                                      'weights.1': 0.21293512988995644,
                                                      'weights.2': -1.2161128246370936,
                                                      'weights.3': -0.7506648680573562,
                                                      'biases.0': -5.723832986259367,
                                                      'biases.1': -0.268725534886471,
                                                      'biases.2': -0.3576913395518204,
                                                      'biases.3': 0.13020307337865233},
                                             'sumsq': 1263.10763286895,
                                             'tail': [-0.008535731583833694,
                                                      -0.002506822580471635,
                                                      0.015784844756126404,
                                                      -0.0008858441142365336],
                                             'acc': 0.15},
                           'expert': {'sums': {'trajectory0': 278.77979109317647},
                                      'sumsq': 398.69710521687284,
                                      'tail': [0.025665322318673134, -0.03239476680755615, 0.035955872386693954, 0.02714591473340988],
                                      'acc': 0.0404}}


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """The offline video and voxel sets (small) and one expert for TM."""
    from TM.buffer import main as buffer_main

    root = tmp_path_factory.mktemp("pinned")
    mfm.build(root, train_per_class=4, test_per_class=2, seed=0, progress=False)
    # the set as it was pinned (turned in 3-D; the builder's default became upright turns later)
    vfm.build(root, train_per_class=4, test_per_class=2, seed=0, points=1024, progress=False, rotation="so3")
    buffer_main(BUFFER + ["--buffer_path", str(root / "buffers")])
    return root


def summary(tensors: dict) -> dict:
    """Float64 sum of every tensor (by name), the sum of squares of all, and the last four numbers."""
    flat = torch.cat([t.detach().reshape(-1).double() for t in tensors.values()])
    return {"sums": {k: t.double().sum().item() for k, t in tensors.items()}, "sumsq": flat.square().sum().item(),
            "tail": flat[-4:].tolist()}


def assert_pinned(name: str, got: dict) -> None:
    if os.environ.get("DD_PIN_PRINT"):
        print(f"\n    {name!r}: {got!r},")
    want = PINNED[name]
    assert got.keys() == want.keys() and got.get("sums", {}).keys() == want.get("sums", {}).keys()
    for k in want:
        a, b = (got[k], want[k]) if k != "sums" else (list(got[k].values()), list(want[k].values()))
        torch.testing.assert_close(torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64),
                                   rtol=1e-6, atol=1e-9, msg=lambda m: f"{name} {k}: {m}")


def run_case(name: str, work: Path, tmp_path: Path) -> dict:
    module, synset, flags = CASES[name]
    main = importlib.import_module(module).main
    main(BASE + flags + ["--synset", synset, "--data_path", str(work), "--save_path", str(tmp_path / "runs"),
                         "--init_cache", str(tmp_path / "cache")]
         + (["--buffer_path", str(work / "buffers")] if module.startswith("TM") else []))
    run = next((tmp_path / "runs").glob("*/*/*/checkpoint.pt")).parent
    state = load_checkpoint(str(run / "checkpoint.pt"))
    out = summary(state["synset"]["state"])
    if "syn_lr" in (state.get("objective") or {}):
        out["syn_lr"] = float(state["objective"]["syn_lr"])
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    out["acc"] = rows[-1]["acc_mean"]
    return out


@pytest.mark.parametrize("name", list(CASES))
def test_two_iterations_give_the_pinned_set(name, work, tmp_path):
    assert_pinned(name, run_case(name, work, tmp_path))


def test_the_expert_is_pinned(work):
    """The expert trajectory buffer.py wrote (one expert, 2 epochs, 20 images per class)."""
    files = sorted((work / "buffers").rglob("replay_buffer_*.pt"))
    assert len(files) == 1
    payload = load_checkpoint(str(files[0]))
    trajectories = {f"trajectory{i}": t for i, t in enumerate(payload["trajectories"])}
    assert_pinned("expert", dict(summary(trajectories), acc=payload["test_acc"][0]))
