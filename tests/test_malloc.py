"""common/malloc.py: with glibc told to keep freed memory, the large activations of a layer run again reuse their
pages instead of having the kernel map and zero new ones (minor page faults counted by getrusage)."""
import os
import subprocess
import sys

import pytest

from tests.helpers import REPO

SCRIPT = """
import resource, torch
import torch.nn.functional as F
from common import malloc
print("configured", malloc.configure())
w, x = torch.randn(64, 64, 3, 3), torch.randn(256, 64, 28, 28)  # a ConvNet layer on a test batch: 51 MB blocks
faults = []
with torch.no_grad():
    for _ in range(5):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        y = F.avg_pool2d(F.relu(F.conv2d(x, w, padding=1)), 2)
        del y
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print("faults", sum(faults[1:]))  # after the first step
"""


def _faults(env_extra: dict) -> tuple[bool, int]:
    env = dict(os.environ, OMP_NUM_THREADS="1", **env_extra)
    r = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    out = dict(line.split() for line in r.stdout.splitlines())
    return out["configured"] == "True", int(out["faults"])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_blocks_are_reused_instead_of_faulted_back():
    on, kept = _faults({})
    off, default = _faults({"DDIF_MALLOC": "default"})
    assert on and not off
    pages = 4 * 2 * (51 << 20) // 4096  # two 51 MB blocks a step (the conv's and the ReLU's), one fault a 4 KB page
    assert default > pages // 2  # glibc's default: the blocks mapped and zeroed again at every step
    assert kept < default // 5  # kept: the first step's pages are reused (16x to 100x fewer faults measured)


RELEASE = """
import torch
from common import malloc
def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20
print("configured", malloc.configure())
x = torch.ones(200 << 18)  # 200 MB, from the heap when configured
del x
before = rss_mb()
malloc.release()
print("dropped", round(before - rss_mb()))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_release_hands_the_kept_pages_back():
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-c", RELEASE], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    out = dict(line.split() for line in r.stdout.splitlines())
    assert out["configured"] == "True" and int(out["dropped"]) > 150  # the freed 200 MB were resident until then
