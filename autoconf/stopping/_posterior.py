"""``meta``: stop when the posterior of the ``meta`` sampler says the incumbent is within 5 % of
the optimum (with confidence ``STOP_CONFIDENCE``) and the remaining expected improvement is
negligible. Without a target load both are calibrated on pseudo-searches of the training models
(:mod:`autoconf.stopping._calibration`); at a target load they come from the capacity
posterior."""

from __future__ import annotations

import math

import numpy as np
import optuna
from scipy.special import ndtr

from .._meta import Posterior, PosteriorState, objective_sign
from .._noise import relative_sd
from ._base import StoppingContext, StoppingRule
from ._calibration import STOP_WITHIN, pseudo_search_states

#: The stopping rule's confidence is the within-5% rate of this many training states with the
#: nearest predicted gap (at least; 5% of the states when there are more).
STOP_NEIGHBOURS = 50
#: Stop when the confidence that the incumbent is within 5% of the optimum reaches this...
STOP_CONFIDENCE = 0.95
#: ...and the best remaining expected improvement is below this fraction of the incumbent.
STOP_EI_FRACTION = 0.005


def make(context: StoppingContext) -> PosteriorStoppingRule:
    posterior = getattr(context.sampler, "posterior", None)
    if not isinstance(posterior, Posterior):
        raise ValueError("the meta stopping rule needs a sampler with a meta posterior")
    return PosteriorStoppingRule(posterior)


class PosteriorStoppingRule(StoppingRule):
    def __init__(self, posterior: Posterior) -> None:
        self.posterior = posterior
        model = posterior.model
        #: (predicted gap, within 5 %, regret) of pseudo-search states on the training models
        self.states: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        S = model.prior_matrix
        if S is not None and S.shape[0] >= 3 and not model.capacity:
            self.states = pseudo_search_states(S, objective_sign(posterior.objective))

    @property
    def min_measured_without_prior(self) -> int:
        """Configs measured before a search without a prior may stop: one more than the
        parameters of its main-effects model (each searched dimension's values but one).
        Without training models nothing calibrates its uncertainty, and below that count the
        fit is confident about effects it has not seen (it stopped after 3 configs at 19-32 %
        of the optimum, results/search/no_qps_prior.md)."""
        model = self.posterior.model
        return 1 + sum(max(len(model.space.values(d)) - 1, 0) for d in model.unit_dims)

    def should_terminate(self, study: optuna.Study) -> bool:
        """True when the remaining expected improvement is negligible and the incumbent is
        within 5% of the optimum with confidence >= STOP_CONFIDENCE (and, without a prior,
        after :attr:`min_measured_without_prior` configs)."""
        state = self.posterior.state(study)
        best = state.best
        if best is None:
            return False
        no_prior = self.posterior.model.prior_matrix is None
        if no_prior and len(state.measured) < self.min_measured_without_prior:
            return False
        if self.expected_improvement(state) > STOP_EI_FRACTION * abs(best):
            return False
        return self.confidence_of(state) >= STOP_CONFIDENCE

    def confidence(self, study: optuna.Study) -> float:
        """P(the incumbent is within 5% of the optimum), under the posterior (independent
        marginals); 0.0 without a feasible incumbent."""
        return self.confidence_of(self.posterior.state(study))

    def confidence_of(self, state: PosteriorState) -> float:
        """P(within 5 %) of the incumbent as measured, times :meth:`incumbent_trust`."""
        confidence = self._confidence_as_measured(state)
        trust = self.incumbent_trust(state)
        return confidence if trust == 1.0 else confidence * trust

    def incumbent_trust(self, state: PosteriorState) -> float:
        """P(the incumbent is what its measurement says): 1.0 for an exact answer (tables, the
        simulator); for a noisy live measurement (:mod:`autoconf._noise`), at a target load the
        probability that its capacity truly serves the load, else that its true value is no
        more than 5 % below the measured one."""
        posterior = self.posterior
        i = posterior.incumbent(state)
        if i is None:
            return 1.0
        m = state.measured[i]
        rsd = relative_sd(m)
        if rsd == 0.0:
            return 1.0
        if posterior.model.capacity and m.capacity_rps:
            return float(posterior.feasibility(state)[i])
        return float(ndtr(-math.log1p(-STOP_WITHIN) / rsd))

    def _confidence_as_measured(self, state: PosteriorState) -> float:
        best = state.best
        if best is None:
            return 0.0
        posterior = self.posterior
        free = posterior.free(state)
        model = posterior.model
        if model.capacity:
            threat = free & (model.cost < best / (1.0 + STOP_WITHIN))
            if not threat.any():
                return 1.0
            p = posterior.feasibility(state)
            return float(np.exp(np.sum(np.log1p(-np.clip(p[threat], 0, 1 - 1e-12)))))
        units = model.unit_of[free]
        m = state.mean[units]
        s = state.sd[units]
        sign = objective_sign(posterior.objective)
        if self.states is not None and len(units):
            # calibrated on the training models: the within-5% rate of pseudo-search states
            # whose predicted gap (best unmeasured prediction vs incumbent) is nearest to ours
            return float(self.states[1][self._similar_states(state, units)].mean())
        bound = best * (1.0 + 0.05 * sign) if best >= 0 else best * (1.0 - 0.05 * sign)
        z = sign * (bound - m) / s  # a config threatens the incumbent above z (in sd units)
        p_exceed = model.tail.sf(units, z) if model.tail is not None else 1.0 - ndtr(z)
        return float(np.exp(np.sum(np.log1p(-np.clip(p_exceed, 0.0, 1.0 - 1e-12)))))

    def expected_improvement(self, state: PosteriorState) -> float:
        """The best remaining expected improvement over the incumbent (objective units)."""
        best = state.best
        posterior = self.posterior
        free = posterior.free(state)
        if best is None or not free.any():
            return math.inf if best is None else 0.0
        model = posterior.model
        if model.capacity:
            p = posterior.feasibility(state)
            return float(np.max(np.maximum(best - model.cost, 0.0)[free] * p[free]))
        sign = objective_sign(posterior.objective)
        units = model.unit_of[free]
        if self.states is not None:
            # calibrated: the mean regret of similar pseudo-search states on training models
            return float(self.states[2][self._similar_states(state, units)].mean()) * abs(best)
        m = sign * state.mean[units]
        s = state.sd[units]
        z0 = (sign * best - m) / s
        if model.tail is not None:
            ei = s * model.tail.partial(units, z0)
        else:
            ei = s * (np.exp(-0.5 * z0 * z0) / math.sqrt(2 * math.pi) - z0 * (1.0 - ndtr(z0)))
        return float(ei.max())

    def _similar_states(self, state: PosteriorState, units: np.ndarray) -> np.ndarray:
        """Indices of the training pseudo-search states whose predicted gap (best unmeasured
        prediction vs incumbent, relative) is nearest to this study's."""
        sign = objective_sign(self.posterior.objective)
        best = state.best
        assert best is not None  # callers come here with an incumbent
        gap = (float(np.max(sign * state.mean[units])) - sign * best) / max(abs(best), 1e-12)
        return self._nearest_states(gap)

    def _nearest_states(self, x: float) -> np.ndarray:
        """Indices of the (finite) calibration states nearest to ``x``."""
        assert self.states is not None  # callers come here with calibration states
        xs = self.states[0]
        idx = np.flatnonzero(np.isfinite(xs))
        if not len(idx):
            return np.arange(len(xs))
        n = min(len(idx), max(STOP_NEIGHBOURS, len(idx) // 20))
        return idx[np.argpartition(np.abs(xs[idx] - x), n - 1)[:n]]
