"""The stopping-rule extension point: when a search may end before its budget is spent."""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.terminator import BaseTerminator

from .._objective import Objective


@dataclass
class StoppingContext:
    """What a rule factory may use: the objective and the study's sampler (a rule that reads a
    sampler's posterior asks it for one)."""

    objective: Objective
    sampler: Any = None


class StoppingRule(BaseTerminator):
    """Decides after every evaluation whether the search has found what it can. An Optuna
    terminator, so it also serves ``optuna.terminator.TerminatorCallback``."""

    @abc.abstractmethod
    def should_terminate(self, study: optuna.Study) -> bool:
        """True when the search may stop now."""

    def confidence(self, study: optuna.Study) -> float | None:
        """P(the incumbent is within 5 % of the optimum), where the rule knows it; else None
        (shown in the live display)."""
        return None

    def __call__(self, study: optuna.Study) -> bool:
        return bool(self.should_terminate(study))
