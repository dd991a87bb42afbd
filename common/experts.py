"""Expert trajectories for trajectory matching: writing, reading and checking ``replay_buffer_{n}.pt`` files.

A file holds a dict (read with ``torch.load(weights_only=True)``)::

    format, dataset, subset, res, model, channel, num_classes, im_size, num_params, param_shapes, zca,
    transform (common.data.data_transform: how the images were made from pixels), train_epochs, lr_teacher,
    mom, l2, batch_train, dsa, n_train_per_class, seed,
    expert_indices: [int], test_acc: [float],
    trajectories: [Tensor(train_epochs + 1, num_params)]   # flat parameters after each epoch; row 0 = init

The flat order of a network's parameters is ``net.parameters()`` order (:func:`flat_params`,
:class:`ParamLayout`), the same for the writer (``TM/buffer.py``) and the reader (``common/tm.py``).
Files live in :func:`common.paths.expert_dir` and are numbered from 0; each is written to a temporary
name and renamed, so a folder never holds a half-written file.
"""
from __future__ import annotations

import math
import os
import re
import shlex
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

import hyper_params

from .atomic import torch_save
from .data import transform_mismatch
from .domains import domain_of
from .errors import CheckpointError, UserError
from .evaluate import test_accuracy, train_epoch
from .networks import get_network
from .synsets.base import read_torch_file
from .utils import derive_seed

FORMAT_VERSION = 1
FILE_RE = re.compile(r"replay_buffer_(\d+)\.pt")
# what a folder's files must agree on to be continued by TM/buffer.py (the training recipe)
RECIPE_KEYS = ("dataset", "subset", "res", "model", "zca", "transform", "num_params", "train_epochs", "lr_teacher",
               "mom", "l2", "batch_train", "dsa", "n_train_per_class")

# besides these, a file records what its domain's options made of the data (common.domains: Domain.recipe)


def file_name(n: int) -> str:
    return f"replay_buffer_{n}.pt"


# ---- flat parameter vectors -------------------------------------------------------------------------------

def flat_params(net: nn.Module) -> Tensor:
    """All parameters of ``net`` as one detached float32 CPU vector, in ``net.parameters()`` order."""
    return torch.cat([p.detach().reshape(-1) for p in net.parameters()]).float().cpu()


@dataclass(frozen=True)
class ParamLayout:
    """Names and shapes of a network's parameters: turns a flat vector back into a ``{name: tensor}`` dict
    for :func:`torch.func.functional_call` (views of the vector, so gradients flow to it)."""

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]

    @classmethod
    def of(cls, net: nn.Module) -> "ParamLayout":
        named = list(net.named_parameters())
        return cls(tuple(n for n, _ in named), tuple(tuple(p.shape) for _, p in named))

    @property
    def sizes(self) -> list[int]:
        return [math.prod(s) for s in self.shapes]

    @property
    def num_params(self) -> int:
        return sum(self.sizes)

    def unflatten(self, flat: Tensor) -> dict[str, Tensor]:
        if flat.shape != (self.num_params,):
            raise ValueError(f"flat parameter vector of shape {tuple(flat.shape)}, expected ({self.num_params},)")
        return {n: t.view(s) for n, s, t in zip(self.names, self.shapes, torch.split(flat, self.sizes))}

    def as_list(self) -> list:
        return [[n, list(s)] for n, s in zip(self.names, self.shapes)]


# ---- writing ------------------------------------------------------------------------------------------------

def save_expert_file(path: str, header: dict, trajectories: Sequence[Tensor], expert_indices: Sequence[int],
                     test_acc: Sequence[float]) -> None:
    """Write one ``replay_buffer_{n}.pt`` atomically."""
    payload = dict(header, format=FORMAT_VERSION, expert_indices=[int(i) for i in expert_indices],
                   test_acc=[float(a) for a in test_acc],
                   trajectories=[t.detach().float().cpu().contiguous() for t in trajectories])
    torch_save(payload, path)


# ---- reading ------------------------------------------------------------------------------------------------

def numbered_files(folder: str) -> list[tuple[int, str]]:
    """(n, path) of every ``replay_buffer_{n}.pt`` in ``folder``, by n (temporary files are not matched)."""
    if not os.path.isdir(folder):
        return []
    found = [(int(m.group(1)), os.path.join(folder, f)) for f in os.listdir(folder) if (m := FILE_RE.fullmatch(f))]
    return sorted(found)


