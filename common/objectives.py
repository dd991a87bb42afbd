"""The objectives, registered once (a new one: a module with an :class:`~common.objective.Objective` subclass, one
line here, an ``OBJECTIVE`` row in ``hyper_params.py`` and an entry script)."""
from __future__ import annotations

from .dc import GradientMatching
from .dm import DistributionMatching
from .errors import choice_error
from .objective import Objective
from .tm import TrajectoryMatching

OBJECTIVES: dict[str, type[Objective]] = {c.name: c for c in (DistributionMatching, GradientMatching,
                                                              TrajectoryMatching)}


def objective_class(name: str) -> type[Objective]:
    if name not in OBJECTIVES:
        raise choice_error("objective", name, list(OBJECTIVES))
    return OBJECTIVES[name]
