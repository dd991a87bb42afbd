"""What every domain's loader shares: the in-memory dataset (:class:`RealData`), instances memory-mapped from a
cache (:class:`MappedArray`), the record of how its instances were made from pixels, and finding a dataset's folder with a one-line error when it is missing."""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, NamedTuple, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from ..errors import DatasetNotFoundError, UserError

DEFAULT_DATA_PATH = "data"
NO_DOWNLOAD_ENV = "DD_NO_DOWNLOAD"  # set to 1 to never try a torchvision download
ZCA_EPS = 0.1  # the original's kornia ZCAWhitening(eps=0.1)
# How the images of a RealData were made from pixels. Expert files, warm-start caches and synthetic-set
# checkpoints record it, so that data prepared another way (this code's earlier ZCA whitened mean/std-normalised
# images) is refused instead of silently reused.
TRANSFORM_NORMALISE = "mean_std"
TRANSFORM_ZCA = f"zca_pixels_eps{ZCA_EPS}"
# what files written before the transform was recorded used with --zca: ZCA of mean/std-normalised images
TRANSFORM_LEGACY_ZCA = f"zca_normalised_eps{ZCA_EPS}"
TRANSFORM_TEXT = {
    TRANSFORM_NORMALISE: "mean/std-normalised images",
    TRANSFORM_ZCA: "ZCA-whitened [0, 1] pixels (kornia, eps 0.1, as the original code)",
    TRANSFORM_LEGACY_ZCA: "ZCA-whitened mean/std-normalised images (this code's ZCA before it matched the original)",
}


def data_transform(zca: bool) -> str:
    """The transform tag of a dataset loaded with (``zca``) or without ZCA."""
    return TRANSFORM_ZCA if zca else TRANSFORM_NORMALISE


def recorded_transform(record: dict) -> str:
    """The transform tag a saved file (expert file header, warm-start cache, synthetic-set meta) was made with;
    files from before the tag was recorded have only their ``zca`` flag."""
    return record.get("transform") or (TRANSFORM_LEGACY_ZCA if record.get("zca") else TRANSFORM_NORMALISE)


def transform_mismatch(record: dict, zca: bool) -> Optional[str]:
    """None when ``record`` was made with the transform a run with ``zca`` uses; else a phrase saying both."""
    saved, now = recorded_transform(record), data_transform(zca)
    if saved == now:
        return None
    return f"made from {TRANSFORM_TEXT.get(saved, saved)}, but this run uses {TRANSFORM_TEXT[now]}"


