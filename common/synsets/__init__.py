"""Synthetic-set parameterisations sharing one interface (:class:`SynSet`)."""
from __future__ import annotations

from ..errors import CheckpointError, choice_error
from .base import Flag, SynSet, load_checkpoint
from .ddif import DDiF
from .fred import FreD
from .pixel import Pixel

SYNSETS: dict[str, type[SynSet]] = {cls.name: cls for cls in (DDiF, FreD, Pixel)}


def synset_class(name: str) -> type[SynSet]:
    if name not in SYNSETS:
        raise choice_error("synset", name, sorted(SYNSETS))
    return SYNSETS[name]


def build_synset(name: str, **config) -> SynSet:
    return synset_class(name)(**config)


def synset_from_payload(payload: dict, what: str = "checkpoint") -> SynSet:
    """Rebuild a synthetic set from what :meth:`SynSet.payload` wrote."""
    try:
        synset = build_synset(payload["synset"], **payload["config"])
    except (KeyError, TypeError) as e:
        raise CheckpointError(f"{what} does not describe a synthetic set ({type(e).__name__}: {e})") from None
    synset.load_payload(payload, what)
    return synset


def load_synset(path: str) -> SynSet:
    return synset_from_payload(load_checkpoint(path, "synthetic-set checkpoint"), f"synthetic-set checkpoint {path}")


__all__ = ["Flag", "SynSet", "DDiF", "FreD", "Pixel", "SYNSETS", "synset_class", "build_synset", "load_synset",
           "synset_from_payload", "load_checkpoint"]
