"""The meta sampler's acquisition: which unmeasured config to measure next."""

from __future__ import annotations

import numpy as np

from ._posterior import Posterior, PosteriorState, objective_sign

#: At a target load, the cheapest config with at least this probability of serving it is
#: measured next (1.0: plain constrained EI).
FEASIBLE_ENOUGH = 0.5
#: At a target load the expected improvement weighs the probability of serving the load this many
#: times: a failed stress test only rules its own config out (its cost was known beforehand),
#: so a cheap config with little chance of serving is worth less than EI's single factor says.
#: Measured (meta only, shipped knowledge; results/shipped/README.md): 1 -> 2 took the held-out
#: zoo families' p90 from 16 to 15 and 14 real unseen architectures' from 22 to 15 (max 43 ->
#: 28); 3 and 4 were worse.
FEASIBILITY_POWER = 2.0
#: Without a target load the acquisition is the upper bound mean + UCB_BETA * sd: measured on
#: the Falcon tables it beats the probability of the maximum, which over-explores when the
#: residual is per-config noise (results/meta/README.md).
UCB_BETA = 0.3


def acquisition(posterior: Posterior, state: PosteriorState) -> np.ndarray:
    """Score of each config (higher = suggest first); -inf where not suggestible.

    At a target load: the expected improvement in cost times the probability that the config
    serves the load (to the power ``FEASIBILITY_POWER``), except that the cheapest config likely
    (``FEASIBLE_ENOUGH``) to serve it comes first. Without one: the upper bound ``mean + UCB_BETA * sd``, among the one-knob
    neighbours of a surprise first (:meth:`Posterior.surprise_neighbourhood`): where the
    residuals are independent per config, a config far above the fit is the only sign of a
    block of good configs that the prior and the main effects cannot see (the Falcon tables'
    hot blocks, e.g. lstm's K80 block).
    """
    free = posterior.free(state)
    out = np.full(len(free), -np.inf)
    if not free.any():
        return out
    model = posterior.model
    if model.capacity:
        p = posterior.feasibility(state)
        best = state.best
        ref = best if best is not None else float(model.cost.max()) * 1.0001
        gain = np.maximum(ref - model.cost, 0.0)
        acq = gain * p**FEASIBILITY_POWER + 1e-12 * p
        likely = free & (p >= FEASIBLE_ENOUGH) & (gain > 0)
        if FEASIBLE_ENOUGH < 1.0 and likely.any():
            # the cheapest config the posterior expects to serve the load: verify it
            acq = np.where(likely, 1.0 + model.cost.max() - model.cost, acq * 1e-9)
        out[free] = acq[free]
        return out
    sign = objective_sign(posterior.objective)
    m = sign * state.mean[model.unit_of]
    s = state.sd[model.unit_of]
    ucb = m + UCB_BETA * s
    near = posterior.surprise_neighbourhood(state)
    if near is not None and (near[free] > 0).any():
        # next to a surprise first, and next to surprises in more dimensions before that
        free = free & (near == near[free].max())
    out[free] = ucb[free]
    return out
