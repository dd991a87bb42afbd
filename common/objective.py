"""The interface of a distillation objective (DM, DC, TM), and what :func:`common.distill.run_distillation` asks
of it.

An objective declares its own flags (:meth:`Objective.add_args`), fills those the table does not give
(:meth:`Objective.resolve`), checks what needs files before any data is loaded (:meth:`Objective.preflight`), is
built from a :class:`~common.distill.Context`, and updates the synthetic set once per :meth:`Objective.step`. What
it must carry across a resume goes through ``state_dict``/``load_state_dict``; ``eval_lr`` is the learning rate the
run's evaluations train with; ``metrics`` are logged with every evaluation.
"""
from __future__ import annotations

import argparse
from typing import ClassVar, Optional


class Objective:
    name: ClassVar[str]
    splits: ClassVar[str] = "its work"  # what torchrun's processes share out, for the log

    def __init__(self, ctx):
        self.ctx = ctx

    @classmethod
    def add_args(cls, p: argparse.ArgumentParser) -> None:
        """Add the objective's flags (an argument group) to ``p``."""

    @classmethod
    def resolve(cls, values: dict) -> None:
        """Fill the objective's own flags left at None that the table does not give, in ``values``, before the
        table fills the rest: a bad combination fails before anything else is looked up."""

    @classmethod
    def preflight(cls, args) -> None:
        """Checks of the resolved ``args`` that need files (e.g. TM's experts), before any data is loaded."""

    def step(self, it: int) -> float:
        """One update of the synthetic set; returns the loss."""
        raise NotImplementedError

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def eval_lr(self, default: Optional[float] = None) -> Optional[float]:
        """The learning rate evaluation networks train with (``default``: --lr_net)."""
        return default

    def metrics(self) -> dict:
        return {}
