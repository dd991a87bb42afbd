"""CPU time in the kernel with and without common/malloc.py: each job runs twice, one after the other, with glibc's
default allocator behaviour (``DDIF_MALLOC=default``) and with freed memory kept for reuse (the entry scripts'
default), and the table gives user and system CPU seconds, wall seconds, minor page faults and peak RSS of each,
with the ratios. The accuracies the two runs print must be equal (the setting changes no number).

    python benchmarks/bench_malloc.py                        # image, video (96x96) and voxel evaluations
    python benchmarks/bench_malloc.py --jobs video96 --epochs 10

Needs Fashion-MNIST and, for the video and voxel jobs, the offline sets in --data_path (python -m
common.data.moving_fmnist --out data; python -m common.data.voxel_fmnist --out data).
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# each job: an evaluation of random real instances (no checkpoint needed), the entry module and its flags
JOBS = {
    "image": ["DM.eval", "--random_real", "--dataset", "FashionMNIST", "--ipc", "10", "--model", "ConvNet"],
    "video96": ["Video.eval", "--random_real", "--dataset", "MovingFashionMNIST", "--ipc", "1", "--res", "96",
                "--model", "ConvNet3DW32", "--n_test", "200"],
    "voxel": ["3D_Voxel.eval", "--random_real", "--dataset", "VoxelFashionMNIST", "--ipc", "1", "--res", "16",
              "--model", "Conv3DNetW32"],
}
MODES = {"glibc default": {"DDIF_MALLOC": "default"}, "kept for reuse": {}}


# runs an entry module in this process (python -m, from the repository root) and, at exit, writes the process's
# own resource usage to stderr
WRAPPER = ("import atexit, resource, runpy, sys\n"
           "def usage():\n"
           "    u = resource.getrusage(resource.RUSAGE_SELF)\n"
           "    sys.stderr.write(f'\\nUSAGE {u.ru_utime} {u.ru_stime} {u.ru_minflt} {u.ru_maxrss}\\n')\n"
           "atexit.register(usage)\n"
           "sys.argv = sys.argv[1:]\n"
           "runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)\n")


def run(argv: list[str], env_extra: dict) -> dict:
    """One job in a child process: its CPU times, minor faults and peak RSS (its own getrusage) and accuracy."""
    t = time.time()
    r = subprocess.run([sys.executable, "-c", WRAPPER, *argv], cwd=REPO, env=dict(os.environ, **env_extra),
                       capture_output=True, text=True)
    wall = time.time() - t
    found = re.findall(r"USAGE (\S+) (\S+) (\d+) (\d+)", r.stderr)
    if r.returncode != 0 or not found:
        sys.exit(f"{' '.join(argv)} failed:\n{r.stderr[-2000:]}")
    user, system, faults, rss_kb = found[-1]
    acc = re.findall(r"accuracy ([\d.]+ \+- [\d.]+)", r.stdout)
    return dict(user=float(user), sys=float(system), wall=wall, faults=int(faults), rss_gb=int(rss_kb) / 2 ** 20,
                acc=acc[-1] if acc else "?")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", nargs="+", default=list(JOBS), choices=list(JOBS))
    p.add_argument("--epochs", type=int, default=20, help="evaluation epochs of each job")
    p.add_argument("--data_path", default="data")
    a = p.parse_args(argv)
    print("| job | allocator | user (s) | system (s) | system share | wall (s) | minor faults | peak RSS (GB) | "
          "accuracy |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---|")
    for job in a.jobs:
        flags = [*JOBS[job], "--num_eval", "1", "--epoch_eval_train", str(a.epochs), "--data_path", a.data_path,
                 "--device", "cpu", "--no-progress"]
        res = {mode: run(flags, env) for mode, env in MODES.items()}
        for mode, m in res.items():
            share = m["sys"] / max(1e-9, m["user"] + m["sys"])
            print(f"| {job} | {mode} | {m['user']:.1f} | {m['sys']:.1f} | {100 * share:.0f}% | {m['wall']:.1f} | "
                  f"{m['faults']:,} | {m['rss_gb']:.2f} | {m['acc']} |")
        d, k = res["glibc default"], res["kept for reuse"]
        print(f"| {job} | ratio kept / default | {k['user'] / d['user']:.2f} | {k['sys'] / max(d['sys'], 1e-9):.3f} "
              f"| | {k['wall'] / d['wall']:.2f} | {k['faults'] / max(d['faults'], 1):.3f} | "
              f"{k['rss_gb'] / d['rss_gb']:.2f} | {'equal' if k['acc'] == d['acc'] else 'DIFFERENT'} |")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
