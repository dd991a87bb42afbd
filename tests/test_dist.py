"""torch.distributed with gloo, 2 processes on this CPU (torchrun): the shared helpers of common/dist.py and the
evaluation split over ranks, each against its 1-process result."""
import json
import subprocess
import sys
import time

import pytest

from common import dist
from tests.helpers import REPO, needs_fmnist


def test_single_process_helpers_are_no_ops():
    assert dist.world_size() == 1 and dist.rank() == 0 and dist.is_main()
    assert dist.shard(range(5)) == [0, 1, 2, 3, 4]
    assert dist.shard(range(5), r=1, n=2) == [1, 3] and dist.shard(range(5), r=0, n=2) == [0, 2, 4]
    assert dist.gather_objects({"a": 1}) == [{"a": 1}]
    dist.barrier()


def torchrun(n: int, *args, timeout=300) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}",
           "tests/dist_worker.py", *map(str, args)]
    env = {"OMP_NUM_THREADS": "1", "DD_NO_DOWNLOAD": "1", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)}
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout, env=env)


@needs_fmnist
def test_evaluation_split_over_two_processes_equals_one_process(tmp_path):
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    r1 = torchrun(1, one)
    assert r1.returncode == 0, r1.stderr[-2000:]
    r2 = torchrun(2, two)
    assert r2.returncode == 0, r2.stderr[-2000:]
    a, b = json.loads(one.read_text()), json.loads(two.read_text())
    assert a["world"] == 1 and b["world"] == 2 and len(b["accs"]) == 3
    assert a["accs"] == b["accs"]  # network k has the same seeds on whichever rank trains it


@needs_fmnist
def test_an_error_on_rank_1_ends_both_processes_with_its_message(tmp_path):
    t = time.time()
    r = torchrun(2, tmp_path / "x.json", "fail", timeout=120)
    assert r.returncode != 0
    assert "rank 1 failed on purpose" in r.stderr
    assert time.time() - t < 90
    assert not (tmp_path / "x.json").exists()


def torchrun_script(n: int, script: str, *args, timeout=300) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}", script,
           *map(str, args)]
    env = {"OMP_NUM_THREADS": "1", "DD_NO_DOWNLOAD": "1", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)}
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout, env=env)


@needs_fmnist
def test_two_processes_build_the_expert_files_one_process_builds(tmp_path):
    import torch
    from common.experts import numbered_files, read_expert_file
    flags = ["--dataset", "FashionMNIST", "--model", "ConvNetW32", "--no-zca", "--n_train_per_class", "20",
             "--n_test", "100", "--num_experts", "5", "--train_epochs", "2", "--save_interval", "2", "--device", "cpu",
             "--no-progress", "--clip_cache", str(tmp_path / "clips")]
    folders = {}
    for n in (1, 2):
        r = torchrun_script(n, "TM/buffer.py", *flags, "--buffer_path", tmp_path / f"b{n}")
        assert r.returncode == 0, r.stderr[-2000:]
        folders[n] = next((tmp_path / f"b{n}").rglob("replay_buffer_0.pt")).parent
    files = {n: numbered_files(str(f)) for n, f in folders.items()}
    assert [k for k, _ in files[1]] == [k for k, _ in files[2]] == [0, 1, 2]  # experts 0-1, 2-3, 4
    for (_, a), (_, b) in zip(files[1], files[2]):
        fa, fb = read_expert_file(a), read_expert_file(b)
        assert fa["expert_indices"] == fb["expert_indices"]
        for ta, tb in zip(fa["trajectories"], fb["trajectories"]):
            assert torch.equal(ta, tb)
    log = (folders[2] / "log.txt").read_text()  # rank 0's log only: its own experts, once
    assert log.count("training experts 0..4") == 1 and "2 processes" in log
