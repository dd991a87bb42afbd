import os

import pytest
import torch

os.environ.setdefault("DD_NO_DOWNLOAD", "1")  # never try a download in tests


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    yield
