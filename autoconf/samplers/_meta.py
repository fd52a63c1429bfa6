"""The ``meta`` sampler: the Optuna adapter of the prior-mean Bayesian optimization in
:mod:`autoconf._meta` (the math) whose stopping rule is :mod:`autoconf.stopping._posterior`."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler
from optuna.study import Study
from optuna.trial import FrozenTrial

from .._meta import Posterior, PosteriorState, acquisition
from .._objective import Objective
from .._record import distributions
from .._space import SearchSpace
from . import SamplerContext


def make(context: SamplerContext) -> MetaSampler:
    prior = None
    if context.history:
        from ..prior import train_prior

        same = [t for t in context.history if t.space.name == context.space.name]
        prior = train_prior(same or context.history, space=context.space if same else None)
    return MetaSampler(
        context.space, context.objective, prior, context.target_features, context.seed
    )


class MetaSampler(BaseSampler):
    """Prior-mean Bayesian optimization (see :mod:`autoconf._meta`). One config per trial:
    every parameter of a trial comes from one relative suggestion. ``posterior`` is what the
    ``meta`` stopping rule reads."""

    def __init__(
        self,
        space: SearchSpace,
        objective: Objective,
        prior=None,
        target_features: np.ndarray | None = None,
        seed: int = 0,
    ) -> None:
        self.space = space
        self.objective = objective
        self.prior = prior
        self._rng = random.Random(seed)
        self._dists = distributions(space)
        self.posterior = Posterior(space, objective, prior, target_features)

    @property
    def model(self):
        """The surrogate (its units, prior mean and fit)."""
        return self.posterior.model

    def state(self, study: Study, exclude_trial: int | None = None) -> PosteriorState:
        return self.posterior.state(study, exclude_trial)

    # -- Optuna hooks ------------------------------------------------------------------------

    def infer_relative_search_space(
        self, study: Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return dict(self._dists)

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if not search_space:
            return {}
        state = self.posterior.state(study, exclude_trial=trial.number)
        i = self._choose(state)
        if i is None:
            return {}
        return {k: v for k, v in self.model.configs[i].to_dict().items() if k in search_space}

    def sample_independent(
        self,
        study: Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        return self._rng.choice(param_distribution.choices)  # type: ignore[attr-defined]

    def _choose(self, state: PosteriorState) -> int | None:
        """The config of highest acquisition; ties broken by the seeded generator."""
        acq = acquisition(self.posterior, state)
        if not np.isfinite(acq).any():
            return None
        top = np.flatnonzero(acq == acq.max())
        return int(top[0]) if len(top) == 1 else int(self._rng.choice(list(top)))
