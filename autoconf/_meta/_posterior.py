"""The posterior of a study: the surrogate refit on the study's trials, read from the trial
record at every call (no state kept between trials, so threads and processes sharing a storage
see the same history)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import optuna
from optuna.trial import TrialState
from scipy.special import ndtr

from .. import _record as record
from .._implied import ConfigArrays, ImpliedFailures
from .._noise import relative_sd
from .._objective import THROUGHPUT_TOLERANCE, Objective
from .._space import SearchSpace
from .._types import Config, Measurement
from ..prior import CAPACITY_FLOOR_RPS, FLOOR_SCORE, measurement_score
from ._surrogate import Surrogate

#: A measurement this many residual sds above the surrogate's fit is a surprise whose
#: neighbours are measured next (no target load): on the Falcon tables the background's noise
#: never reaches it, the configs of a table's own hot block do.
SURPRISE_Z = 2.0


@dataclass
class PosteriorState:
    """What a study says about every config: its measured and pending configs (indices into
    the space's configs), the posterior ``mean`` and ``sd`` per unit, and the best feasible
    objective value measured (None: nothing feasible yet). ``ruled_out`` marks the configs an
    out-of-memory measured so far implies fail (:mod:`autoconf._implied`): never suggested."""

    measured: dict[int, Measurement]
    pending: set[int]
    mean: np.ndarray
    sd: np.ndarray
    best: float | None
    ruled_out: np.ndarray | None = None
    #: P(config serves the target load within the SLO), read-only (None without a target
    #: load): made with the state, since the acquisition and the stopping rule's three figures
    #: all read it (:meth:`Posterior.feasibility`)
    feasible_p: np.ndarray | None = field(default=None, repr=False)


def objective_sign(objective: Objective) -> float:
    return 1.0 if objective.direction == "maximize" else -1.0


class Posterior:
    """The surrogate of one search space and objective, refit on a study's trials."""

    def __init__(
        self,
        space: SearchSpace,
        objective: Objective,
        prior=None,
        target_features: np.ndarray | None = None,
    ) -> None:
        self.objective = objective
        self.model = Surrogate(space, objective, prior, target_features)
        self.arrays = ConfigArrays(space, self.model.configs)

    def state(self, study: optuna.Study, exclude_trial: int | None = None) -> PosteriorState:
        """Observations from the study: measured configs, pending configs, the posterior."""
        model = self.model
        measured: dict[int, Measurement] = {}
        pending: set[int] = set()
        for t in study.get_trials(deepcopy=False):
            if t.number == exclude_trial or not t.params:
                continue
            try:
                i = model.index.get(record.config_of(t))
            except (TypeError, ValueError):
                continue
            if i is None:
                continue
            if t.state == TrialState.COMPLETE:
                m = record.measurement_of(t)
                if m is not None:
                    measured.setdefault(i, m)
            elif t.state == TrialState.RUNNING:
                pending.add(i)
        pending -= set(measured)
        return self._fit(measured, pending)

    def observations(
        self, measured: dict[int, Measurement]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """What the surrogate regresses on: the units of the measured configs, their scores, and
        each one's own noise variance (None when every answer is exact: tables, simulator)."""
        model = self.model
        units, ys, obs_var = [], [], []
        for i, m in measured.items():
            if model.capacity and not m.ok:
                # a failed deployment is not a capacity to regress on (it would drag every
                # unit sharing its batch size or GPU down); the units an out-of-memory rules
                # out are marked failed in _fit, a crash or timeout implies nothing
                continue
            s = self.score(model.configs[i], m)
            if s is not None:
                units.append(model.unit_of[i])
                ys.append(s)
                obs_var.append(self.score_variance(s, m))
        ov = np.array(obs_var, dtype=float) if any(v > 0 for v in obs_var) else None
        return np.array(units, dtype=int), np.array(ys, dtype=float), ov

    def _fit(self, measured: dict[int, Measurement], pending: set[int]) -> PosteriorState:
        model = self.model
        implied = ImpliedFailures.of(
            model.space, ((-1, model.configs[i], m) for i, m in measured.items())
        )
        ruled_out = implied.mask(self.arrays) if implied else np.zeros(len(model.configs), bool)
        best = None
        for m in measured.values():
            value = self.objective.value(m)
            if value is not None and (best is None or self.objective.better(value, best)):
                best = value
        units_a, y_a, ov = self.observations(measured)
        mean, sd = model.fit(units_a, y_a, ov)
        if pending:  # constant liar: pending configs told their posterior mean
            pu = np.array([model.unit_of[i] for i in pending], dtype=int)
            pv = None if ov is None else np.concatenate([ov, np.zeros(len(pu))])
            mean, sd = model.fit(np.concatenate([units_a, pu]), np.concatenate([y_a, mean[pu]]), pv)
        if model.capacity and ruled_out.any():
            fu = np.unique(model.unit_of[ruled_out])
            mean[fu] = math.log(CAPACITY_FLOOR_RPS)
            sd[fu] = 1e-3
        state = PosteriorState(measured, pending, mean, sd, best, ruled_out)
        if model.capacity:
            state.feasible_p = self._feasible_p(state)
        return state

    def score(self, config: Config, m: Measurement) -> float | None:
        """What the surrogate regresses on (the score a prior row holds,
        :func:`autoconf.prior.measurement_score`): log capacity per replica at a target load,
        else the objective (rps per dollar without an SLO)."""
        kind = "log_capacity" if self.model.capacity else "value"
        return measurement_score(kind, config, m, self.objective)

    def score_variance(self, score: float, m: Measurement) -> float:
        """The noise variance of a measurement's score (:func:`autoconf._noise.relative_sd`;
        the score is a log at a target load, a rate per dollar otherwise)."""
        rsd = relative_sd(m)
        if rsd == 0.0:
            return 0.0
        return rsd**2 if self.model.capacity else (rsd * score) ** 2

    def incumbent(self, state: PosteriorState) -> int | None:
        """The index of the measured config holding the best value (first measured on ties)."""
        for i, m in state.measured.items():
            value = self.objective.value(m)
            if value is not None and value == state.best:
                return i
        return None

    def surprise_neighbourhood(self, state: PosteriorState) -> np.ndarray | None:
        """Per config, in how many dimensions it is one knob away from a measured config that
        scored more than ``SURPRISE_Z`` residual sds above the surrogate's fit (no target load,
        independent residuals); None where no measurement is a surprise."""
        model = self.model
        units, ys, ov = self.observations(state.measured)
        z = model.surprise_z(units, ys, ov)
        if z is None:
            return None
        hot = units[objective_sign(self.objective) * z > SURPRISE_Z]
        if not len(hot):
            return None
        return model.neighbours(hot)[model.unit_of]

    def free(self, state: PosteriorState) -> np.ndarray:
        """Configs neither measured, pending nor ruled out by an out-of-memory (suggestible)."""
        free = np.ones(len(self.model.configs), dtype=bool)
        if state.ruled_out is not None:
            free &= ~state.ruled_out
        for i in state.measured:
            free[i] = False
        for i in state.pending:
            free[i] = False
        return free

    def floor_probability(self, state: PosteriorState) -> np.ndarray:
        """P(a unit misses the SLO at any load) given which measured units did
        (:mod:`autoconf._meta._floor`); zeros without a floor model."""
        model = self.model
        if model.floor is None:
            return np.zeros(len(model.unit_configs))
        units, floored = [], []
        for i, m in state.measured.items():
            s = self.score(model.configs[i], m)
            if m.ok and s is not None:  # a failed deployment says nothing of the SLO
                units.append(model.unit_of[i])
                floored.append(s <= FLOOR_SCORE)
        return model.floor.probability(np.array(units, dtype=int), np.array(floored, dtype=bool))

    def feasibility(self, state: PosteriorState) -> np.ndarray:
        """P(config serves the target load within the SLO), read-only: that it meets the SLO at
        all (:meth:`floor_probability`) times that its capacity reaches the load (the
        posterior). Only a capacity objective has it."""
        assert state.feasible_p is not None  # callers ask only a capacity objective
        return state.feasible_p

    def _feasible_p(self, state: PosteriorState) -> np.ndarray:
        model = self.model
        target_rps = self.objective.target_rps
        assert target_rps is not None  # callers ask only a capacity objective (model.capacity)
        need = np.log(target_rps * THROUGHPUT_TOLERANCE / model.replicas)
        m = state.mean[model.unit_of]
        s = state.sd[model.unit_of]
        p = (1.0 - ndtr((need - m) / s)) * (1.0 - self.floor_probability(state)[model.unit_of])
        for i, meas in state.measured.items():
            p[i] = 1.0 if self.objective.value(meas) is not None else 0.0
            rsd = relative_sd(meas)
            if rsd > 0.0 and meas.capacity_rps:
                # a noisy capacity: how likely the true one serves the load
                have = math.log(max(meas.capacity_rps / model.replicas[i], CAPACITY_FLOOR_RPS))
                p[i] = float(ndtr((have - need[i]) / rsd))
        p.flags.writeable = False
        return p
