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


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module's tests (small batches gain nothing from more, and one thread keeps them fast
    on a busy machine); restored afterwards. A module opts in with ``pytestmark = pytest.mark.usefixtures(...)``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def sources():
    """The real Fashion-MNIST as the offline sets' source images (tests using it carry tests.helpers.needs_fmnist)."""
    from common.data.offline import load_sources
    return load_sources("data")


@pytest.fixture(scope="session")
def offline_builds(tmp_path_factory):
    """``offline_builds(module)``: three small builds of an offline set (common.data.moving_fmnist or voxel_fmnist),
    made on first use and shared by every test of the session -- "a" and "b" with seed 0 into different folders, "c"
    with seed 1 -- each of tests.helpers.OFFLINE_TRAIN / OFFLINE_TEST clips or shapes per class. Returns
    {key: the dataset folder}."""
    from tests.helpers import OFFLINE_TEST, OFFLINE_TRAIN
    made: dict = {}

    def builds(module) -> dict:
        if module.NAME not in made:
            made[module.NAME] = {key: module.build(tmp_path_factory.mktemp(f"{module.NAME}_{key}"),
                                                   train_per_class=OFFLINE_TRAIN, test_per_class=OFFLINE_TEST,
                                                   seed=seed, progress=False)
                                 for key, seed in [("a", 0), ("b", 0), ("c", 1)]}
        return made[module.NAME]

    return builds
