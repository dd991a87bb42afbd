"""What the offline stand-ins built from the real Fashion-MNIST share (Moving Fashion-MNIST for video, Voxel
Fashion-MNIST for voxels): the source images, their per-class choice, argument checks, the command line's
parser, and building a dataset folder atomically."""
from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, NamedTuple

import numpy as np

from ..errors import UserError
from .images import FASHION_MNIST_CLASSES, _read_fashion_mnist

GARMENT = 28  # side of a Fashion-MNIST image
SPLITS = ("train", "test")
NUM_CLASSES = len(FASHION_MNIST_CLASSES)


class SourceImages(NamedTuple):
    """Fashion-MNIST as numpy: uint8 (N, 28, 28) images and int64 labels per split."""
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    def split(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        return (self.x_train, self.y_train) if split == "train" else (self.x_test, self.y_test)


def load_sources(data_path: str | os.PathLike = "data") -> SourceImages:
    """The real Fashion-MNIST (``<data_path>/FashionMNIST/raw``, else the Debian folder)."""
    raw = _read_fashion_mnist(Path(data_path), None, (GARMENT, GARMENT))
    return SourceImages(raw.x_train[:, 0].numpy(), raw.y_train.numpy(), raw.x_test[:, 0].numpy(), raw.y_test.numpy())


def rng(stream: int, seed: int, split: str, *keys: int) -> np.random.Generator:
    """A generator seeded with (stream, seed, split, *keys) and nothing else: ``stream`` keeps each dataset's (and
    each use's) numbers its own, ``keys`` name the class (and the item within it)."""
    return np.random.default_rng(np.random.SeedSequence([stream, seed, SPLITS.index(split), *keys]))


def choose_sources(labels: np.ndarray, per_class: int, seed: int, split: str, stream: int) -> np.ndarray:
    """(num_classes, per_class) indices into the images of ``split`` whose labels are ``labels``: for each class,
    ``per_class`` distinct images of that class, a random prefix of a permutation seeded with (stream, seed,
    split, class) -- ``stream`` keeps each dataset's choice its own. Raises :class:`UserError` when a class has
    fewer images."""
    labels = np.asarray(labels)
    out = np.empty((NUM_CLASSES, per_class), np.int64)
    for c in range(NUM_CLASSES):
        idx = np.flatnonzero(labels == c)
        if len(idx) < per_class:
            raise UserError(f"--{split}_per_class {per_class} is more than the {len(idx)} {split} images of "
                            f"Fashion-MNIST class {c} ({FASHION_MNIST_CLASSES[c]})")
        out[c] = idx[rng(stream, seed, split, c).permutation(len(idx))[:per_class]]
    return out


def check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise UserError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


class Parser(argparse.ArgumentParser):
    def error(self, message):  # a bad flag is a UserError: one line and exit status 2 (run_main)
        raise UserError(message)


def refuse_existing(target: Path, overwrite: bool) -> None:
    if target.exists() and not overwrite:
        raise UserError(f"{target} already exists; pass --overwrite to replace it")


@contextmanager
def atomic_folder(out_root: Path, name: str, overwrite: bool) -> Iterator[Path]:
    """A hidden temporary folder beside ``out_root/name`` to build the dataset in; when the block ends it is
    renamed into place (an existing dataset, with ``overwrite``, is moved aside and removed only once the new one
    is in place); when the block raises -- Ctrl-C included -- it is removed and nothing else changes."""
    try:
        out_root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create the output folder {out_root}: {e.strerror}") from e
    partial = out_root / f".{name}.partial-{os.getpid()}-{secrets.token_hex(4)}"
    partial.mkdir()
    try:
        yield partial
        _move_into_place(partial, out_root / name, name, overwrite)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise


def _move_into_place(partial: Path, target: Path, name: str, overwrite: bool) -> None:
    if not target.exists():
        partial.rename(target)
        return
    refuse_existing(target, overwrite)  # appeared while we were building
    old = target.with_name(f".{name}.old-{os.getpid()}-{secrets.token_hex(4)}")
    target.rename(old)
    try:
        partial.rename(target)
    except BaseException:
        old.rename(target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def write_build_info(folder: Path, name: str, settings: dict) -> None:
    """Record a build's ``settings`` in ``folder``/``name`` (JSON; what :func:`read_build_info` returns)."""
    (folder / name).write_text(json.dumps(settings, indent=1) + "\n")


def read_build_info(folder: Path, name: str) -> dict:
    """The settings a build recorded with :func:`write_build_info`; {} for a set built before builds were recorded."""
    path = folder / name
    return json.loads(path.read_text()) if path.is_file() else {}