@dataclass
class RealData:
    """A real dataset. Instances are float32 (N, C, *size) -- images (N, C, H, W), clips (N, C, T, H, W) --
    normalised with mean/std, or, when ``zca`` is set, [0, 1] pixels ZCA-whitened (``mean`` is then 0 and ``std``
    1, so display code only undoes the whitening); labels int64. ``indices_class[c]`` indexes the train instances
    of class c (CPU LongTensors, also after :meth:`to`).

    ``images_train``/``images_test`` are tensors, or, for video and voxels, :class:`MappedArray`:
    uint8 clips or grids memory-mapped from the on-disk cache and normalised when indexed (``x[idx]``, ``x[a:b]``),
    so a large set never has to fit in memory as floats."""

    name: str
    channel: int
    im_size: tuple[int, ...]
    num_classes: int
    class_names: list[str]
    mean: list[float]
    std: list[float]
    images_train: Tensor = field(repr=False)
    labels_train: Tensor = field(repr=False)
    images_test: Tensor = field(repr=False)
    labels_test: Tensor = field(repr=False)
    indices_class: list[Tensor] = field(repr=False)
    zca: object | None = field(default=None, repr=False)
    domain: str = "image"  # "image", "video" or "voxel": what the instances are (how they are shown and exported)
    # after restrict(n_test=...): which rows of the dataset's whole test set images_test holds (None: all of them), so
    # that a shifted copy of that test set (CIFAR-10-C, ...) can be restricted to the same images
    test_rows: Optional[Tensor] = field(default=None, repr=False)

    @property
    def transform(self) -> str:
        """How the images were made from pixels (see :func:`data_transform`)."""
        return data_transform(self.zca is not None)

    def draw(self, c: int, n: int, generator: torch.Generator | None = None) -> Tensor:
        """The train indices :meth:`get_images` would return the images of (the same draw from ``generator``)."""
        idx = self.indices_class[c]
        device = generator.device if generator is not None else "cpu"
        perm = torch.randperm(len(idx), generator=generator, device=device).cpu()[:n]
        return idx[perm]

    def get_images(self, c: int, n: int, generator: torch.Generator | None = None) -> Tensor:
        """`n` random train images of class `c`, drawn without replacement (all of them, shuffled, if n >= count)."""
        return self.images_train[self.draw(c, n, generator).to(self.images_train.device)]

    def restrict(self, n_train_per_class: int | None = None, n_test: int | None = None, seed: int = 0) -> "RealData":
        """A smaller copy: at most `n_train_per_class` train images per class and `n_test` test images, drawn at
        random (reproducible from `seed`) and kept in their original order. None keeps everything."""
        g = torch.Generator().manual_seed(seed)
        train_idx = torch.arange(len(self.labels_train))
        if n_train_per_class is not None:
            train_idx = torch.cat([idx[torch.randperm(len(idx), generator=g)[:n_train_per_class]]
                                   for idx in self.indices_class]).sort().values
        test_idx = torch.arange(len(self.labels_test))
        if n_test is not None:
            test_idx = torch.randperm(len(test_idx), generator=g)[:n_test].sort().values
        labels_train = self.labels_train[train_idx.to(self.labels_train.device)]
        rows = test_idx if self.test_rows is None else self.test_rows[test_idx]
        return dataclasses.replace(
            self,
            test_rows=None if n_test is None and self.test_rows is None else rows,
            images_train=take_rows(self.images_train, train_idx),
            labels_train=labels_train,
            images_test=take_rows(self.images_test, test_idx),
            labels_test=self.labels_test[test_idx.to(self.labels_test.device)],
            indices_class=_indices_by_class(labels_train.cpu(), self.num_classes),
        )

    def hold_out(self, n_per_class: int, seed: int) -> tuple["RealData", tuple[Tensor, Tensor]]:
        """(a copy without them, (images, labels)): ``n_per_class`` random train instances of every class held out,
        drawn from ``seed``; the copy keeps the rest in their order."""
        g = torch.Generator().manual_seed(seed)
        picks = [idx[torch.randperm(len(idx), generator=g)[:n_per_class]] for idx in self.indices_class]
        if any(len(p) == len(idx) for p, idx in zip(picks, self.indices_class)):
            raise UserError(f"--n_val {n_per_class} would hold out every train instance of a class; use fewer")
        held = torch.cat(picks).sort().values
        keep = torch.ones(len(self.labels_train), dtype=torch.bool)
        keep[held] = False
        kept = torch.nonzero(keep).flatten()
        labels_train = self.labels_train[kept.to(self.labels_train.device)]
        rest = dataclasses.replace(self, images_train=take_rows(self.images_train, kept), labels_train=labels_train,
                                   indices_class=_indices_by_class(labels_train.cpu(), self.num_classes))
        x_val = self.images_train[held.to(self.images_train.device)] if isinstance(self.images_train, Tensor) \
            else self.images_train[held]
        return rest, (x_val, self.labels_train[held.to(self.labels_train.device)])

    def to(self, device) -> "RealData":
        """A copy with images and labels on `device` (indices_class stays on the CPU)."""
        return dataclasses.replace(
            self, images_train=self.images_train.to(device), labels_train=self.labels_train.to(device),
            images_test=self.images_test.to(device), labels_test=self.labels_test.to(device))


def take_rows(x, idx: Tensor):
    """Rows ``idx`` of a tensor, or a lazy selection of rows of a MappedArray (which has ``take``)."""
    return x.take(idx) if hasattr(x, "take") and not isinstance(x, Tensor) else x[idx.to(x.device)]


# --------------------------------------------------------------------------------------------------------
# Instances memory-mapped from an on-disk cache (video clips, voxel grids)

