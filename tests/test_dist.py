"""torch.distributed with gloo, 2 processes on this CPU (torchrun): the shared helpers of common/dist.py, and
every part that is split over ranks -- evaluation, the expert build, DM, DC, TM, eval.py -- against its
1-process result; rank 0 alone writes the run folder; an error on one rank ends both."""
import json
import subprocess
import sys
import time

import pytest

from common import dist
from tests.helpers import REPO, TEST_DEVICE, assert_same_run, needs_fmnist

pytestmark = pytest.mark.e2e  # end-to-end runs: the slow tier


def test_single_process_helpers_are_no_ops():
    assert dist.world_size() == 1 and dist.rank() == 0 and dist.is_main()
    assert dist.shard(range(5)) == [0, 1, 2, 3, 4]
    assert dist.shard(range(5), r=1, n=2) == [1, 3] and dist.shard(range(5), r=0, n=2) == [0, 2, 4]
    assert dist.gather_objects({"a": 1}) == [{"a": 1}]
    dist.barrier()


def test_finish_waits_until_no_other_reference_holds_the_last_collectives_tensors():
    import threading

    import torch
    t = torch.zeros(3)
    other = [t.view(3)]  # a C++ reference to t, as a backend's finished work holds until its thread drops it
    assert t._use_count() == 2
    dist._recent.clear()
    dist._run(lambda x: None, t)
    threading.Timer(0.3, other.clear).start()  # the "worker" lets go 0.3 s later
    start = time.monotonic()
    dist._wait_for_workers()
    assert 0.25 < time.monotonic() - start < 5 and t._use_count() == 1 and not dist._recent
    other.append(t.view(3))  # one that never lets go: the wait ends at its limit
    dist._run(lambda x: None, t)
    start = time.monotonic()
    dist._wait_for_workers(limit_s=0.2)
    assert 0.15 < time.monotonic() - start < 2 and not dist._recent


def torchrun_script(n: int, script: str, *args, timeout=300) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node n script *args`` from the repository root, one thread per process."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}", script,
           *map(str, args)]
    env = {"OMP_NUM_THREADS": "1", "DD_NO_DOWNLOAD": "1", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)}
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout, env=env)


@needs_fmnist
def test_an_error_on_rank_1_ends_both_processes_with_its_message(tmp_path):
    t = time.time()
    r = torchrun_script(2, "tests/dist_worker.py", tmp_path / "x.json", "fail", timeout=120)
    assert r.returncode != 0
    assert "rank 1 failed on purpose" in r.stderr
    assert time.time() - t < 30  # about 6 s here, most of it start-up
    assert not (tmp_path / "x.json").exists()


def test_objects_of_different_sizes_reach_every_rank(tmp_path):
    # gather_objects / broadcast_object send the pickle's length first, then the padded bytes; the process ends
    # through dist.finish(), which waits for gloo's threads to let go of the last collectives' tensors
    r = torchrun_script(2, "tests/dist_worker.py", tmp_path / "o.json", "objects", timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    for rank in (0, 1):
        got = json.loads((tmp_path / f"o.json.{rank}").read_text())
        assert got == {"gathered": [[0, 1], [1, 1001]], "from": 1, "t": [0.0, 2.0, 4.0, 6.0, 8.0], "total": 2.0}


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


# a small real run, as tests/helpers.py's SMALL_DISTILL, on TEST_DEVICE (CPU: gloo; one GPU (gpu_suite.sh):
# the 2 processes share it, through gloo)
DATA = ["--dataset", "FashionMNIST", "--model", "ConvNetW32", "--n_train_per_class", "40", "--n_test", "200",
        "--no-progress", "--device", TEST_DEVICE]
SMALL = DATA + ["--batch_real", "16", "--num_eval", "2", "--epoch_eval_train", "3",
         "--epochs_init", "100", "--save_it", "1"]


def run_folder(root, objective: str):
    runs = list((root / objective / "FashionMNIST").iterdir())
    assert len(runs) == 1, runs
    return runs[0]


def files_of(run) -> list:
    return sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.is_file())


