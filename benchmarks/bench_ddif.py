"""DDiF speed and memory: the batched implementation vs a straightforward loop of separate SIREN modules.

Measures, for each configuration, one distillation step (decode every field, a loss on the decoded set,
backward, optimiser step) and one warm-start step (every field fitted to its own target), for
  batched: common.synsets.DDiF (stacked fields, chunked batched decode, FieldAdam)
  loop:    one nn.Module SIREN per field, decoded one by one, torch.optim.Adam over all of them
Each variant runs in its own subprocess, so its peak memory is its own: on CPU the peak RSS during the
timed steps above the RSS after set-up (what was kept from the warm-up step counts too), on CUDA
max_memory_allocated. Prints both times, their ratio (from this one run) and memory.

    python benchmarks/bench_ddif.py                    # the image configurations on CPU
    python benchmarks/bench_ddif.py --configs cifar10_ipc10 --device cuda
    python benchmarks/bench_ddif.py --configs ucf_dipc1 ucf_budget_1class --modes step   # video (CPU)

Video (miniUCF101-shaped, 16x112x112 clips, fields of 8,483 parameters): one field per class (the paper's
dipc 1), and the budget-filled set (70 fields per class; on CPU one class of it, on a GPU all 50). There the loop
back-propagates field by field (as the original's DM, which steps per class with one field each): keeping every
field's activations at once would need tens of GB. Voxels (ModelNet10-shaped, 32^3 occupancy): 10 x 34 fields of
941 parameters (`--configs modelnet10_ipc1`); the loop back-propagates field by field there too.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time

CONFIGS = {  # name: (classes, channel, size, ipc, layer_size, num_layers, w0, w0_initial, dipc)
    "fmnist_ipc1": (10, 1, (28, 28), 1, 6, 2, 10.0, 30.0, 0),
    "cifar10_ipc10": (10, 3, (32, 32), 10, 6, 2, 10.0, 30.0, 0),
    "cifar100_ipc10": (100, 3, (32, 32), 10, 15, 2, 10.0, 30.0, 0),
    "imagenette_ipc1": (10, 3, (128, 128), 1, 20, 3, 40.0, 30.0, 0),
    "ucf_dipc1": (50, 3, (16, 112, 112), 1, 40, 6, 5.0, 5.0, 1),
    "ucf_budget_1class": (1, 3, (16, 112, 112), 1, 40, 6, 5.0, 5.0, 0),
    "ucf_budget": (50, 3, (16, 112, 112), 1, 40, 6, 5.0, 5.0, 0),
    "modelnet10_ipc1": (10, 1, (32, 32, 32), 1, 20, 3, 40.0, 30.0, 0),
}
IMAGE_CONFIGS = [c for c, v in CONFIGS.items() if len(v[2]) == 2]


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def reset_peak_rss() -> None:
    """Linux: restart the peak-RSS (VmHWM) count from the current RSS."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def peak_rss_bytes() -> int:
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmHWM:"))


def start_peak(dev) -> int:
    """Begin a peak-memory measurement on ``dev``: restart the peak count and return the memory held now
    (CUDA: allocated bytes; CPU: RSS)."""
    import torch
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        return torch.cuda.memory_allocated()
    reset_peak_rss()
    return rss_bytes()


def peak_bytes(dev) -> int:
    """The peak since :func:`start_peak` (CUDA: max_memory_allocated; CPU: peak RSS), held memory included."""
    import torch
    return torch.cuda.max_memory_allocated() if dev.type == "cuda" else peak_rss_bytes()


