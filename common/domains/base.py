"""What differs by kind of data lives in one :class:`Domain` per kind (images, video clips, voxel grids).

A domain owns its datasets' native sizes, its default network, its loader options (``--frames``, ``--solid``...)
and their resolution, where its decoded data is cached, what its options add to run folders, expert files and
warm-start keys, and what a user looks at (grids, GIFs, projections, exports). Generic code asks the run's
domain (:func:`common.domains.domain_of`) instead of branching on domain or dataset names.
"""
from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Optional

import torch
from torch import Tensor

from ..data import RealData
from ..errors import UserError

Bool = argparse.BooleanOptionalAction


@dataclass(frozen=True)
class Option:
    """A loader option of a domain: a command-line flag (left at None unless given) and the value it takes when
    not given (None: the dataset's, filled by :meth:`Domain.resolve`). Files written before an option existed
    are read as having had ``default``."""

    name: str
    help: str
    type: Optional[Callable] = int  # None: a --flag/--no-flag switch
    default: Any = None
    choices: Optional[tuple] = None
    positive: bool = False  # must be >= 1

    def add_to(self, group) -> None:
        if self.type is None:
            group.add_argument(f"--{self.name}", action=Bool, default=None, help=self.help)
        else:
            group.add_argument(f"--{self.name}", type=self.type, default=None, choices=self.choices, help=self.help)

    def as_flags(self, value) -> list[str]:
        """The flags that give ``value`` back (a switch: only when on)."""
        if self.type is None:
            return [f"--{self.name}"] if value else []
        return [f"--{self.name}", str(value)]


class Domain:
    """One kind of data. Subclasses set the class attributes and implement the data methods."""

    name: ClassVar[str]
    noun: ClassVar[str]  # what its instances are called in messages, plural
    axes: ClassVar[str]  # the instance's axes after the channel, e.g. "HW"
    default_model: ClassVar[str]
    datasets: ClassVar[tuple[str, ...]]
    whitens: ClassVar[bool] = False  # --zca is defined
    cache_folder: ClassVar[Optional[str]] = None  # decoded data is cached in this sub-folder of --cache
    shown_per_class: ClassVar[Optional[int]] = None  # initial real instances kept per class by checkpoints (None: all)
    options: ClassVar[tuple[Option, ...]] = ()  # loader options, every script
    eval_options: ClassVar[tuple[Option, ...]] = ()  # what eval.py can do to a decoded set of this domain
    size_options: ClassVar[tuple[str, ...]] = ()  # options that, like --res, ask a DDiF set for another size

    # -- sizes and options --------------------------------------------------------------------------------
    def native_res(self, dataset: str) -> int:
        raise NotImplementedError

    def instance_size(self, values) -> tuple[int, ...]:
        """The size of one instance (without its channels) of a run with resolved ``values``."""
        return (_get(values, "res"),) * len(self.axes)

    def dataset_default(self, dataset: str, option: str):
        """The dataset's own value of an option whose ``default`` is None."""
        raise NotImplementedError(f"{self.name} has no dataset default for --{option}")

    def resolve(self, values: dict, dataset: str) -> None:
        """Fill the options left at None (the dataset's or the option's default) and check them, in place."""
        if values.get("zca") and not self.whitens:
            raise UserError(f"--zca whitens images; {dataset} holds {self.noun}")
        for opt in self.options:
            if values.get(opt.name) is None:
                values[opt.name] = opt.default if opt.default is not None else self.dataset_default(dataset, opt.name)
            elif opt.positive and values[opt.name] < 1:
                raise UserError(f"--{opt.name} must be >= 1, got {values[opt.name]}")

    def option_values(self, values) -> dict:
        """{option: value} of a resolved run."""
        return {opt.name: _get(values, opt.name) for opt in self.options}

    def subset(self, dataset: str, subset: Optional[str]) -> Optional[str]:
        """The subset a run of ``dataset`` uses (None for datasets without subsets)."""
        return None

    # -- what files record -----------------------------------------------------------------------------------
    def recipe(self, values) -> dict:
        """What expert files record of the options (besides the instance size)."""
        return {}

    def cache_key(self, values) -> dict:
        """What warm-start caches are keyed on, of the options."""
        return self.recipe(values)

    def tag(self, values) -> str:
        """What a run's options add to its folder names (nothing at the dataset's defaults)."""
        return ""

    def flags(self, values) -> list[str]:
        """Command-line flags that reproduce a resolved run's options."""
        by_name = {opt.name: opt for opt in self.options}
        return [f for k, v in self.option_values(values).items() for f in by_name[k].as_flags(v)]

    # -- data ------------------------------------------------------------------------------------------------
    def load(self, dataset: str, *, data_path, res, subset, zca, options: dict, cache_root: str, progress: bool,
             test_only: bool) -> RealData:
        raise NotImplementedError

    def data_cache(self, cache_root: Optional[str]) -> Optional[str]:
        """The folder of this domain's decoded-data cache under the cache root (None: nothing cached)."""
        return os.path.join(cache_root or "cache", self.cache_folder) if self.cache_folder else None

    # -- what a user looks at ----------------------------------------------------------------------------------
    def save_visuals(self, images: Tensor, labels: Tensor, folder: str, stem: str, real: RealData) -> list[str]:
        raise NotImplementedError

    def fit_metrics(self, decoded: Tensor, targets: Tensor, real: RealData, peak: float) -> dict[str, Tensor]:
        """How closely some of a warm start's decoded instances match the real ones they were fitted to, per
        instance: the PSNR over ``peak`` (the value range, max - min, of all the targets)."""
        x, y = decoded.detach().float().cpu(), targets.detach().float().cpu()
        mse = ((x - y) ** 2).flatten(1).mean(1).clamp_min(1e-12)
        return {"PSNR": 10 * torch.log10((peak or 1.0) ** 2 / mse)}

    def fit_summary(self, metrics: dict[str, Tensor]) -> str:
        """:meth:`fit_metrics` over every instance, as one phrase for the log."""
        psnr = metrics["PSNR"]
        return f"PSNR {psnr.mean():.1f} dB (lowest {psnr.min():.1f}) over the {len(psnr)} instances"

    def export_one(self, shown: Tensor, decoded: Tensor, label: int, path_stem: str) -> None:
        """Write one instance (``shown``: in [0, 1] for display; ``decoded``: as decoded) at ``path_stem`` + ext."""
        raise NotImplementedError

    def export(self, images: Tensor, labels: Tensor, real: RealData, folder: str) -> None:
        """One sub-folder per class ("{index:03d}_{name}"), one file (or two) per instance."""
        shown = to_display(images, real.mean, real.std, real.zca)
        for i, (inst, c) in enumerate(zip(shown, labels.tolist())):
            self.export_one(inst, images[i], c, os.path.join(class_folder(folder, c, real.class_names), f"{i:05d}"))

    def transform_for_eval(self, images: Tensor, values, seed: int) -> tuple[Tensor, str]:
        """What the domain's eval options do to a decoded set before evaluation, and a phrase saying it."""
        return images, ""


