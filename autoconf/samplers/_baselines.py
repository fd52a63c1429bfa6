"""Baseline samplers the benchmark compares against: ``random``, ``tpe``, ``gp``, ``grid`` and
``transfer``.

``random``, ``tpe`` and ``gp`` are Optuna's own samplers, the latter two told the objective's
constraint (``violation`` attr, see ``autoconf._record``) so that they learn where configs are
infeasible. ``grid`` is Optuna's GridSampler: every config once, in an order shuffled by the
seed. ``transfer`` is a static order, best first by mean rank over the training models (the
context's history), with no adaptivity: the baseline any learned prior must beat.
"""

from __future__ import annotations

import contextlib
import random
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState
from scipy.stats import rankdata

from .._record import config_of, violation_of
from .._types import Config
from . import ModelTable, SamplerContext


def make_random(context: SamplerContext) -> BaseSampler:
    return optuna.samplers.RandomSampler(seed=context.seed)


def make_tpe(context: SamplerContext) -> BaseSampler:
    with _no_deprecation_warning():
        return optuna.samplers.TPESampler(seed=context.seed, constraints_func=_constraints(context))


def make_gp(context: SamplerContext) -> BaseSampler:
    with _no_deprecation_warning():
        return optuna.samplers.GPSampler(
            seed=context.seed,
            constraints_func=_constraints(context),
            deterministic_objective=False,
            warn_independent_sampling=False,
        )


@contextlib.contextmanager
def _no_deprecation_warning() -> Iterator[None]:
    """Optuna 5 deprecates ``constraints_func`` but still honours it; Optuna 4's samplers read
    constraints only through it. It rewrites the value the trial record already stored."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        yield


def make_grid(context: SamplerContext) -> BaseSampler:
    space = context.space
    return optuna.samplers.GridSampler(
        {d: space.values(d) for d in space.dimension_names}, seed=context.seed
    )


def make_transfer(context: SamplerContext) -> BaseSampler:
    return StaticOrderSampler(transfer_order(context), seed=context.seed)


def _constraints(context: SamplerContext):
    """Constraints only where the objective has any (a SLO or a target load)."""
    return violation_of if context.objective.constrained else None


def mean_rank_scores(configs: Sequence[Config], tables: Sequence[ModelTable]) -> np.ndarray:
    """Each config's mean rank (0 = best) over ``tables``; infeasible or missing configs share the
    worst rank, equal values share their average rank."""
    n = len(configs)
    ranks = np.zeros(n)
    for table in tables:
        sign = 1.0 if table.objective.direction == "minimize" else -1.0
        keys = np.full(n, np.inf)
        for i, c in enumerate(configs):
            m = table.results.get(c)
            value = None if m is None else table.objective.value(m)
            if value is not None:
                keys[i] = sign * value
        ranks += rankdata(keys, method="average") - 1  # ties share a rank (inf: all worst)
    return ranks / max(len(tables), 1)


def transfer_order(context: SamplerContext) -> list[Config]:
    """The space's configs, best mean rank over the history first (space order without one)."""
    configs = context.space.configs()
    if not context.history:
        return configs
    scores = mean_rank_scores(configs, context.history)
    return [configs[i] for i in np.argsort(scores, kind="stable")]


class StaticOrderSampler(BaseSampler):
    """Suggests the first config of a fixed order that the study has not measured yet."""

    def __init__(self, order: Sequence[Config], seed: int = 0) -> None:
        self._order = list(order)
        self._rng = random.Random(seed)

    def infer_relative_search_space(
        self, study: Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return {}

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        seen = {
            config_of(t) for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        }
        self._next = next((c.to_dict() for c in self._order if c not in seen), None)

    def sample_independent(
        self,
        study: Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        nxt = getattr(self, "_next", None)
        if nxt is not None and param_name in nxt:
            return nxt[param_name]
        return self._rng.choice(param_distribution.choices)  # type: ignore[attr-defined]
