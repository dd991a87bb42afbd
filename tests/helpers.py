"""What the end-to-end tests share: the repository root, the Fashion-MNIST skip mark, the flags of a small
real run, and running a command line the way a user does."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from common.data import DEBIAN_FASHION_MNIST

REPO = Path(__file__).resolve().parent.parent
# the device of the end-to-end runs: DD_TEST_DEVICE (benchmarks/gpu_suite.sh sets cuda), else the CPU
TEST_DEVICE = os.environ.get("DD_TEST_DEVICE", "cpu")
_NO_DATA = not DEBIAN_FASHION_MNIST.exists() and not os.path.isdir("data/FashionMNIST")
_NO_DEVICE = TEST_DEVICE == "cuda" and not torch.cuda.is_available()
needs_fmnist = pytest.mark.skipif(_NO_DATA or _NO_DEVICE,
                                  reason="DD_TEST_DEVICE=cuda but torch sees no CUDA GPU" if _NO_DEVICE else
                                  "Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")

# a small real Fashion-MNIST run: few images, a narrow ConvNet, on TEST_DEVICE
SMALL = ["--dataset", "FashionMNIST", "--model", "ConvNetW32", "--n_train_per_class", "40", "--n_test", "200",
         "--no-progress", "--device", TEST_DEVICE]
# ... distilled briefly: small real batches, one short evaluation, a short DDiF warm start
SMALL_DISTILL = SMALL + ["--batch_real", "16", "--num_eval", "1", "--epoch_eval_train", "3", "--epochs_init", "100"]
# the small builds of the offline sets (tests/conftest.py's offline_builds): clips or shapes per class and split
OFFLINE_TRAIN, OFFLINE_TEST = 3, 2


def assert_same_run(a, b) -> None:
    """Two runs that should give the same tensor: bit for bit on the CPU; close on CUDA, whose grid_sample
    backward (DSA) and cuDNN weight gradients are not deterministic."""
    a, b = torch.as_tensor(a), torch.as_tensor(b)
    if TEST_DEVICE == "cpu":
        assert torch.equal(a, b)
    else:
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def cli(*args) -> subprocess.CompletedProcess:
    """Run a command line from the repository root, never downloading. OpenMP threads wait passively: on a
    CPU shared with other jobs, spinning threads make the runs many times slower."""
    env = dict(os.environ, DD_NO_DOWNLOAD="1", PYTHON=sys.executable)
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return subprocess.run(list(args), cwd=REPO, capture_output=True, text=True, env=env, timeout=600)


def run_shipped_script(objective: str, script: str, save_path, *args) -> None:
    """``bash {objective}/scripts/{script} *args`` succeeds and leaves a best synthetic set under save_path."""
    r = cli("bash", f"{objective}/scripts/{script}", *args, "--save_path", str(save_path))
    assert r.returncode == 0, r.stderr
    assert list(Path(save_path).glob(f"{objective}/FashionMNIST/*/synset_best.pt"))


def network_kind(name: str) -> str:
    """What the registry's network `name` takes: 'image' (C, H, W), 'clip' (C, T, H, W) or 'voxel' (C, D, H, W),
    read from the class the registry builds for it (built on the meta device: nothing is allocated). The 3-D
    families refuse a 2-D input size, so they are built again at a clip/volume size large enough for every
    canonical depth."""
    from common.errors import UserError
    from common.networks import Conv3DNet, ConvNet3D, get_network

    with torch.device("meta"):
        try:
            model = get_network(name, 1, 2, (32, 32))
        except UserError:
            model = get_network(name, 1, 2, (16, 256, 256))
    if isinstance(model, ConvNet3D):
        return "clip"
    if isinstance(model, Conv3DNet):
        return "voxel"
    return "image"
