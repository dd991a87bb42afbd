"""Several processes through torch.distributed (torchrun): wall time of the parts split over ranks, 1 process
against N, side by side in one run, each process with one thread.

  eval     one evaluation (common.evaluate.evaluate_synset) of 4 ConvNets trained on 110 Fashion-MNIST instances
           (11 random real images per class: the size of a DDiF ipc-1 set), DSA, tested on --n_test test images;
           the networks are split over the processes (target: x1.7 with 2 processes)
  experts  a build of 4 experts (TM/buffer.py, one expert per file), the files split over the processes (target
           x1.7 with 2 processes)

Each worker times its part between two barriers (data loading and process start-up are left out; the expert build
is timed as buffer.py's main runs it, its data loading included) and reports what it computed, so that the table
also says whether N processes gave the 1-process numbers (the accuracies, the expert files' bytes).

    python benchmarks/bench_dist.py                           # both, 1 vs 2 processes on the CPU (gloo)
    python benchmarks/bench_dist.py --what eval --epochs 1000  # the evaluation protocol's 1,000 epochs
    python benchmarks/bench_dist.py --device cuda --nproc 2    # one GPU: 2 processes share it (gloo; set
                                                               #   DD_DIST_BACKEND=nccl to ask for NCCL)
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent  # on the workers' PYTHONPATH (they import TM.buffer)


def worker(a) -> None:
    import torch

    from common import dist
    torch.set_num_threads(1)
    device = dist.setup(a.device)
    out = {"world": dist.world_size(), "backend": dist.backend()}
    if a.what == ["eval"]:
        from common.augment import DSA
        from common.data import get_dataset
        from common.evaluate import EvalConfig, evaluate_synset
        real = get_dataset("FashionMNIST", a.data_path).restrict(None, a.n_test or None, seed=0).to(device)
        g = torch.Generator().manual_seed(0)
        images = torch.cat([real.get_images(c, 11, g) for c in range(real.num_classes)])
        labels = torch.arange(real.num_classes, device=device).repeat_interleave(11)
        cfg = EvalConfig(epochs=a.epochs, num_eval=4, device=device, dsa=DSA(), seed=0)
        dist.barrier()
        t = time.perf_counter()
        accs = evaluate_synset("ConvNet", images, labels, real, cfg, tag="bench")
        if device.type == "cuda":
            torch.cuda.synchronize()
        dist.barrier()
        out.update(seconds=time.perf_counter() - t, result=accs)
    else:
        from TM import buffer
        argv = ["--dataset", "FashionMNIST", "--data_path", a.data_path, "--model", "ConvNet", "--no-zca",
                "--n_train_per_class", str(a.n_train), "--num_experts", "4",
                *(["--n_test", str(a.n_test)] if a.n_test else []), "--save_interval", "1",
                "--train_epochs", str(a.epochs), "--device", a.device, "--no-progress", "--buffer_path", a.folder]
        dist.barrier()
        t = time.perf_counter()
        folder = buffer.main(argv)
        dist.barrier()
        out.update(seconds=time.perf_counter() - t, result=digest_experts(folder))
    if dist.is_main():
        Path(a.json).write_text(json.dumps(out))
    dist.finish()


def digest_experts(folder: str) -> list:
    """Per expert file: a digest of its trajectories' bytes (and which experts it holds)."""
    from common.experts import numbered_files, read_expert_file
    out = []
    for k, path in numbered_files(folder):
        obj = read_expert_file(path)
        h = hashlib.sha256()
        for traj in obj["trajectories"]:
            h.update(traj.numpy().tobytes())
        out.append([k, obj["expert_indices"], h.hexdigest()[:16]])
    return out


def launch(a, what: str, n: int, tmp: str) -> dict:
    json_out = os.path.join(tmp, f"{what}_{n}.json")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}", __file__,
           "--worker", "--what", what, "--json", json_out, "--device", a.device, "--data_path", a.data_path,
           "--epochs", str(a.epochs if what == "eval" else a.expert_epochs), "--n_train", str(a.n_train),
           "--n_test", str(a.n_test),
           "--folder", os.path.join(tmp, f"buffers{n}")]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO), DD_NO_DOWNLOAD="1")
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        sys.exit(f"{what} with {n} processes failed:\n{r.stderr[-3000:]}")
    return json.loads(Path(json_out).read_text())


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--what", nargs="+", default=["eval", "experts"], choices=["eval", "experts"])
    p.add_argument("--nproc", type=int, default=2, help="compared with 1 process")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--data_path", default="data")
    p.add_argument("--epochs", type=int, default=30,
                   help="eval: training epochs of each network (the protocol's 1000 take ~15 min per network on one "
                        "CPU thread)")
    p.add_argument("--n_test", type=int, default=2000, help="test images of each network and expert (0: all 10,000)")
    p.add_argument("--expert_epochs", type=int, default=2, help="experts: epochs of each expert")
    p.add_argument("--n_train", type=int, default=100, help="experts: train images per class")
    # worker mode (run by torchrun)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--json", help=argparse.SUPPRESS)
    p.add_argument("--folder", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        return worker(a)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for what in a.what:
            one, many = launch(a, what, 1, tmp), launch(a, what, a.nproc, tmp)
            rows.append((what, one, many))
    desc = {"eval": f"evaluation, 4 ConvNets x {a.epochs} epochs on 110 instances, {a.n_test or 10000} test images",
            "experts": f"4 experts x {a.expert_epochs} epochs, {a.n_train} images/class"}
    print(f"device {a.device}, 1 thread per process; {a.nproc} processes use "
          f"{rows[0][2]['backend'] if rows else '-'}")
    print(f"| part | 1 process (s) | {a.nproc} processes (s) | speed-up | target | same result |")
    print("|---|---:|---:|---:|---:|---|")
    for what, one, many in rows:
        print(f"| {desc[what]} | {one['seconds']:.1f} | {many['seconds']:.1f} | "
              f"x{one['seconds'] / many['seconds']:.2f} | x1.7 | {'yes' if one['result'] == many['result'] else 'NO'} |")
    for what, one, many in rows:
        if what == "eval":
            print(f"eval accuracies, 1 process: {one['result']}; {a.nproc}: {many['result']}")


if __name__ == "__main__":
    main()
