"""Several processes with torch.distributed, launched by torchrun; a no-op in a single process.

    torchrun --nproc_per_node 2 DM/main_DM.py ...        # one machine, 2 processes (GPUs: one each)

Every helper works unchanged in one process (world size 1, rank 0, nothing initialised). Under torchrun,
:func:`setup` picks the process's device (GPU ``LOCAL_RANK``) and joins the process group: NCCL when every
process of a machine has a GPU of its own, gloo otherwise (CPUs, or more processes than GPUs).

The conventions every entry point follows: only rank 0 writes files (:func:`is_main`); what a rank must agree
on with rank 0 (a warm start, a resumed checkpoint) is read or computed by rank 0 and sent to the others
(:func:`broadcast_object`); work is split by :func:`shard` (item i on rank i % world size) and put back
together by :func:`gather_objects` or summed by :func:`all_reduce_sum_`.
"""
from __future__ import annotations

import collections
import contextlib
import datetime
import os
import pickle
import time
from typing import Sequence

import torch
import torch.distributed as dist

from .errors import UserError
from .utils import resolve_device


def launched() -> bool:
    """Whether this process was started by torchrun (or another launcher that sets WORLD_SIZE)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup(device_name: str) -> torch.device:
    """This process's device for ``--device`` (auto|cpu|cuda; under torchrun a CUDA process takes GPU
    ``LOCAL_RANK``), with the process group joined: what every entry point calls first."""
    device = resolve_device(device_name)
    if launched() and device.type == "cuda":
        device = local_device("cuda")
        torch.cuda.set_device(device)
    init(device)
    return device


def backend_for(device: torch.device | None) -> str:
    """NCCL when this process has a GPU of its own, gloo otherwise (NCCL refuses two ranks on one GPU); the
    environment variable DD_DIST_BACKEND (nccl|gloo) overrides."""
    forced = os.environ.get("DD_DIST_BACKEND")
    if forced:
        if forced not in ("nccl", "gloo"):
            raise UserError(f"DD_DIST_BACKEND={forced!r}; valid choices: nccl, gloo")
        return forced
    if device is None or device.type != "cuda":
        return "gloo"
    per_machine = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1")))
    return "nccl" if per_machine <= torch.cuda.device_count() else "gloo"


def init(device: torch.device | None = None) -> None:
    """Join the process group if torchrun started this process and it has not joined yet."""
    if not launched() or dist.is_initialized():
        return
    dist.init_process_group(backend=backend_for(device), timeout=timeout())


def timeout() -> datetime.timedelta:
    """How long a rank waits in a collective (for instance while rank 0 alone fits a DDiF warm start) before it
    gives up: DD_DIST_TIMEOUT_MIN minutes, 60 by default (torch's own: 10 for NCCL)."""
    raw = os.environ.get("DD_DIST_TIMEOUT_MIN", "60")
    try:
        minutes = float(raw)
        if minutes <= 0:
            raise ValueError
    except ValueError:
        raise UserError(f"DD_DIST_TIMEOUT_MIN={raw!r}: give a positive number of minutes") from None
    return datetime.timedelta(minutes=minutes)


def local_device(kind: str) -> torch.device:
    """This process's device for ``kind`` ('cpu' or 'cuda'): under torchrun, GPU ``LOCAL_RANK`` (modulo the GPUs
    there are, so several processes may share one GPU; they then talk through gloo)."""
    if kind == "cuda":
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) % max(1, torch.cuda.device_count()))
    return torch.device(kind)


def backend() -> str:
    """The process group's backend ('gloo', 'nccl'), or 'none' in one process."""
    return dist.get_backend() if dist.is_initialized() else "none"


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def is_main() -> bool:
    """Rank 0: the one process that writes logs, checkpoints, grids and metrics."""
    return rank() == 0


def shard(items: Sequence, r: int | None = None, n: int | None = None) -> list:
    """This rank's share of ``items``: every n-th item starting at its rank (items i with i % n == r)."""
    r = rank() if r is None else r
    n = world_size() if n is None else n
    return [x for i, x in enumerate(items) if i % n == r]


# A backend's worker thread (gloo's run loop, NCCL's watchdog) drops its references to a collective's tensors
# after it has woken the caller, and the last C++ reference to a tensor that Python also holds takes the GIL to
# let go of the Python object. If the process has begun to exit by then, Python stops the thread as it takes the
# GIL and the process aborts ("terminate called without an active exception": one two-process eval.py run in
# about seven here). So the tensors of the last collectives are kept, and finish() waits until no worker holds
# them before the process exits.
_recent: collections.deque = collections.deque(maxlen=4)


def _run(collective, *tensors) -> None:
    """``collective(*tensors)``, a torch.distributed call that waits; its tensors (or lists of them) are kept
    for :func:`finish`."""
    collective(*tensors)
    _recent.append([t for x in tensors for t in (x if isinstance(x, (list, tuple)) else [x])])


def _wait_for_workers(limit_s: float = 10.0) -> None:
    """Until the backend's threads hold none of the last collectives' tensors (each tensor's only reference is
    its Python object's), sleeping -- which hands the GIL to a thread that waits for it; at most ``limit_s``."""
    end = time.monotonic() + limit_s
    while any(t._use_count() > 1 for ts in _recent for t in ts) and time.monotonic() < end:
        time.sleep(0.001)
    _recent.clear()


def _collective_device() -> torch.device:
    """Where the collectives' own tensors live: this process's GPU with NCCL, the CPU otherwise."""
    return torch.device("cuda", torch.cuda.current_device()) if backend() == "nccl" else torch.device("cpu")


