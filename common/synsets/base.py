"""The interface every synthetic-set parameterisation implements.

A synthetic set holds ``n_per_class`` instances for each of ``num_classes`` classes, stored class by
class (instances of class c are ``class_indices(c)``), and decodes any subset of them to tensors of
shape (n, channel, *im_size) in one batched call. ``im_size`` may have any number of spatial axes:
(H, W) images, (T, H, W) video, (D, H, W) voxels.
"""
from __future__ import annotations

import argparse
import math
import os
import re
from typing import ClassVar, NamedTuple, Optional, Sequence

import torch
from torch import Tensor, nn

from .. import dist
from ..atomic import torch_save
from ..errors import CheckpointError, UserError

FORMAT_VERSION = 1


class Flag(NamedTuple):
    """A constructor argument of a parameterisation that is also a command-line flag (None: the table's)."""
    name: str
    type: type
    help: str = ""
    default: object = None


class SynSet(nn.Module):
    name: ClassVar[str]
    title: ClassVar[str]  # the heading of its flags in --help
    any_resolution: ClassVar[bool] = False  # can decode at sizes other than im_size
    flags: ClassVar[tuple[Flag, ...]] = ()  # its own flags; the constructor takes each by name
    cached_init: ClassVar[bool] = False  # its initialisation is costly (a fit): runs cache it on disk

    @classmethod
    def add_args(cls, p: argparse.ArgumentParser) -> None:
        g = p.add_argument_group(cls.title)
        for f in cls.flags:
            g.add_argument(f"--{f.name}", type=f.type, default=f.default, help=f.help or None)

    @classmethod
    def config_from(cls, args, channel: int, num_classes: int, im_size) -> dict:
        """Constructor arguments for a run's resolved ``args`` and its data."""
        return dict(num_classes=num_classes, channel=channel, im_size=list(im_size), ipc=args.ipc,
                    **{f.name: getattr(args, f.name) for f in cls.flags})

    def __init__(self, num_classes: int, channel: int, im_size: Sequence[int], ipc: int):
        super().__init__()
        if ipc < 1:
            raise UserError(f"--ipc must be >= 1, got {ipc}")
        self.num_classes, self.channel, self.im_size, self.ipc = int(num_classes), int(channel), tuple(im_size), int(ipc)
        self.n_per_class = self._instances_per_class()
        self.register_buffer("labels", torch.arange(self.num_classes).repeat_interleave(self.n_per_class))

    # -- to implement -------------------------------------------------------------------------
    def _instances_per_class(self) -> int:
        raise NotImplementedError

    def config(self) -> dict:
        """Plain-typed constructor arguments; ``type(self)(**config())`` rebuilds an empty set."""
        return dict(num_classes=self.num_classes, channel=self.channel, im_size=list(self.im_size), ipc=self.ipc)

    def decode(self, indices: Tensor, res=None) -> Tensor:
        """Instances ``indices`` as a (n, channel, *size) tensor; ``res`` asks another resolution."""
        raise NotImplementedError

    def init_from_real(self, real, generator: torch.Generator, progress: bool = False) -> Tensor:
        """Initialise from real instances of each class; returns the real instances used (``progress``: a bar
        for a long initialisation)."""
        raise NotImplementedError

    def make_optimizer(self) -> torch.optim.Optimizer:
        raise NotImplementedError

    def params_per_instance(self) -> int:
        raise NotImplementedError

    # -- shared ---------------------------------------------------------------------------------
    @property
    def n_total(self) -> int:
        return self.num_classes * self.n_per_class

    def class_indices(self, c: int) -> Tensor:
        return torch.arange(c * self.n_per_class, (c + 1) * self.n_per_class, device=self.labels.device)

    def get(self, indices: Optional[Tensor] = None, res=None) -> tuple[Tensor, Tensor]:
        """Decoded instances and their labels (all instances by default)."""
        if indices is None:
            indices = torch.arange(self.n_total, device=self.labels.device)
        indices = torch.as_tensor(indices, device=self.labels.device).long()
        if self.output_size(res) != self.im_size and not self.any_resolution:
            raise UserError(f"a {self.name} synthetic set decodes only at its own size {self.im_size}, not {res}")
        return self.decode(indices, res), self.labels[indices]

    def output_size(self, res=None) -> tuple:
        """``res``: None (native size), a tuple giving every axis, or an int giving the last two axes."""
        if res is None:
            return self.im_size
        if isinstance(res, int):
            return self.im_size[:-2] + (res, res) if len(self.im_size) >= 2 else (res,)
        res = tuple(int(r) for r in res)
        if len(res) != len(self.im_size):
            raise UserError(f"resolution {res} has {len(res)} axes, the instances have {len(self.im_size)}")
        return res

    def trainable(self) -> list[Tensor]:
        return [p for p in self.parameters() if p.requires_grad]

    def sync_gradients(self) -> None:
        """Under torchrun, where each rank computed the gradient of its share of the work: sum the gradients over
        the ranks, so that every rank's optimiser takes the step of one process that did it all (one process:
        nothing to do)."""
        dist.sum_gradients_(self.trainable())

    def storage_budget(self) -> int:
        """Numbers allowed: ipc full-resolution instances per class."""
        return self.ipc * self.channel * math.prod(self.im_size) * self.num_classes

    def budget(self) -> dict:
        used = self.n_total * self.params_per_instance()
        return dict(allowed=self.storage_budget(), used=used, per_class=self.n_per_class,
                    params_per_instance=self.params_per_instance(), ratio=used / self.storage_budget())

    def is_finite(self) -> bool:
        return all(bool(torch.isfinite(p).all()) for p in self.parameters())

    # -- persistence ----------------------------------------------------------------------------
    def payload(self) -> dict:
        return {"format": FORMAT_VERSION, "synset": self.name, "config": self.config(),
                "state": {k: v.detach().cpu() for k, v in self.state_dict().items()}}

    def save(self, path: str) -> None:
        torch_save(self.payload(), path)

    def load_payload(self, payload: dict, what: str = "checkpoint") -> None:
        """Load a payload written by :meth:`payload`, checking it was made for this configuration."""
        if payload.get("synset") != self.name:
            raise CheckpointError(f"{what} holds a {payload.get('synset')!r} synthetic set, expected {self.name!r}")
        diff = config_diff(payload.get("config", {}), self.config())
        if diff:
            raise CheckpointError(f"{what} was made for another configuration: {diff}")
        try:
            self.load_state_dict(payload["state"])
        except (RuntimeError, KeyError) as e:
            raise CheckpointError(f"{what} does not fit this synthetic set: {str(e).splitlines()[0]}") from None


