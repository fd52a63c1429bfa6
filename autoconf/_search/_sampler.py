"""The search's sampler (by name, ``meta`` by default) and its stopping rule."""

from __future__ import annotations

from typing import Any

import optuna

from .._objective import Objective
from .._record import measured_configs
from .._space import SearchSpace
from ..samplers import SamplerContext, make_sampler
from ..stopping import StoppingContext, StoppingRule, make_stopping_rule, rule_for_sampler

#: The sampler of a search that names none.
DEFAULT_SAMPLER = "meta"
#: The sampler's stopping rule is consulted only after this many configs (of this search).
MIN_EVALUATIONS_BEFORE_STOP = 3


def make_search_sampler(
    name: str | None,
    space: SearchSpace,
    objective: Objective,
    seed: int,
    features: Any = None,
    history: list[Any] | None = None,
) -> tuple[optuna.samplers.BaseSampler, str]:
    """The registered sampler ``name`` (default: meta) and its name."""
    chosen = name or DEFAULT_SAMPLER
    ctx = SamplerContext(
        space=space,
        objective=objective,
        seed=seed,
        target_features=features,
        history=list(history or []),
    )
    return make_sampler(chosen, ctx), chosen


class SearchStop:
    """The sampler's stopping rule, consulted once the study holds enough measured configs."""

    def __init__(self, sampler_name: str, sampler: Any, objective: Objective) -> None:
        context = StoppingContext(objective=objective, sampler=sampler)
        self.rule: StoppingRule = make_stopping_rule(rule_for_sampler(sampler_name), context)

    def __call__(self, study: optuna.Study) -> bool:
        if len(measured_configs(study)) < MIN_EVALUATIONS_BEFORE_STOP:
            return False
        return self.rule(study)

    def confidence(self, study: optuna.Study) -> float | None:
        return self.rule.confidence(study)