def load(run, name="checkpoint.pt"):
    import torch
    return torch.load(run / name, map_location="cpu", weights_only=True)


def assert_same_state(a: dict, b: dict) -> None:
    """Two checkpoints' sets and optimiser states: equal on the CPU (the split changes no arithmetic there);
    close on CUDA."""
    assert a["iteration"] == b["iteration"]
    for k, v in a["synset"]["state"].items():
        assert_same_run(v, b["synset"]["state"][k])
    for i, st in a["optimizer"]["state"].items():
        for k, v in st.items():
            assert_same_run(v, b["optimizer"]["state"][i][k])


def accuracies(run) -> list:
    """(iteration, mean, std) of every evaluation."""
    return [(r["iteration"], r["acc_mean"], r["acc_std"]) for r in map(json.loads, (run / "metrics.jsonl").open())]


def assert_same_accuracies(a, b) -> None:
    """The same evaluations: equal on the CPU; on CUDA (cuDNN's weight gradients are not deterministic) the same
    iterations and means within 5 points."""
    a, b = accuracies(a), accuracies(b)
    if TEST_DEVICE == "cpu":
        assert a == b
    else:
        assert [r[0] for r in a] == [r[0] for r in b]
        assert all(abs(x[1] - y[1]) < 0.05 for x, y in zip(a, b)), (a, b)


@needs_fmnist
def test_dm_ddif_two_processes_equal_one_also_resumed_and_only_rank_0_writes(tmp_path):
    flags = SMALL + ["--synset", "ddif", "--batch_syn", "4", "--eval_it", "100"]  # 4 of 11 fields per class
    r = torchrun_script(1, "DM/main_DM.py", *flags, "--Iteration", "3", "--save_path", tmp_path / "one",
                        "--init_cache", tmp_path / "cache1")
    assert r.returncode == 0, r.stderr[-2000:]
    # two processes: stopped after 2 iterations, resumed to 3 (rank 0 fits the warm start and reads the checkpoint)
    for extra in (["--Iteration", "2"], ["--Iteration", "3", "--resume"]):
        r = torchrun_script(2, "DM/main_DM.py", *flags, *extra, "--save_path", tmp_path / "two",
                            "--init_cache", tmp_path / "cache2")
        assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.count("filled:") == 1  # the resolved flags are reported once
    one, two = run_folder(tmp_path / "one", "DM"), run_folder(tmp_path / "two", "DM")
    assert_same_state(load(one), load(two))
    assert_same_accuracies(one, two)
    assert [i for i, *_ in accuracies(two)] == [0, 3]
    assert files_of(two) == sorted(files_of(one) + ["imgs/syn_000002.png"])  # the stop at 2 evaluated there
    assert not [f for f in files_of(two) if ".tmp" in f]
    log = (two / "log.txt").read_text()
    assert log.count("initialised ddif") == 1 and log.count("resumed from") == 1
    assert log.count("2 processes (gloo): DistributionMatching splits the classes") == 2  # once per launch
    assert log.count("budget 7370 of 7840") == 2
    # eval.py: the networks split over two processes, one line of results, the 1-process numbers
    outs = {}
    for n in (1, 2):
        r = torchrun_script(n, "DM/eval.py", "--ckpt", two / "synset_best.pt", "--num_eval", "3",
                            "--epoch_eval_train", "2", "--n_test", "100", "--device", TEST_DEVICE, "--no-progress",
                            "--json_out", tmp_path / f"eval{n}.json")
        assert r.returncode == 0, r.stderr[-2000:]
        assert r.stdout.count("accuracy") == 1, r.stdout
        outs[n] = json.loads((tmp_path / f"eval{n}.json").read_text())
    if TEST_DEVICE == "cpu":
        assert outs[1] == outs[2]
    else:  # cuDNN's weight gradients are not deterministic
        assert abs(outs[1]["ConvNetW32"]["acc_mean"] - outs[2]["ConvNetW32"]["acc_mean"]) < 0.05
    # a resume checkpoint rank 0 cannot read: both processes end, with its message, within seconds
    (two / "checkpoint.pt").write_bytes(b"not a checkpoint")
    t = time.time()
    r = torchrun_script(2, "DM/main_DM.py", *flags, "--Iteration", "4", "--resume", "--save_path", tmp_path / "two",
                        "--init_cache", tmp_path / "cache2")
    assert r.returncode != 0 and time.time() - t < 60
    assert "error (rank 0 of 2): cannot read resume checkpoint" in r.stderr, r.stderr[-2000:]


