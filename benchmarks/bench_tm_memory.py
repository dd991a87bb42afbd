"""Peak memory and time of one trajectory-matching iteration against syn_steps, for both gradient methods.

One iteration = ``syn_steps`` student steps (ConvNet, DSA, functional_call on a flat parameter vector) on
batches of ``batch_syn`` decoded synthetic instances, the TM loss, its gradient into the synthetic set and the
step size, and the optimiser steps -- :mod:`common.tm`'s own ``unroll_backward`` (every step's graph kept) or
``recompute_backward`` (the steps recomputed backwards; ``recompute_sqrt``: with the student stored only every
ceil(sqrt(syn_steps)) steps, ``--tm_checkpoint_every 0``), on random data of the dataset's shape (no dataset or
experts needed). Each (case, method, syn_steps) runs in its own subprocess; peak memory is the maximum RSS
above the RSS after set-up (CPU) or ``torch.cuda.max_memory_allocated`` above the memory allocated after
set-up (CUDA). The summary prints, side by side from this one run, each recomputation's peak at the largest
syn_steps over its peak at the smallest (target <= 1.2) and its time over the unroll's at equal syn_steps
(target <= 1.5). CPU times on this shared 2-core machine vary by 10-30% from run to run. On the CPU the
RSS also holds memory that glibc's malloc keeps after freeing (its dynamic mmap threshold leaves freed blocks
under 32 MB in the heap); ``MALLOC_MMAP_THRESHOLD_=1048576`` in the environment returns every freed block of
1 MB or more at once, so the RSS follows the live tensors (and the run is slower).

    python benchmarks/bench_tm_memory.py          # Fashion-MNIST DDiF ipc 1, CIFAR-10 pixel ipc 10; 10/20/40/80
    python benchmarks/bench_tm_memory.py --device cuda --cases cifar100_ipc10_pixel --find_max

An unroll run whose memory, extrapolated linearly from the smaller syn_steps of the same case, would exceed
--max_fraction of the available memory (CPU) is not run; its extrapolation is printed instead. ``--find_max``
(CUDA) doubles syn_steps from the smallest given until a run fails (out of memory) or reaches --max_steps, per
method, and prints the largest that ran.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from bench_ddif import child_env

CASES = {  # name: (synset, classes, channel, size, ipc, DDiF layer_size, table syn_steps, batch_syn)
    "fmnist_ipc1_ddif": ("ddif", 10, 1, (28, 28), 1, 6, 50, 0),
    "cifar10_ipc10_pixel": ("pixel", 10, 3, (32, 32), 10, None, 60, 100),
    "cifar10_ipc10_ddif": ("ddif", 10, 3, (32, 32), 10, 6, 60, 100),
    "cifar100_ipc10_pixel": ("pixel", 100, 3, (32, 32), 10, None, 20, 0),
}
DEFAULT_CASES = ["fmnist_ipc1_ddif", "cifar10_ipc10_pixel"]
METHODS = ("unroll", "recompute", "recompute_sqrt")  # the last: --tm_checkpoint_every 0


def available_bytes() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def child(case: str, method: str, syn_steps: int, batch_syn: int, device: str, model: str) -> dict:
    import torch

    from bench_ddif import peak_bytes, start_peak
    from common.augment import DSA
    from common.experts import ParamLayout, flat_params
    from common.networks import get_network
    from common.synsets import build_synset
    from common.tm import BACKWARDS, batch_schedule, sqrt_checkpoint_backward

    torch.manual_seed(0)
    kind, classes, channel, size, ipc, width, _, _ = CASES[case]
    dev = torch.device(device)
    cfg = dict(num_classes=classes, channel=channel, im_size=list(size), ipc=ipc)
    if kind == "ddif":
        cfg.update(layer_size=width)
    synset = build_synset(kind, **cfg).to(dev)
    if kind == "pixel":
        with torch.no_grad():
            synset.images.normal_()
    net = get_network(model, channel, classes, size).to(dev).train()
    for p in net.parameters():
        p.requires_grad_(False)
    layout = ParamLayout.of(net)
    theta_start = flat_params(net).to(dev)
    theta_target = theta_start + 0.01 * torch.randn_like(theta_start)
    syn_lr = torch.tensor(0.01, device=dev, requires_grad=True)
    opt, opt_lr = synset.make_optimizer(), torch.optim.SGD([syn_lr], lr=1e-5, momentum=0.5)
    batches = batch_schedule(synset.n_total, batch_syn, syn_steps, torch.Generator().manual_seed(0))
    dsa = DSA()
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    sync()
    base = start_peak(dev)
    t0 = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    opt_lr.zero_grad(set_to_none=True)
    backward = sqrt_checkpoint_backward if method == "recompute_sqrt" else BACKWARDS[method]
    loss = backward(net, layout, theta_start, theta_target, syn_lr, synset, batches, dsa,
                             list(range(syn_steps)))
    opt.step()
    opt_lr.step()
    sync()
    seconds = time.perf_counter() - t0
    peak = peak_bytes(dev) - base
    return dict(peak_bytes=max(peak, 0), seconds=seconds, n_total=synset.n_total, batch=len(batches[0]),
                num_params=layout.num_params, loss=loss)


def run_child(case, method, syn_steps, batch_syn, device, model) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", case, method, str(syn_steps), str(batch_syn),
           device, model]
    out = subprocess.run(cmd, capture_output=True, text=True, env=child_env())
    if out.returncode != 0:
        return dict(error=(out.stderr.strip().splitlines() or ["killed"])[-1][:120])
    return json.loads(out.stdout.strip().splitlines()[-1])


def linear_fit(points: list[tuple[int, float]]) -> tuple[float, float]:
    """(intercept, slope) of a least-squares line through (x, y) points (slope only from one point)."""
    if len(points) == 1:
        x, y = points[0]
        return 0.0, y / x
    n = len(points)
    mx, my = sum(x for x, _ in points) / n, sum(y for _, y in points) / n
    slope = sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x, _ in points)
    return my - slope * mx, slope


def row(case, method, steps, r=None, note="") -> str:
    if r is None:
        return f"{case:<22}{method:<16}{'':>10}{'':>7}{steps:>10}   {note}"
    return (f"{case:<22}{method:<16}{r['n_total']:>10}{r['batch']:>7}{steps:>10}{r['peak_bytes'] / 2**20:>10.0f}"
            f"{r['seconds']:>9.2f}   {note}")


def table(a, case: str, batch: int) -> dict:
    """Every method at every syn_steps; returns {(method, steps): result}."""
    kind, *_, table_steps, _ = CASES[case]
    steps = sorted(set(a.syn_steps + ([table_steps] if a.table else [])))
    results: dict = {}
    for method in a.methods:
        done: list[tuple[int, float]] = []
        for s in steps:
            if done and a.device == "cpu":
                b0, slope = linear_fit(done)
                need = b0 + slope * s
                if need > a.max_fraction * available_bytes():
                    print(row(case, method, s, note=f"not run: predicted {need / 2**20:.0f} MB > "
                                                    f"{a.max_fraction:.0%} of the available memory"), flush=True)
                    continue
            r = run_child(case, method, s, batch, a.device, a.model)
            if "error" in r:
                print(row(case, method, s, note=f"failed: {r['error']}"), flush=True)
                continue
            done.append((s, r["peak_bytes"]))
            results[method, s] = r
            print(row(case, method, s, r), flush=True)
        if method == "unroll" and len(done) >= 2:
            b0, slope = linear_fit(done)
            print(f"{case:<22}{method:<16}growth {slope / 2**20:.1f} MB per syn_step (+{b0 / 2**20:.0f} MB); at the "
                  f"table's {table_steps} steps: {(b0 + slope * table_steps) / 2**20:.0f} MB", flush=True)
    return results


def summary(case: str, results: dict) -> None:
    for method in METHODS[1:]:
        rec = sorted(s for m, s in results if m == method)
        if len(rec) >= 2:
            lo, hi = results[method, rec[0]], results[method, rec[-1]]
            print(f"{case}: {method} peak at {rec[-1]} steps / at {rec[0]} steps = "
                  f"{hi['peak_bytes'] / max(lo['peak_bytes'], 1):.2f} (target <= 1.2)")
        for s in (s for s in rec if ("unroll", s) in results):
            u, r = results["unroll", s], results[method, s]
            print(f"{case}: at {s} steps {method} / unroll: time {r['seconds'] / u['seconds']:.2f} (target <= 1.5), "
                  f"peak memory {r['peak_bytes'] / max(u['peak_bytes'], 1):.3f}; loss {r['loss']:.6f} vs "
                  f"{u['loss']:.6f}")


def find_max(a, case: str, batch: int) -> None:
    """Double syn_steps until a run fails or passes --max_steps, then bisect between the last success and the
    first failure (to within an eighth of the success)."""
    for method in a.methods:

        def ok(steps: int) -> bool:
            r = run_child(case, method, steps, batch, a.device, a.model)
            print(row(case, method, steps, None if "error" in r else r,
                      note=f"failed: {r['error']}" if "error" in r else ""), flush=True)
            return "error" not in r

        s, largest, failed = min(a.syn_steps), None, None
        while s <= a.max_steps:
            if not ok(s):
                failed = s
                break
            largest, s = s, s * 2
        while largest is not None and failed is not None and failed - largest > max(1, largest // 8):
            mid = (largest + failed) // 2
            largest, failed = (mid, failed) if ok(mid) else (largest, mid)
        what = "none" if largest is None else str(largest)
        if largest is not None and failed is None:
            what += f" (not limited by memory: the cap --max_steps {a.max_steps} was reached)"
        elif failed is not None:
            what += f" ({failed} failed)"
        print(f"{case}: largest syn_steps that ran with {method}: {what}", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", nargs="+", default=DEFAULT_CASES, choices=list(CASES))
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--syn_steps", nargs="+", type=int, default=[10, 20, 40, 80])
    p.add_argument("--table", action="store_true", help="also run each case at its table syn_steps")
    p.add_argument("--batch_syn", type=int, default=None, help="override the cases' batch_syn (0: all)")
    p.add_argument("--model", default="ConvNet")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--max_fraction", type=float, default=0.7,
                   help="do not run an unroll predicted to need more than this fraction of the available memory")
    p.add_argument("--find_max", action="store_true", help="the largest syn_steps that runs, per method (CUDA)")
    p.add_argument("--max_steps", type=int, default=1280, help="where --find_max stops doubling")
    p.add_argument("--child", nargs=6, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        c, m, s, b, d, net = a.child
        print(json.dumps(child(c, m, int(s), int(b), d, net)))
        return
    if min(a.syn_steps) < 1:
        p.error(f"--syn_steps must all be >= 1, got {a.syn_steps}")
    malloc = os.environ.get("MALLOC_MMAP_THRESHOLD_")
    print(f"device {a.device}, model {a.model}, torch threads {os.environ.get('OMP_NUM_THREADS', 'default')}, "
          f"available memory {available_bytes() / 2**30:.1f} GiB, glibc malloc "
          f"{'MALLOC_MMAP_THRESHOLD_=' + malloc if malloc else 'defaults'}")
    print(f"{'case':<22}{'method':<16}{'instances':>10}{'batch':>7}{'syn_steps':>10}{'peak MB':>10}{'s/iter':>9}")
    for case in a.cases:
        batch = CASES[case][-1] if a.batch_syn is None else a.batch_syn
        if a.find_max:
            find_max(a, case, batch)
        else:
            summary(case, table(a, case, batch))


if __name__ == "__main__":
    main()