def class_folder(folder: str, label: int, class_names) -> str:
    """``folder``/"{label:03d}_{name}" (the class name made file-safe), created: where exports put a class."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", class_names[label])
    path = os.path.join(folder, f"{label:03d}_{name}")
    os.makedirs(path, exist_ok=True)
    return path


def _get(values, key):
    return values[key] if isinstance(values, dict) else getattr(values, key)


def to_display(images: Tensor, mean, std, zca=None) -> Tensor:
    """Normalised (and possibly ZCA-whitened) instances -> [0, 1] for drawing."""
    x = images.detach().float().cpu()
    if zca is not None:
        x = zca.inverse_transform(x.flatten(1)).view_as(x)
    shape = (1, -1) + (1,) * (x.dim() - 2)
    x = x * torch.tensor(std).view(shape) + torch.tensor(mean).view(shape)
    return x.clamp(0, 1)


def grid_columns(labels: Tensor, per_class: int) -> int:
    """Columns of a one-row-per-class grid: ``per_class``, or fewer when no class has that many instances (a set
    of 4 shapes per class draws 4 columns, not 10 with 6 empty)."""
    return max(1, min(per_class, int(labels.cpu().unique(return_counts=True)[1].max()) if len(labels) else 1))


def class_rows(x: Tensor, labels: Tensor, per_class: int) -> Tensor:
    """(classes * per_class, ...) instances, one row of ``per_class`` per class, padded with zeros."""
    rows = []
    for c in labels.unique(sorted=True).tolist():
        sel = x[(labels.cpu() == c)][:per_class]
        rows.append(torch.cat([sel, torch.zeros(per_class - len(sel), *x.shape[1:])]))
    return torch.cat(rows)
