"""Fitting benchmark: many DDiF fields fitted to real images at once (the warm start, ``DDiF.fit``).

The configuration a third party measured on a GPU: 1,000 fields of 963 parameters (SIREN 2 -> 20 x 3 -> 3,
w0 30/40: DDiF's ImageNette ipc 1 field) fitted to 1,000 ImageNette-sized 128x128 RGB targets for 1,000 Adam
steps. Their figures: DDiF's per-instance implementation 1088 s and 1079 MB, FreD 15.5 s, a Gaussian-splat
method 24.5 s and 150 MB. Target here: <= 10 s and <= 300 MB of peak GPU memory.

No ImageNette is available offline: the targets are real Fashion-MNIST test images, resized to 128x128 and
repeated over 3 channels, normalised (the fitting cost does not depend on what the images show).
Peak memory: CUDA max_memory_allocated during the fit (the targets, fields and optimiser state included, and
also without them); on a CPU the peak RSS above the RSS before the fit. ``--chunk_elements`` sweeps the
decoder's chunk size (hidden activations per chunk), which trades memory for speed.

    python benchmarks/bench_fit.py --device cuda
    python benchmarks/bench_fit.py --fields 20 --steps 5 --res 32      # a quick CPU check
"""
from __future__ import annotations

import argparse
import json
import math
import os
import time


def targets(fields: int, res: int, data_path: str):
    import torch.nn.functional as F
    from common.data import get_dataset

    real = get_dataset("FashionMNIST", data_path)
    x = real.images_test[:fields]
    if len(x) < fields:
        x = x.repeat((fields + len(x) - 1) // len(x), 1, 1, 1)[:fields]
    x = F.interpolate(x, size=(res, res), mode="bilinear", align_corners=False)
    return x.expand(-1, 3, -1, -1).contiguous()


def run(fields: int, steps: int, res: int, device: str, chunk_elements: int, data_path: str) -> dict:
    """One timed fit at decoder chunk size ``chunk_elements`` (0: the code's default for the device)."""
    import torch
    from common.synsets import ddif as ddif_mod

    dev = torch.device(device)
    default = ddif_mod.CHUNK_ELEMENTS_CUDA if dev.type == "cuda" else ddif_mod.CHUNK_ELEMENTS
    chunk_elements = chunk_elements or default
    saved = ddif_mod.CHUNK_ELEMENTS, ddif_mod.CHUNK_ELEMENTS_CUDA
    ddif_mod.CHUNK_ELEMENTS = ddif_mod.CHUNK_ELEMENTS_CUDA = chunk_elements
    try:
        return _fit(fields, steps, res, dev, chunk_elements, data_path)
    finally:
        ddif_mod.CHUNK_ELEMENTS, ddif_mod.CHUNK_ELEMENTS_CUDA = saved


def _fit(fields: int, steps: int, res: int, dev, chunk_elements: int, data_path: str) -> dict:
    import torch
    from bench_ddif import peak_bytes, start_peak
    from common.synsets import DDiF
    from common.synsets.ddif import params_per_field

    tgt = targets(fields, res, data_path).to(dev)
    # one field per target (ImageNette ipc 1's field): one "class" of `fields` fields, with a budget that holds them
    ppf = params_per_field(2, 3, 20, 3)
    ipc = math.ceil(fields * ppf / (3 * res * res))
    s = DDiF(1, 3, (res, res), ipc=ipc, dipc=fields, num_layers=3, layer_size=20, w0_initial=30, w0=40)
    s = s.to(dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    s.fit(tgt, 2, 5e-4, progress=False)  # warm-up: allocations, kernels
    sync()
    base = start_peak(dev)
    t0 = time.perf_counter()
    mse = s.fit(tgt, steps, 5e-4, progress=False)
    sync()
    seconds = time.perf_counter() - t0
    peak = peak_bytes(dev)
    return dict(fields=fields, params_per_field=s.params_per_instance(), steps=steps, res=res, device=dev.type,
                chunk_elements=chunk_elements, seconds=seconds, peak_mb=peak / 2**20,
                peak_above_held_mb=(peak - base) / 2**20, held_mb=base / 2**20, final_mse=mse)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fields", type=int, default=1000)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--res", type=int, default=128)
    p.add_argument("--device", default="cuda", choices=["cpu", "cuda"])
    p.add_argument("--chunk_elements", type=int, nargs="+", default=[0],
                   help="decoder chunk sizes to time (0: the code's default for the device)")
    p.add_argument("--data_path", default="data")
    p.add_argument("--json_out", help="also write the results here (a JSON list)")
    a = p.parse_args()
    print(f"fitting {a.fields} fields to {a.res}x{a.res} RGB targets for {a.steps} Adam steps on {a.device}; "
          f"target <= 10 s and <= 300 MB (a third party: per-instance DDiF 1088 s / 1079 MB, FreD 15.5 s, "
          f"Gaussian splats 24.5 s / 150 MB)")
    print(f"{'chunk':>10}{'seconds':>10}{'peak MB':>10}{'above held':>12}{'held MB':>10}{'final MSE':>11}")
    rows = []
    for c in a.chunk_elements:
        r = run(a.fields, a.steps, a.res, a.device, c, a.data_path)
        rows.append(r)
        print(f"{r['chunk_elements']:>10}{r['seconds']:>10.2f}{r['peak_mb']:>10.0f}{r['peak_above_held_mb']:>12.0f}"
              f"{r['held_mb']:>10.0f}{r['final_mse']:>11.4f}", flush=True)
    if a.json_out:
        with open(a.json_out, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    os.environ.setdefault("DD_NO_DOWNLOAD", "1")
    main()
