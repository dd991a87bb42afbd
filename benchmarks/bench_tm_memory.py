"""Peak memory (and time) of one trajectory-matching iteration, and how it grows with syn_steps.

One iteration = ``syn_steps`` differentiable student steps (ConvNet, DSA, functional_call on a flat
parameter vector) on batches of ``batch_syn`` decoded synthetic instances, the TM loss, back-propagation
into the synthetic set and the step size, and the optimiser steps -- exactly :mod:`common.tm`'s code, on
random data of the dataset's shape (no dataset or experts needed). Each (case, syn_steps) runs in its own
subprocess; peak memory is the maximum RSS above the RSS after set-up (CPU) or
``torch.cuda.max_memory_allocated`` above the memory allocated after set-up (CUDA).

    python benchmarks/bench_tm_memory.py                        # every case at syn_steps 10, 20, 40
    python benchmarks/bench_tm_memory.py --cases cifar10_ipc10_ddif --syn_steps 10 20 40 60 --device cuda

A run whose memory, extrapolated linearly from the smaller syn_steps of the same case, would exceed
--max_fraction of the available memory is skipped and its extrapolation printed instead.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time


CASES = {  # name: (synset, classes, channel, size, ipc, DDiF layer_size, table syn_steps, batch_syn)
    "fmnist_ipc1_ddif": ("ddif", 10, 1, (28, 28), 1, 6, 50, 0),
    "cifar10_ipc10_pixel": ("pixel", 10, 3, (32, 32), 10, None, 60, 100),
    "cifar10_ipc10_ddif": ("ddif", 10, 3, (32, 32), 10, 6, 60, 100),
}


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def available_bytes() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def child(case: str, syn_steps: int, batch_syn: int, device: str, model: str) -> dict:
    import torch

    from common.augment import DSA
    from common.experts import ParamLayout, flat_params
    from common.networks import get_network
    from common.synsets import build_synset
    from common.tm import batch_schedule, tm_loss, unroll_student

    torch.manual_seed(0)
    kind, classes, channel, size, ipc, width, _, _ = CASES[case]
    dev = torch.device(device)
    cfg = dict(num_classes=classes, channel=channel, im_size=list(size), ipc=ipc)
    if kind == "ddif":
        cfg.update(layer_size=width)
    synset = build_synset(kind, **cfg).to(dev)
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
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = rss_bytes()
    t0 = time.perf_counter()
    end = unroll_student(net, layout, theta_start, syn_lr, synset, batches, dsa, list(range(syn_steps)))
    loss = tm_loss(end, theta_start, theta_target)
    opt.zero_grad(set_to_none=True)
    opt_lr.zero_grad(set_to_none=True)
    torch.autograd.backward(loss, inputs=[*synset.trainable(), syn_lr])
    opt.step()
    opt_lr.step()
    sync()
    seconds = time.perf_counter() - t0
    if dev.type == "cuda":
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    return dict(peak_bytes=max(peak, 0), seconds=seconds, n_total=synset.n_total, batch=len(batches[0]),
                num_params=layout.num_params, loss=loss.item())


def run_child(case, syn_steps, batch_syn, device, model) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", case, str(syn_steps), str(batch_syn), device, model]
    out = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    p.add_argument("--syn_steps", nargs="+", type=int, default=[10, 20, 40])
    p.add_argument("--table", action="store_true", help="also run each case at its table syn_steps (50/60)")
    p.add_argument("--batch_syn", type=int, default=None, help="override the cases' batch_syn (0: all)")
    p.add_argument("--model", default="ConvNet")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--max_fraction", type=float, default=0.7,
                   help="skip a run predicted to need more than this fraction of the available memory (CPU)")
    p.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        c, s, b, d, m = a.child
        print(json.dumps(child(c, int(s), int(b), d, m)))
        return
    print(f"device {a.device}, model {a.model}, torch threads {os.environ.get('OMP_NUM_THREADS', 'default')}, "
          f"available memory {available_bytes() / 2**30:.1f} GiB")
    print(f"{'case':<22}{'instances':>10}{'batch':>7}{'syn_steps':>10}{'peak MB':>10}{'seconds':>9}")
    for case in a.cases:
        kind, *_, table_steps, batch = CASES[case]
        batch = batch if a.batch_syn is None else a.batch_syn
        steps = sorted(set(a.syn_steps + ([table_steps] if a.table else [])))
        done: list[tuple[int, float]] = []
        for s in steps:
            if done and a.device == "cpu":
                b0, slope = linear_fit(done)
                need = b0 + slope * s
                if need > a.max_fraction * available_bytes():
                    print(f"{case:<22}{'':>10}{'':>7}{s:>10}{'skipped':>10}   (predicted {need / 2**20:.0f} MB "
                          f"> {a.max_fraction:.0%} of available)", flush=True)
                    continue
            r = run_child(case, s, batch, a.device, a.model)
            if "error" in r:
                print(f"{case:<22}{'':>10}{'':>7}{s:>10}{'failed':>10}   {r['error']}", flush=True)
                continue
            done.append((s, r["peak_bytes"]))
            print(f"{case:<22}{r['n_total']:>10}{r['batch']:>7}{s:>10}{r['peak_bytes'] / 2**20:>10.0f}"
                  f"{r['seconds']:>9.1f}", flush=True)
        if len(done) >= 2:
            b0, slope = linear_fit(done)
            print(f"{case:<22}  growth: {slope / 2**20:.1f} MB per syn_step (+{b0 / 2**20:.0f} MB); at the table's "
                  f"{table_steps} steps: {(b0 + slope * table_steps) / 2**20:.0f} MB", flush=True)


if __name__ == "__main__":
    main()
