"""``never``: the search runs its whole budget (every sampler without a rule of its own)."""

from __future__ import annotations

import optuna

from ._base import StoppingContext, StoppingRule


class NeverStop(StoppingRule):
    def should_terminate(self, study: optuna.Study) -> bool:
        return False


def make(context: StoppingContext) -> NeverStop:
    return NeverStop()
