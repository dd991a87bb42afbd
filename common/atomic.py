"""Writing a file so that no reader ever sees it half-written: write under a temporary name in the same folder,
then rename over the target (``os.replace`` is atomic on one file system). Every file the project writes
(checkpoints, run records, grids, exports, caches) goes through :func:`atomic_path`."""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Callable, Iterator, Union

import numpy as np
import torch

PathLike = Union[str, "os.PathLike[str]"]


@contextmanager
def atomic_path(path: PathLike) -> Iterator[str]:
    """A temporary path beside ``path`` (its folder is created), to write to inside the ``with`` block. When the
    block ends normally the temporary file replaces ``path``; when it raises, the temporary file is removed and
    ``path`` is left as it was. The temporary name keeps the extension (``.accuracy.tmp123.png``), so writers
    that infer the format or add a suffix (``np.save``) write exactly that file."""
    path = os.fspath(path)
    folder, name = os.path.split(path)
    os.makedirs(folder or ".", exist_ok=True)
    stem, ext = os.path.splitext(name)
    tmp = os.path.join(folder, f".{stem}.tmp{os.getpid()}{ext}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_text(path: PathLike, text: str) -> None:
    """``text`` into ``path``, atomically."""
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        f.write(text)


def write_npy(path: PathLike, shape: tuple[int, ...], fill: Callable[[np.ndarray], None],
              dtype=np.uint8) -> None:
    """A ``.npy`` array of ``shape`` at ``path``, filled in place by ``fill(memmap)`` (the array never has to fit
    in memory), atomically: an interrupted or failed fill leaves no file."""
    with atomic_path(path) as tmp:
        mm = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)
        try:
            fill(mm)
            mm.flush()
        finally:
            del mm


def torch_save(obj, path: PathLike) -> None:
    """``torch.save(obj, path)``, atomically."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
