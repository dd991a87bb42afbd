"""The domains, registered once: every dataset belongs to exactly one (see :mod:`common.domains.base`).

A new kind of data is one module here (a :class:`Domain` subclass and its loader in ``common/data/``), one line in
:data:`DOMAINS`, and its rows in ``hyper_params.py``.
"""
from __future__ import annotations

from ..errors import choice_error
from .audio import AudioDomain
from .base import Domain, Option, class_rows, to_display
from .image import ImageDomain
from .video import VideoDomain
from .voxel import VoxelDomain

DOMAINS: dict[str, Domain] = {d.name: d for d in (ImageDomain(), VideoDomain(), VoxelDomain(), AudioDomain())}
DATASET_DOMAIN: dict[str, Domain] = {name: d for d in DOMAINS.values() for name in d.datasets}
DATASETS: tuple[str, ...] = tuple(DATASET_DOMAIN)


def domain_of(dataset: str) -> Domain:
    """The domain of ``dataset``; a one-line error listing the datasets when it is unknown."""
    if dataset not in DATASET_DOMAIN:
        raise choice_error("dataset", dataset, DATASETS)
    return DATASET_DOMAIN[dataset]


def all_options() -> dict[str, Option]:
    """Every domain's loader options by name (one flag each, whatever the domain)."""
    return {opt.name: opt for d in DOMAINS.values() for opt in d.options}


__all__ = ["DOMAINS", "DATASETS", "Domain", "Option", "domain_of", "all_options", "to_display", "class_rows"]