class MappedArray:
    """Rows of a uint8 (N, C, *size) array (a memory map of a cache: clips, voxel grids), normalised to float32
    when indexed.

    Supports what the training code does with a dataset's tensor: ``len``, ``shape``, ``device``, ``dtype``,
    ``x[index tensor]``, ``x[a:b]`` (-> float32 tensors on ``device``), ``to(device)`` and ``take(idx)`` (a lazy
    selection of rows)."""

    dtype = torch.float32

    def __init__(self, data: np.ndarray, mean: Sequence[float], std: Sequence[float],
                 rows: Optional[np.ndarray] = None, device="cpu"):
        self.data, self.mean, self.std = data, tuple(mean), tuple(std)
        self.rows = np.arange(len(data)) if rows is None else np.asarray(rows, dtype=np.int64)
        self.device = torch.device(device)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self.rows), *self.data.shape[1:]))

    def dim(self) -> int:
        return self.data.ndim

    def _rows(self, key) -> np.ndarray:
        if isinstance(key, slice):
            return self.rows[key]
        if isinstance(key, Tensor):
            key = key.detach().cpu().numpy()
        key = np.asarray(key)
        if key.dtype == bool:  # a mask selects rows, as it does on a tensor
            key = np.flatnonzero(key)
        return self.rows[key.astype(np.int64)]

    def __getitem__(self, key) -> Tensor:
        rows = self._rows(key)
        return self._load(rows.reshape(1))[0] if rows.ndim == 0 else self._load(rows)

    def _load(self, rows: np.ndarray) -> Tensor:
        order = np.argsort(rows, kind="stable")  # read the memory map in file order
        raw = np.empty((len(rows), *self.data.shape[1:]), dtype=np.uint8)
        raw[order] = self.data[rows[order]]
        x = torch.from_numpy(raw).to(self.device).float().div_(255)
        shape = (1, -1) + (1,) * (x.dim() - 2)
        mean = torch.tensor(self.mean, device=self.device).view(shape)
        std = torch.tensor(self.std, device=self.device).view(shape)
        return x.sub_(mean).div_(std)

    def take(self, idx) -> "MappedArray":
        return MappedArray(self.data, self.mean, self.std, self._rows(idx), self.device)

    def to(self, device) -> "MappedArray":
        return MappedArray(self.data, self.mean, self.std, self.rows, device)

    def __repr__(self) -> str:
        return f"MappedArray(shape={tuple(self.shape)}, device={self.device})"



class _Raw(NamedTuple):
    """What a reader returns: uint8 images (N, C, H, W), int64 labels, and class names if the files hold them."""
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    class_names: Optional[list[str]] = None


def _normalise(x: Tensor, mean, std) -> Tensor:
    """(x - mean) / std per channel of a (N, C, ...) tensor, in place."""
    shape = (1, -1) + (1,) * (x.dim() - 2)
    return x.sub_(torch.tensor(mean).view(shape)).div_(torch.tensor(std).view(shape))


def _indices_by_class(labels: Tensor, num_classes: int) -> list[Tensor]:
    return [torch.nonzero(labels == c).flatten() for c in range(num_classes)]


# --------------------------------------------------------------------------------------------------------
# Finding files, and the torchvision download fallback

def _find(what: str, candidates: Sequence[Path], is_complete: Callable[[Path], bool],
          download: Callable[[], object] | None, hint: str) -> Path:
    """The first candidate folder that `is_complete`; else try `download` once and look again; else raise a
    one-line DatasetNotFoundError naming every place looked in and how to get the data."""
    for folder in candidates:
        if is_complete(folder):
            return folder
    if download is None:
        note = ""
    elif os.environ.get(NO_DOWNLOAD_ENV, "") not in ("", "0"):
        note = f"; download not tried ({NO_DOWNLOAD_ENV} is set)"
    else:
        try:
            download()
        except Exception as e:  # offline, mirror down, disk full...: all reported the same way
            note = f"; torchvision download failed: {_first_line(e)}"
        else:
            for folder in candidates:
                if is_complete(folder):
                    return folder
            note = "; torchvision download gave no usable files"
    looked = ", ".join(str(c) for c in candidates)
    raise DatasetNotFoundError(f"{what} not found: looked in {looked}{note}. To get it: {hint}")


def _first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"