def _to_bytes(obj) -> torch.Tensor:
    return torch.frombuffer(bytearray(pickle.dumps(obj)), dtype=torch.uint8).to(_collective_device())


def _from_bytes(t: torch.Tensor, n: int):
    return pickle.loads(t[:n].cpu().numpy().tobytes())


def gather_objects(obj) -> list:
    """Every rank's ``obj`` (picklable), in rank order (one process: [obj])."""
    if world_size() == 1:
        return [obj]
    device, n = _collective_device(), world_size()
    data = _to_bytes(obj)
    sizes = [torch.zeros(1, dtype=torch.int64, device=device) for _ in range(n)]
    _run(dist.all_gather, sizes, torch.tensor([data.numel()], dtype=torch.int64, device=device))
    lengths = [int(s.item()) for s in sizes]
    padded = torch.zeros(max(lengths), dtype=torch.uint8, device=device)
    padded[:data.numel()] = data
    parts = [torch.empty_like(padded) for _ in range(n)]
    _run(dist.all_gather, parts, padded)
    return [_from_bytes(p, k) for p, k in zip(parts, lengths)]


def _in_one_message(tensors: list[torch.Tensor], collective) -> None:
    """Run ``collective`` (in place on one flat tensor) over ``tensors``, one message per dtype, and copy the
    result back into them. gloo cannot take CUDA tensors there, so for gloo they travel through the CPU."""
    by_dtype: dict = {}
    for t in tensors:
        by_dtype.setdefault(t.dtype, []).append(t)
    for group in by_dtype.values():
        flat = torch.cat([t.detach().reshape(-1) for t in group])
        via_cpu = flat.is_cuda and dist.get_backend() == "gloo"
        buf = flat.cpu() if via_cpu else flat
        _run(collective, buf)
        flat = buf.to(flat.device) if via_cpu else buf
        with torch.no_grad():
            for t, part in zip(group, flat.split([t.numel() for t in group])):
                t.copy_(part.view_as(t))


def all_reduce_sum_(tensors: Sequence[torch.Tensor]) -> None:
    """Sum the tensors over the ranks, in place, in one message per dtype (one process: nothing to do)."""
    tensors = list(tensors)
    if world_size() > 1 and tensors:
        _in_one_message(tensors, lambda buf: dist.all_reduce(buf, op=dist.ReduceOp.SUM))


def sum_gradients_(params: Sequence[torch.Tensor]) -> None:
    """Sum the ``.grad`` of ``params`` over the ranks, in place, so that every rank takes the same optimiser step
    as one process that computed all the gradients. A parameter no rank gave a gradient keeps ``.grad`` None (an
    optimiser skips it as one process would); one that only some ranks did gets zeros on the others first."""
    params = list(params)
    if world_size() == 1 or not params:
        return
    has = torch.tensor([p.grad is not None for p in params], dtype=torch.float32, device=params[0].device)
    all_reduce_sum_([has])
    live = [p for p, h in zip(params, has.tolist()) if h > 0]
    for p in live:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    all_reduce_sum_([p.grad for p in live])


def broadcast_tensors_(tensors: Sequence[torch.Tensor], src: int = 0) -> None:
    """Overwrite each floating-point tensor with rank ``src``'s, in place (one process: nothing to do)."""
    tensors = [t for t in tensors if t.is_floating_point()]
    if world_size() > 1 and tensors:
        _in_one_message(tensors, lambda buf: dist.broadcast(buf, src=src))


def sum_scalar(x: float) -> float:
    """``x`` summed over the ranks (in float64)."""
    if world_size() == 1:
        return x
    t = torch.tensor([float(x)], dtype=torch.float64, device=_collective_device())
    _run(lambda t: dist.all_reduce(t, op=dist.ReduceOp.SUM), t)
    return float(t.item())


def broadcast_object(obj=None, src: int = 0):
    """Rank ``src``'s ``obj`` on every rank (one process: ``obj``). Tensors in it should be on the CPU."""
    if world_size() == 1:
        return obj
    device = _collective_device()
    data = _to_bytes(to_cpu(obj)) if rank() == src else None
    size = torch.tensor([0 if data is None else data.numel()], dtype=torch.int64, device=device)
    _run(lambda t: dist.broadcast(t, src=src), size)
    if data is None:
        data = torch.empty(int(size.item()), dtype=torch.uint8, device=device)
    _run(lambda t: dist.broadcast(t, src=src), data)
    return _from_bytes(data, data.numel())


def to_cpu(obj):
    """``obj`` with every tensor in its dicts, lists and tuples moved to the CPU (so that no rank unpickles a
    tensor onto another rank's GPU)."""
    if torch.is_tensor(obj):
        return obj.cpu()
    if isinstance(obj, dict):
        return {k: to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_cpu(v) for v in obj)
    return obj


def local_rank() -> int:
    """This process's rank on its machine (torchrun's LOCAL_RANK; 0 in one process)."""
    return int(os.environ.get("LOCAL_RANK", "0")) if world_size() > 1 else 0


@contextlib.contextmanager
def main_first():
    """The first process of each machine (LOCAL_RANK 0) runs the block first and fills any cache it builds on
    that machine's disk; the machine's other processes run it after, reading the cache."""
    first = local_rank() == 0
    if not first:
        barrier()
    yield
    if first:
        barrier()


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


def finish() -> None:
    """Leave the process group (at the end of a torchrun process), once the backend's threads are done with
    the last collectives' tensors (see ``_recent``)."""
    if dist.is_initialized():
        _wait_for_workers()
        dist.destroy_process_group()