def read_expert_file(path: str, mmap: bool = False) -> dict:
    """One expert file (``mmap``: tensors are mapped, not read, until used); one-line errors when unreadable."""
    try:
        obj = read_torch_file(path, "expert file", mmap)
    except CheckpointError as e:
        raise CheckpointError(f"{e}; delete it and run TM/scripts/run_buffer.sh again") from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT_VERSION or "trajectories" not in obj:
        raise CheckpointError(f"{path} is not an expert file of this code (format {FORMAT_VERSION}); convert the "
                              f"original MTT/DDiF/FreD buffers of its folder with TM/buffer.py --import DIR (with "
                              f"the flags they were trained with)")
    trajs = obj["trajectories"]
    if not trajs or any(t.dim() != 2 or t.shape != (obj["train_epochs"] + 1, obj["num_params"]) for t in trajs):
        raise CheckpointError(f"{path}: trajectories are not ({obj['train_epochs'] + 1}, {obj['num_params']}) tensors")
    return obj


def buffer_command(args, train_epochs: Optional[int] = None) -> str:
    """The command that builds the experts ``args`` asks for."""
    domain = domain_of(args.dataset)
    cmd = ["bash", "TM/scripts/run_buffer.sh", "--dataset", args.dataset]
    if getattr(args, "subset", None):
        cmd += ["--subset", args.subset]
    if args.res not in (None, domain.native_res(args.dataset)):
        cmd += ["--res", str(args.res)]
    cmd += domain.flags(args)  # the same clips, the same voxel grids
    table_dsa = hyper_params.defaults("TM", args.dataset, args.res, 1, domain=domain.name)[0]["dsa"]
    if getattr(args, "dsa", None) is not None and args.dsa != table_dsa:  # buffer.py's default is the table's
        cmd += ["--dsa" if args.dsa else "--no-dsa"]
    cmd += ["--model", args.model, "--zca" if args.zca else "--no-zca", "--buffer_path", args.buffer_path]
    if getattr(args, "data_path", "data") != "data":
        cmd += ["--data_path", args.data_path]
    if train_epochs is not None:
        cmd += ["--train_epochs", str(train_epochs)]
    return shlex.join(cmd)


def _mismatch(header: dict, args, path: str, what: str) -> Optional[str]:
    """Why the experts in ``path`` do not fit ``args`` (None if they do)."""
    for key in ("dataset", "subset", "res", "model", "zca"):
        saved, now = header.get(key), getattr(args, key, None)
        if saved != now:
            why = (f"built {'with' if saved else 'without'} ZCA whitening, but this run has "
                   f"{'--zca' if now else '--no-zca'}" if key == "zca" else
                   f"built for {key} {saved!r}, not {now!r} (--{key})")
            return f"{what} {path} were {why}; build experts for this run with: {buffer_command(args)}"
    domain = domain_of(args.dataset)
    for key, now in domain.option_values(args).items():  # experts trained on other clips, other voxel grids
        if key in header and header[key] != now:
            return (f"{what} {path} were trained on data made with --{key} {header[key]!r}, not {now!r}; build "
                    f"experts for this run with: {buffer_command(args)}")
    why = transform_mismatch(header, args.zca)
    if why:
        return (f"{what} {path} were {why}; delete {os.path.dirname(path)} and build them again with: "
                f"{buffer_command(args)} (or build them under another --buffer_path)")
    return None