def child(variant: str, mode: str, config: str, device: str, steps: int, loop_fields: int) -> dict:
    import torch
    from torch import nn
    from common.synsets import DDiF
    from common.synsets.ddif import coordinate_grid

    # the first optimiser step imports ~900 modules (~150 MB): do it before measuring, for both variants
    warm_param = nn.Parameter(torch.zeros(1))
    warm_param.grad = torch.zeros(1)
    torch.optim.Adam([warm_param]).step()
    torch.manual_seed(0)
    nc, ch, size, ipc, width, layers, w0, w0_initial, dipc = CONFIGS[config]
    dev = torch.device(device)
    synset = DDiF(nc, ch, size, ipc, dipc=dipc, layer_size=width, num_layers=layers, w0=w0,
                  w0_initial=w0_initial).to(dev)
    per_field_backward = len(size) == 3
    n, ppf = synset.n_total, synset.params_per_instance()
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    if variant == "batched":
        if mode == "step":
            opt = synset.make_optimizer()

            def one_step():
                x, _ = synset.get()
                loss = x.square().mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        else:
            targets = torch.randn(n, ch, *size, device=dev)

            def one_step():
                synset.fit(targets, 1, 5e-4, progress=False)
        fields = n
    else:
        coords = coordinate_grid(size, dev)

        class Siren(nn.Module):
            def __init__(self):
                super().__init__()
                dims = [len(size)] + [width] * layers + [ch]
                self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
                with torch.no_grad():
                    for i, l in enumerate(self.layers):
                        bound = 1 / len(size) if i == 0 else math.sqrt(6 / l.in_features) / w0
                        l.weight.uniform_(-bound, bound)
                        l.bias.uniform_(-bound, bound)

            def forward(self, x):
                for i, l in enumerate(self.layers[:-1]):
                    x = torch.sin((w0_initial if i == 0 else w0) * l(x))
                return self.layers[-1](x).T.reshape(ch, *size)

        fields = n if mode == "step" else min(n, loop_fields)
        nets = nn.ModuleList(Siren() for _ in range(fields)).to(dev)
        if mode == "step":
            opt = torch.optim.Adam(nets.parameters(), lr=1e-4)

            def one_step():
                opt.zero_grad(set_to_none=True)
                if per_field_backward:  # the same loss, one field's graph at a time
                    for net in nets:
                        (net(coords).square().sum() / (n * ch * math.prod(size))).backward()
                else:
                    x = torch.stack([net(coords) for net in nets])
                    x.square().mean().backward()
                opt.step()
        else:  # the original's warm start: each field fitted alone, with its own Adam
            targets = torch.randn(fields, ch, *size, device=dev)
            opts = [torch.optim.Adam(net.parameters(), lr=5e-4) for net in nets]

            def one_step():
                for net, o, t in zip(nets, opts, targets):
                    loss = (net(coords) - t).square().mean()
                    o.zero_grad(set_to_none=True)
                    loss.backward()
                    o.step()

    sync()
    base = rss_bytes()  # after set-up: what the steps add on top of the stored fields and targets
    one_step()  # warm-up (allocations, lazy init)
    sync()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    else:
        reset_peak_rss()
    t0 = time.perf_counter()
    for _ in range(steps):
        one_step()
    sync()
    per_step = (time.perf_counter() - t0) / steps * (n / fields)
    if dev.type == "cuda":
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = peak_rss_bytes() - base
    return dict(seconds=per_step, peak_bytes=max(peak, 0), fields=n, timed_fields=fields, ppf=ppf)


def child_env() -> dict:
    """The environment for a benchmark's child process: this one's, with the repository on PYTHONPATH (the
    child imports ``common`` where the repository is not installed, e.g. a bare GPU machine)."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")])))


def run_child(*args) -> dict:
    cmd = [sys.executable, __file__, "--child", *map(str, args)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=child_env())
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", nargs="+", default=IMAGE_CONFIGS, choices=list(CONFIGS))
    p.add_argument("--modes", nargs="+", default=["step", "warm"], choices=["step", "warm"])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--steps", type=int, default=3, help="timed steps per variant (after one warm-up step)")
    p.add_argument("--loop_fields", type=int, default=300,
                   help="warm start of the loop: fields timed (scaled linearly to all fields)")
    p.add_argument("--child", nargs=6, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        v, m, c, d, s, lf = a.child
        print(json.dumps(child(v, m, c, d, int(s), int(lf))))
        return
    print(f"device {a.device}, threads {os.cpu_count()}, THP_MEM_ALLOC_ENABLE={os.environ.get('THP_MEM_ALLOC_ENABLE', '0')}")
    print(f"{'config':<19}{'mode':<6}{'fields':>7}{'params':>7}{'loop s':>10}{'batched s':>11}{'speed-up':>10}"
          f"{'loop MB':>10}{'batched MB':>12}")
    for c in a.configs:
        for m in a.modes:
            r = {v: run_child(v, m, c, a.device, a.steps, a.loop_fields) for v in ("loop", "batched")}
            lo, ba = r["loop"], r["batched"]
            note = "" if lo["timed_fields"] == lo["fields"] else f"  (loop timed on {lo['timed_fields']} fields, scaled)"
            print(f"{c:<19}{m:<6}{ba['fields']:>7}{ba['ppf']:>7}{lo['seconds']:>10.3f}{ba['seconds']:>11.3f}"
                  f"{lo['seconds'] / ba['seconds']:>9.1f}x{lo['peak_bytes'] / 2**20:>10.0f}{ba['peak_bytes'] / 2**20:>12.0f}{note}",
                  flush=True)


if __name__ == "__main__":
    main()
