"""The search's sampler (by name, ``meta`` by default), the space it searches and its stopping
rule.

Without a target load (no ``--qps``) the objective is requests/s per dollar-hour, which replicas
do not change (each replica adds its capacity and its price): the sampler then searches one
replica count, the fewest the space allows, instead of spending trials on the others, and the
plan has that many (``--qps`` sizes replicas for a load)."""

from __future__ import annotations

from typing import Any

import optuna

from .. import _record as record
from .._objective import Objective
from .._record import measured_configs
from .._space import SearchSpace
from ..samplers import SamplerContext, make_sampler
from ..stopping import StoppingContext, StoppingRule, make_stopping_rule, rule_for_sampler

#: The sampler of a search that names none.
DEFAULT_SAMPLER = "meta"
#: The sampler's stopping rule is consulted only after this many configs (of this search).
MIN_EVALUATIONS_BEFORE_STOP = 3


def searched_space(space: SearchSpace, objective: Objective) -> tuple[SearchSpace, str | None]:
    """The space the sampler searches, and a note when it is not ``space``: without a target
    load, replicas fixed at their minimum (see the module docstring)."""
    if objective.replicas_matter or "replicas" not in space.dimensions:
        return space, None
    values = space.values("replicas")
    if len(values) < 2:
        return space, None
    fewest = min(values)
    fixed = space.model_copy(update={"dimensions": {**space.dimensions, "replicas": [fewest]}})
    return fixed, replicas_note(fewest)


def replicas_note(fewest: int) -> str:
    """What the report, the plan and the progress line say about a search without ``--qps``."""
    return (
        f"no --qps: replicas fixed at {fewest} (the fewest the space allows): without a target "
        "load the objective, requests/s per dollar-hour, is the same at any replica count; "
        "pass --qps to size replicas for a load"
    )


def fixed_replicas(space: SearchSpace, objective: Objective) -> int | None:
    """The one replica count a search without a target load searches, else None."""
    if objective.replicas_matter or "replicas" not in space.dimensions:
        return None
    values = space.values("replicas")
    return int(values[0]) if len(values) == 1 else None


def fits_study(study: optuna.Study, space: SearchSpace) -> bool:
    """Whether ``study``'s stored trials were asked over ``space``'s dimensions (a study begun
    by an older autoconf that searched replicas without ``--qps`` was not)."""
    stored = record.stored_distributions(study)
    return all(stored.get(k, d) == d for k, d in record.distributions(space).items())


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