class Experts:
    """The expert trajectories of one folder.

    ``load_all``: read every trajectory into memory; otherwise the files are memory-mapped and only the two
    epochs a TM iteration needs are read. ``pair(k, a, b)`` returns expert k's flat parameters at epochs a, b.
    """

    def __init__(self, folder: str, files: list[tuple[str, dict]], max_experts: int, load_all: bool):
        self.folder, self.load_all = folder, load_all
        self.index: list[tuple[int, int]] = []  # expert k -> (file, position)
        self._files = []
        for f, (path, obj) in enumerate(files):
            trajs = obj["trajectories"][:max_experts or None]
            self._files.append(trajs)
            self.index += [(f, i) for i in range(len(trajs))]
        head = files[0][1]
        self.paths = [p for p, _ in files]
        self.train_epochs, self.num_params = int(head["train_epochs"]), int(head["num_params"])
        self.lr_teacher = float(head["lr_teacher"])
        self.test_acc = [a for _, obj in files for a in obj.get("test_acc", [])[:max_experts or None]]

    def __len__(self) -> int:
        return len(self.index)

    def pair(self, k: int, a: int, b: int) -> tuple[Tensor, Tensor]:
        f, i = self.index[k]
        t = self._files[f][i]
        return t[a].clone(), t[b].clone()

    def describe(self) -> str:
        mean = sum(self.test_acc) / max(1, len(self.test_acc))
        acc = f", test accuracy {100 * mean:.1f}% on average" if self.test_acc else ""
        return (f"{len(self)} experts of {self.train_epochs} epochs from {len(self.paths)} file(s) in {self.folder}"
                f"{acc}{' (all in memory)' if self.load_all else ' (memory-mapped)'}")


def check_expert_folder(folder: str, args, max_files: int = 0, min_epochs: int = 0) -> list[tuple[str, dict]]:
    """The (path, header) of the files a TM run would use, checked against ``args`` (dataset, subset, res,
    model, ZCA) and for at least ``min_epochs`` epochs, without reading the trajectories; UserError naming
    the folder and the command that builds them when there are none."""
    found = numbered_files(folder)
    if not found:
        state = "does not exist" if not os.path.isdir(folder) else "holds no replay_buffer_*.pt files"
        raise UserError(f"expert folder {folder} {state}; build the experts first with: {buffer_command(args)}")
    if max_files:
        found = found[:max_files]
    out = []
    for _, path in found:
        obj = read_expert_file(path, mmap=True)
        why = _mismatch(obj, args, path, "the experts in")
        if why:
            raise UserError(why)
        if obj["train_epochs"] < min_epochs:
            raise UserError(f"the experts in {path} were trained {obj['train_epochs']} epochs; this run needs "
                            f"{min_epochs} (max_start_epoch - 1 + expert_epochs): lower --max_start_epoch or "
                            f"--expert_epochs, or build longer ones (in a fresh --buffer_path) with: "
                            f"{buffer_command(args, min_epochs)}")
        out.append((path, obj))
    epochs = sorted({obj["train_epochs"] for _, obj in out})
    if len(epochs) > 1:
        raise UserError(f"the expert files in {folder} disagree on train_epochs ({epochs}); keep one kind per folder")
    return out


def load_experts(folder: str, args, load_all: bool = False, max_files: int = 0, max_experts: int = 0,
                 expect: Optional[dict] = None, min_epochs: int = 0) -> Experts:
    """The experts in ``folder`` for a TM run configured by ``args``.

    Checks that they were built for args' dataset, subset, res, model and ZCA setting, that they match
    ``expect`` (e.g. ``{"channel": 1, "num_classes": 10, "im_size": [28, 28], "num_params": n}``: the data and
    the network of this run) and that they have at least ``min_epochs`` epochs; every problem is a UserError
    saying what to do. ``max_files``: use only the first this many files; ``max_experts``: only the first this
    many experts of each file (0: all).
    """
    files = check_expert_folder(folder, args, max_files, min_epochs)
    for path, obj in files:
        for key, now in (expect or {}).items():
            if obj.get(key) != now:
                raise UserError(f"the experts in {path} were built for {key} {obj.get(key)!r}, but this run's data "
                                f"and {args.model} have {now!r}; build them again with: {buffer_command(args)}")
    if load_all:
        files = [(path, read_expert_file(path)) for path, _ in files]
    return Experts(folder, files, max_experts, load_all)


# ---- importing the original code's buffers -----------------------------------------------------------------

def _original_buffer(path: str) -> list:
    """An MTT-style buffer file's list of trajectories, memory-mapped, its outer structure checked."""
    obj = read_torch_file(path, "buffer file", mmap=True)
    if not isinstance(obj, list) or not obj or not all(isinstance(t, list) and t for t in obj):
        raise CheckpointError(f"{path} is not an original replay buffer (a list of trajectories, each a list of "
                              f"snapshots)")
    return obj


def original_epochs(path: str) -> int:
    """The epochs of an MTT-style buffer file's first trajectory, without reading its tensors."""
    return len(_original_buffer(path)[0]) - 1


