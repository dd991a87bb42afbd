import os

import pytest
import torch

os.environ.setdefault("DD_NO_DOWNLOAD", "1")  # never try a download in tests


def pytest_addoption(parser):
    parser.addoption("--device", default=os.environ.get("DD_TEST_DEVICE", "cpu"), choices=("cpu", "cuda"),
                     help="device of the device-generic tests (the `device` fixture); also DD_TEST_DEVICE")


@pytest.fixture
def device(request) -> torch.device:
    """The device the device-generic tests run on (--device / DD_TEST_DEVICE; cuda is skipped without a GPU)."""
    name = request.config.getoption("--device")
    if name == "cuda" and not torch.cuda.is_available():
        pytest.skip("--device cuda asked for, but torch sees no CUDA GPU")
    return torch.device(name)


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    yield
