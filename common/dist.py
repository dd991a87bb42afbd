"""Several processes with torch.distributed, launched by torchrun; a no-op in a single process.

    torchrun --nproc_per_node 2 DM/main_DM.py ...        # one machine, 2 processes (GPUs: one each)

Every helper works unchanged in one process (world size 1, rank 0, nothing initialised). Under torchrun,
:func:`init` joins the process group: NCCL when the process has a CUDA device (taken from ``LOCAL_RANK``), gloo
otherwise.
"""
from __future__ import annotations

import os
from typing import Sequence

import torch
import torch.distributed as dist


def launched() -> bool:
    """Whether this process was started by torchrun (or another launcher that sets WORLD_SIZE)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init(device: torch.device | None = None) -> None:
    """Join the process group if torchrun started this process and it has not joined yet."""
    if not launched() or dist.is_initialized():
        return
    backend = "nccl" if device is not None and device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend)


def local_device(kind: str) -> torch.device:
    """This process's device for ``kind`` ('cpu' or 'cuda'): under torchrun, GPU ``LOCAL_RANK``."""
    if kind == "cuda":
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device(kind)


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


def gather_objects(obj) -> list:
    """Every rank's ``obj``, in rank order (one process: [obj])."""
    if world_size() == 1:
        return [obj]
    out = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def all_reduce_sum_(tensors: Sequence[torch.Tensor]) -> None:
    """Sum each tensor over the ranks, in place (one process: nothing to do)."""
    if world_size() == 1:
        return
    for t in tensors:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


def finish() -> None:
    """Leave the process group (at the end of a torchrun process)."""
    if dist.is_initialized():
        dist.destroy_process_group()