def original_trajectories(path: str, layout: ParamLayout) -> list[Tensor]:
    """The trajectories of an MTT-style ``replay_buffer_{n}.pt`` (DDiF's and FreD's copies write the same): a list
    of trajectories, each a list of snapshots (initialisation, then one per epoch), each a list of parameter
    tensors in ``parameters()`` order; as (snapshots, num_params) float32 tensors. One-line errors when the file
    is not one or a snapshot does not fit ``layout`` (naming the first mismatch)."""
    out = []
    for k, traj in enumerate(_original_buffer(path)):
        for e, snap in enumerate(traj):
            if not isinstance(snap, (list, tuple)) or len(snap) != len(layout.shapes):
                n = len(snap) if isinstance(snap, (list, tuple)) else type(snap).__name__
                raise UserError(f"{path}: trajectory {k}, snapshot {e} holds {n} tensors; the network has "
                                f"{len(layout.shapes)} parameter tensors (is --model the buffer's network?)")
            for name, shape, t in zip(layout.names, layout.shapes, snap):
                if not isinstance(t, Tensor) or tuple(t.shape) != shape:
                    got = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
                    raise UserError(f"{path}: trajectory {k}, snapshot {e}: parameter {name} is {got} in the file, "
                                    f"{shape} in the network (is --model the buffer's network, at this --res?)")
        out.append(torch.stack([torch.cat([t.reshape(-1).float() for t in snap]) for snap in traj]))
    epochs = {len(t) for t in out}
    if len(epochs) > 1:
        raise CheckpointError(f"{path}: trajectories of {sorted(epochs)} snapshots; one length per file")
    return out


def import_buffers(source: str, folder: str, header: dict, layout: ParamLayout, progress: bool = False,
                   log=print) -> int:
    """Convert every ``replay_buffer_{n}.pt`` of ``source`` (the original format) into this project's expert file
    of the same number in ``folder``, with ``header`` (the recipe the files do not record; its ``train_epochs``
    must be the files'). A file already converted is kept (a rerun continues); one file is in memory at a time.
    Returns the number of files converted."""
    found = numbered_files(source)
    if not found:
        raise UserError(f"{source} holds no replay_buffer_<n>.pt files to import")
    os.makedirs(folder, exist_ok=True)
    converted, index = 0, 0
    for n, path in tqdm(found, desc="import", disable=not progress):
        target = os.path.join(folder, file_name(n))
        if os.path.exists(target):
            index += len(read_expert_file(target, mmap=True)["trajectories"])
            continue
        trajs = original_trajectories(path, layout)
        if len(trajs[0]) - 1 != header["train_epochs"]:
            raise UserError(f"{path}: trajectories of {len(trajs[0]) - 1} epochs, the first file's "
                            f"{header['train_epochs']}; keep one kind per folder")
        save_expert_file(target, header, trajs, range(index, index + len(trajs)), [])
        index += len(trajs)
        converted += 1
        log(f"imported {path} -> {target} ({len(trajs)} experts of {header['train_epochs']} epochs)")
    return converted


# ---- training an expert ------------------------------------------------------------------------------------

def train_expert(model: str, real, epochs: int, lr: float, momentum: float, weight_decay: float, batch: int,
                 dsa, seed: int, device, on_epoch=None) -> tuple[Tensor, float]:
    """Train a fresh ``model`` on the real training set by SGD (DSA on every batch when ``dsa``) and return
    its flat parameters after every epoch, (epochs + 1, P) with row 0 the initialisation, and its final test
    accuracy. ``on_epoch(epoch, test_acc)`` is called after each epoch. Every random draw comes from ``seed``."""
    torch.manual_seed(derive_seed(seed, "init"))
    net = get_network(model, real.channel, real.num_classes, real.im_size).to(device).train()
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    order = torch.Generator().manual_seed(derive_seed(seed, "order"))
    x_all, y_all = real.images_train, real.labels_train
    trajectory, acc = [flat_params(net)], float("nan")
    for epoch in range(epochs):
        train_epoch(net, opt, x_all, y_all, batch, dsa, order, derive_seed(seed, "dsa", epoch))
        trajectory.append(flat_params(net))
        acc = test_accuracy(net, real.images_test, real.labels_test)
        net.train()
        if on_epoch is not None:
            on_epoch(epoch, acc)
    return torch.stack(trajectory), acc