def config_diff(saved: dict, current: dict) -> str:
    keys = sorted(set(saved) | set(current))
    return "; ".join(f"{k}: saved {saved.get(k)!r} vs now {current.get(k)!r}"
                     for k in keys if saved.get(k) != current.get(k))


def read_torch_file(path: str, what: str = "checkpoint", mmap: bool = False):
    """torch.load(weights_only=True) onto the CPU (``mmap``: tensors mapped, not read, until used), with one-line
    errors for a missing, truncated or corrupted file and for one that needs arbitrary unpickling."""
    if not os.path.isfile(path):
        raise CheckpointError(f"{what} {path} does not exist")
    with open(path, "rb") as f:
        head = f.read(4)
    # torch.save writes a zip archive (PK\x03\x04) or, in the legacy format, a pickle (protocol byte 0x80)
    if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):
        raise CheckpointError(f"cannot read {what} {path}: not a torch file (it starts with {head!r}; torch.save "
                              f"writes a zip archive)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as e:  # pickle/zip errors come in many types
        if "Unsupported global" in str(e):
            raise CheckpointError(f"cannot read {what} {path}: it holds Python objects other than tensors, lists and "
                                  f"dicts, and unpickling them could run arbitrary code (load it yourself if you trust "
                                  f"it, and save its tensors with torch.save)") from None
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        if "Weights only load failed" in str(e):  # keep the unpickler's reason, not PyTorch's advice to disable it
            m = re.search(r"WeightsUnpickler error:\s*(.+)", str(e))
            msg = m.group(1).strip() if m else "the unpickler refused it"
        raise CheckpointError(f"cannot read {what} {path} (truncated, corrupted or not a torch file): "
                              f"{type(e).__name__}: {msg[:200]}") from None


def load_checkpoint(path: str, what: str = "checkpoint") -> dict:
    """A checkpoint of this code: :func:`read_torch_file`, and a dict."""
    obj = read_torch_file(path, what)
    if not isinstance(obj, dict):
        raise CheckpointError(f"{what} {path} does not hold a dict (not written by this code)")
    return obj


def sample_real(real, c: int, n: int, generator: torch.Generator) -> Tensor:
    """``n`` random real instances of class ``c`` (without replacement while the class has enough)."""
    idx = real.indices_class[c]
    if n <= len(idx):
        pick = torch.randperm(len(idx), generator=generator)[:n]
    else:
        pick = torch.randint(len(idx), (n,), generator=generator)
    return real.images_train[idx[pick]]