@needs_fmnist
def test_dc_two_processes_equal_one(tmp_path):
    flags = SMALL + ["--synset", "fred", "--outer_loop", "2", "--inner_loop", "1", "--Iteration", "2",
                     "--eval_it", "100", "--no-eval_at_start"]
    runs = {}
    for n in (1, 2):
        r = torchrun_script(n, "DC/main_DC.py", *flags, "--save_path", tmp_path / f"p{n}")
        assert r.returncode == 0, r.stderr[-2000:]
        runs[n] = run_folder(tmp_path / f"p{n}", "DC")
    assert_same_state(load(runs[1]), load(runs[2]))
    assert_same_accuracies(runs[1], runs[2])
    assert files_of(runs[1]) == files_of(runs[2])


@needs_fmnist
def test_tm_two_processes_equal_one_process_with_two_trajectories(tmp_path):
    r = torchrun_script(1, "TM/buffer.py", *DATA, "--num_experts", "2", "--train_epochs", "2",
                        "--batch_train", "128", "--buffer_path", tmp_path / "buffers")
    assert r.returncode == 0, r.stderr[-2000:]
    flags = SMALL + ["--synset", "pixel", "--buffer_path", tmp_path / "buffers", "--syn_steps", "3",
                     "--expert_epochs", "1", "--max_start_epoch", "2", "--lr_lr", "1e-3", "--Iteration", "2",
                     "--eval_it", "100", "--no-eval_at_start"]
    runs = {}
    for n, extra in ((1, ["--trajectories", "2"]), (2, []), (1, [])):
        r = torchrun_script(n, "TM/main_TM.py", *flags, *extra, "--save_path", tmp_path / f"p{n}{extra[:1]}")
        assert r.returncode == 0, r.stderr[-2000:]
        runs[n, bool(extra)] = run_folder(tmp_path / f"p{n}{extra[:1]}", "TM")
    a, b, single = load(runs[1, True]), load(runs[2, False]), load(runs[1, False])
    assert_same_state(a, b)
    assert_same_run(a["objective"]["syn_lr"], b["objective"]["syn_lr"])
    assert_same_accuracies(runs[1, True], runs[2, False])
    # two trajectories per iteration are not one
    assert not (a["synset"]["state"]["images"] == single["synset"]["state"]["images"]).all()
    assert "2 trajectories per iteration, their gradients averaged" in (runs[1, True] / "log.txt").read_text()
    assert "split over 2 processes" in (runs[2, False] / "log.txt").read_text()


@needs_fmnist
def test_the_shipped_scripts_launch_through_torchrun(tmp_path, monkeypatch):
    from tests.helpers import cli
    monkeypatch.setenv("TORCHRUN", "--standalone --nproc_per_node 2")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    r = cli("bash", "DM/scripts/run_pixel.sh", *SMALL, "--dataset", "FashionMNIST", "--Iteration", "1",
            "--no-eval_at_start", "--save_path", str(tmp_path))
    monkeypatch.delenv("TORCHRUN")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "2 processes (gloo)" in (run_folder(tmp_path, "DM") / "log.txt").read_text()
