"""The ``meta`` sampler: Bayesian optimization over a discrete space with a learned prior.

The surrogate is a Bayesian linear model of a config's *score* (see ``autoconf.prior``)::

    score(c) = mu(c) + b0 + b1 * mu(c) + b2 * g(c) + sum_k w_k * D_k(c) + sum_d v_d[c_d] + e(c)

``mu`` is the prior's mean over the training models, ``g`` what a regression on the target's
kops features and the configs' GPU specs predicts (``Prior.predict_from_features``; its weight
``b2`` learned from the target's measurements), ``D_k`` each training model's deviation from
``mu``: the posterior over ``w`` re-weights the training models by how well they explain the
target's observations so far (a Gaussian process whose kernel is the empirical covariance across
models). ``v`` are main effects of each dimension's values (what a plain BO learns when the
knowledge base is empty) and ``e`` a per-config residual whose variance is the training models'
leave-one-out residual variance at that prior level (heteroscedastic, so the tail is covered).
Where the training models' residuals correlate between units that differ in one knob (on the
simulated cluster: the same unit on a neighbouring GPU type), ``e`` is a Gaussian process
whose kernel is that learned correlation (:class:`_ResidualKernel`), so a measurement also
informs the units that share most of its knobs; elsewhere (the Falcon tables) it stays
independent.
The posterior is refit from the study's trials at every suggestion (no state kept between
trials, so threads and processes sharing a storage see the same history).

Acquisition:

* without a target load (maximise the score): the probability that a config beats every other
  unmeasured one and the incumbent (its posterior marginals, integrated on a grid);
* at a target load (minimise cost): the score is one replica's log capacity at the SLO, modelled
  per *base config* (every dimension but replicas). The replicas a load needs follow from it
  (throughput is about linear in replicas), cost is known in advance, so the acquisition is the
  expected improvement in cost times the probability that the config serves the load.

Running trials are pending: they are never re-suggested and are told their posterior mean
(constant liar), so that K parallel workers spread out. Measured configs are never suggested.
"""

from __future__ import annotations

import math
import random
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState
from scipy.special import ndtr

from .._objective import THROUGHPUT_TOLERANCE, Objective
from .._space import SearchSpace
from .._study import config_of, distributions
from .._types import Config, Measurement
from . import SamplerContext

#: Capacities below this (requests/s per replica) are modelled as this: a config that cannot meet
#: the SLO at any load says nothing about how far it is from meeting it.
CAPACITY_FLOOR_RPS = 1.0
#: Relative sd (of the mean residual sd) left on a unit once it is measured.
MEASUREMENT_NOISE = 0.1
#: Prior variance of each dimension value's effect on the target's deviation, relative to the
#: mean residual variance: what lets observations of some T4 configs speak for the other T4s.
MAIN_EFFECT_VARIANCE = 1.0
#: At a target load, the cheapest config with at least this probability of serving it is
#: measured next (1.0: plain constrained EI).
FEASIBLE_ENOUGH = 0.5
#: Prior variance (times 1/K) of each training model's weight in the target's deviation.
MODEL_WEIGHT_VARIANCE = 1.0
#: Ridge penalty of the main effects fitted to each training model when estimating the per-unit
#: residual variance.
RESIDUAL_RIDGE = 1.0
#: Candidate factors on the model level's prior variance (chosen by the target's evidence).
LEVEL_INFLATIONS = (1.0, 4.0, 16.0, 64.0)
#: The stopping rule's tolerance: the incumbent within this fraction of the optimum.
STOP_WITHIN = 0.05
#: Prior variance of the coefficient on the feature prediction (1: the target may follow it
#: fully, or not at all).
FEATURE_PREDICTION_VARIANCE = 1.0
#: A residual correlation between two values of a dimension needs this many unit pairs.
KERNEL_MIN_PAIRS = 30
#: Below this correlation in every dimension the residuals are modelled as independent.
KERNEL_MIN_CORRELATION = 0.2
#: Lower bound of the residual kernel's variance scale calibrated on the target's own
#: leave-one-out errors (measured units cluster, so their errors understate the others').
LOO_SCALE_MIN = 0.05
#: Pseudo-search depth per training model when calibrating the stopping rule.
STOP_STATE_DEPTH = 100
#: The stopping rule's confidence is the within-5% rate of this many training states with the
#: nearest predicted gap (at least; 5% of the states when there are more).
STOP_NEIGHBOURS = 50
#: Grid points of the probability-of-maximum integral.
GRID_POINTS = 256
#: At most this many candidates enter the probability-of-maximum integral (by upper bound).
MAX_CANDIDATES = 1500
#: Without a target load the acquisition is the upper bound mean + UCB_BETA * sd: measured on
#: the Falcon tables it beats the probability of the maximum ("pmax"), which over-explores
#: when the residual is per-config noise (results/meta/README.md).
UCB_BETA = 0.3
#: Stop when the confidence that the incumbent is within 5% of the optimum reaches this...
STOP_CONFIDENCE = 0.95
#: ...and the best remaining expected improvement is below this fraction of the incumbent.
STOP_EI_FRACTION = 0.005


def make(context: SamplerContext) -> MetaSampler:
    prior = None
    if context.history:
        from ..prior import train_prior

        same = [t for t in context.history if t.space.name == context.space.name]
        prior = train_prior(same or context.history, space=context.space if same else None)
    return MetaSampler(
        context.space, context.objective, prior, context.target_features, context.seed
    )


class _Surrogate:
    """The Bayesian linear model over the space's units (configs, or base configs)."""

    def __init__(self, space: SearchSpace, objective: Objective, prior, target_features) -> None:
        self.space = space
        self.objective = objective
        self.configs = space.configs()
        self.index = {c: i for i, c in enumerate(self.configs)}
        self.capacity = objective.target_rps is not None
        #: correlation of the per-unit residual between units (None: independent)
        self.kernel: _ResidualKernel | None = None
        #: (gap, within 5%) of pseudo-search states on the training models (stopping rule)
        self.stop_states: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        dims = space.dimension_names
        per_base = self.capacity and "replicas" in dims and len(space.values("replicas")) > 1
        self.unit_dims = [d for d in dims if not (per_base and d == "replicas")]
        units: dict[tuple, int] = {}
        self.unit_of = np.empty(len(self.configs), dtype=int)
        unit_configs: list[Config] = []
        for i, c in enumerate(self.configs):
            key = tuple(getattr(c, d) for d in self.unit_dims)
            if key not in units:
                units[key] = len(units)
                unit_configs.append(
                    Config.from_dict({**c.to_dict(), "replicas": 1}) if per_base else c
                )
            self.unit_of[i] = units[key]
        self.unit_configs = unit_configs
        self.replicas = np.array([c.replicas for c in self.configs], dtype=float)
        self.cost = np.array([space.cost_per_hour(c) for c in self.configs])
        self._build_features(prior, target_features)

    def _build_features(self, prior, target_features) -> None:
        U = len(self.unit_configs)
        use_prior = prior is not None and prior.kind == (
            "log_capacity" if self.capacity else "value"
        )
        if use_prior:
            S = prior.matrix_for(self.space, self.unit_configs)  # K x U
            K = S.shape[0]
            weights = np.full(K, 1.0 / K)
            if target_features is not None and prior.model_features is not None:
                f = np.asarray(target_features, dtype=float)
                F = prior.model_features
                if F.shape[1] == f.shape[0]:
                    scale = F.std(0) + 1e-9
                    d2 = (((F - f) / scale) ** 2).mean(1)
                    weights = np.exp(-0.5 * d2 / max(np.median(d2), 1e-9))
                    weights /= weights.sum()
            mu = weights @ S
            D = S - mu
            # the level of a model (b0 in the surrogate) is not a config deviation
            offsets = D.mean(1)
            D = D - offsets[:, None]
            self.level_sd = float(np.sqrt(np.mean(offsets**2))) + 1e-3
            # leave-one-out residual after each model's own level and slope, binned by prior
            # level (heteroscedastic noise): what the surrogate cannot explain
            if K >= 3:
                # the per-unit residual is what is left after everything the surrogate fits to a
                # target (level, slope, main effects): counting the main effects in it too would
                # let one measurement move the unit itself instead of the shared level
                Hm = _onehots(self.space, self.unit_dims, self.unit_configs)
                loo = np.empty_like(S)
                slopes = np.empty(K)
                for k in range(K):
                    rest = (S.sum(0) - S[k]) / (K - 1)
                    X = np.hstack([np.ones((U, 1)), rest[:, None], Hm])
                    G = X.T @ X + RESIDUAL_RIDGE * np.diag([0.0, 0.0] + [1.0] * Hm.shape[1])
                    coef = np.linalg.solve(G, X.T @ S[k])
                    loo[k] = S[k] - X @ coef
                    slopes[k] = coef[1]
                noise, self.tail = _binned_variance(mu, loo, robust=self.capacity)
                floor = math.log(CAPACITY_FLOOR_RPS) + 1e-6
                informative = np.greater(S, floor) if self.capacity else None
                self.kernel = _ResidualKernel.learn(
                    self.space, self.unit_dims, self.unit_configs, loo / np.sqrt(noise), informative
                )
                self.slope_var = float(np.mean((slopes - 1.0) ** 2)) + 1e-4
            else:
                noise = np.full(U, max(float(D.var()), 1e-6) + 1e-6)
            self.n_models = K
            if K >= 3 and not self.capacity:
                self.stop_states = _stop_states(
                    S, 1.0 if objective_sign(self.objective) > 0 else -1.0
                )
            if K < 3:
                self.slope_var = 0.25
        else:
            self.slope_var = 0.25
            mu = np.zeros(U)
            D = np.zeros((0, U))
            noise = None
            self.level_sd = 1.0
            self.n_models = 0
        self.mu = mu
        # one-hot main effects of every unit dimension with more than one value
        H = _onehots(self.space, self.unit_dims, self.unit_configs)
        self.H = H
        # prior variance of a main effect: how large they are in the training deviations
        self.effect_var = None
        if use_prior and H.shape[1] and D.shape[0]:
            G = H.T @ H + 1e-3 * U * np.eye(H.shape[1])
            coef = np.linalg.solve(G, H.T @ D.T)  # columns x K
            self.effect_var = float(np.mean(coef**2)) + 1e-12
        self.D = D.T  # U x K
        #: what the target's kops features predict (centred), a basis of the surrogate; None
        #: without features
        self.from_features = None
        if use_prior:
            pred = prior.predict_from_features(self.space, self.unit_configs, target_features)
            if pred is not None:
                self.from_features = pred - pred.mean()
        self.noise = noise  # None: estimated from the target's observations
        if noise is None or not hasattr(self, "tail"):
            self.tail = None

    def failure_implied(self, config: Config, m: Measurement) -> list[int]:
        """Units a failed measurement rules out: its own, and for an out-of-memory error every
        unit on the same GPU type with at least its batch size and instances per GPU."""
        key = self.unit_of[self.index[config]]
        out = [int(key)]
        if "memory" in (m.error or "").lower():
            inst = config.instances_per_gpu or 1
            for u, c in enumerate(self.unit_configs):
                if (
                    c.gpu_type == config.gpu_type
                    and c.batch_size >= config.batch_size
                    and (c.instances_per_gpu or 1) >= inst
                    and (c.gpu_mem_gb or 0) <= (config.gpu_mem_gb or 0)
                    and (c.gpu_share_pct or 100) <= (config.gpu_share_pct or 100)
                ):
                    out.append(u)
        return out

    def fit(self, units: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and sd of every unit's score given observations ``y`` at ``units``."""
        U = len(self.mu)
        K = self.D.shape[1]
        has_prior = K > 0
        if has_prior:
            base = self.mu
            centred = self.mu - self.mu.mean()
            cols = [np.ones((U, 1)), centred[:, None], self.D, self.H]
            if self.from_features is not None:
                cols.append(self.from_features[:, None])
            v_b0 = self.level_sd**2
            v_h = MAIN_EFFECT_VARIANCE * (
                self.effect_var if self.effect_var is not None else float(np.mean(self.noise))
            )
            var = np.concatenate(
                [
                    [v_b0],
                    [self.slope_var],
                    np.full(K, MODEL_WEIGHT_VARIANCE / K),
                    np.full(self.H.shape[1], v_h),
                    [FEATURE_PREDICTION_VARIANCE] if self.from_features is not None else [],
                ]
            )
            noise = self.noise
        else:
            base = np.zeros(U)
            yc = y if len(y) else np.zeros(1)
            spread = float(np.var(yc)) if len(y) > 1 else 1.0
            spread = max(spread, 1e-6)
            level = float(np.mean(yc)) if len(y) else 0.0
            base = base + level
            cols = [np.ones((U, 1)), self.H]
            var = np.concatenate([[spread], np.full(self.H.shape[1], spread / 2)])
            noise = np.full(U, 0.1 * spread)
        Phi = np.hstack(cols)
        if len(units) == 0:
            m = base.copy()
            v = (Phi**2) @ var + noise
            return m, np.sqrt(v)
        P = Phi[units]
        r = y - base[units]
        if has_prior and self.kernel is not None:
            return self._fit_correlated(Phi, var, noise, base, units, y)
        if has_prior:
            var = var.copy()
            var[0] *= _level_inflation(P, r, var, np.diag(noise[units]))
        # the residual e(u) is a property of the unit, not observation noise: a measured unit
        # is known up to MEASUREMENT_NOISE (its other replica counts follow from it), and
        # the residual scale is calibrated on the target's own observations
        scale = 1.0
        for _ in range(2):
            nz = noise[units] * scale
            A = (P.T / nz) @ P + np.diag(1.0 / var)
            L = np.linalg.cholesky(A)
            w = np.linalg.solve(A, P.T @ (r / nz))
            if len(units) < 3 or not self.capacity:
                break
            z2 = (r - P @ w) ** 2 / noise[units]
            scale = float(np.clip((z2.sum() + 2.0) / (len(units) + 2.0), 0.05, 4.0))
        noise = noise * scale
        m = base + Phi @ w
        V = np.linalg.solve(L, Phi.T)
        v = (V**2).sum(0) + noise
        return _pin_measured(m, v, units, y, noise)

    def _fit_correlated(
        self,
        Phi: np.ndarray,
        var: np.ndarray,
        noise: np.ndarray,
        base: np.ndarray,
        units: np.ndarray,
        y: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`fit` with the per-unit residual a Gaussian process over units (the learned
        :class:`_ResidualKernel`): a measurement also moves the units that share most of its
        knobs. Function-space form, so the cost is linear in the number of units."""
        U = len(base)
        r = y - base[units]
        sd = np.sqrt(noise)
        Kuo = self.kernel.cross(np.arange(U), units) * sd[:, None] * sd[units][None, :]
        Koo = Kuo[units]
        nugget = MEASUREMENT_NOISE**2 * float(np.mean(noise))
        var = var.copy()
        var[0] *= _level_inflation(Phi[units], r, var, Koo + nugget * np.eye(len(units)))
        cross = (Phi * var) @ Phi[units].T + Kuo  # U x n
        C = cross[units] + nugget * np.eye(len(units))
        L = np.linalg.cholesky(C)
        alpha = np.linalg.solve(L.T, np.linalg.solve(L, r))
        m = base + cross @ alpha
        A = np.linalg.solve(L, cross.T)  # n x U
        v = np.maximum((Phi**2) @ var + noise - (A**2).sum(0), 1e-9)
        # the covariance's scale, calibrated on the target's own observations by their
        # leave-one-out predictive errors (closed form for a Gaussian process)
        if len(units) >= 3:
            Ci = np.linalg.solve(L.T, np.linalg.solve(L, np.eye(len(units))))
            z2 = alpha**2 / np.diag(Ci)
            v *= float(np.clip((z2.sum() + 2.0) / (len(units) + 2.0), LOO_SCALE_MIN, 4.0))
        return _pin_measured(m, v, units, y, noise)


def _pin_measured(
    m: np.ndarray, v: np.ndarray, units: np.ndarray, y: np.ndarray, noise: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Posterior mean and sd with every measured unit at its measured mean, known up to
    MEASUREMENT_NOISE (its other replica counts follow from it)."""
    seen = np.zeros(len(m), dtype=bool)
    seen[units] = True
    sums = np.bincount(units, weights=y, minlength=len(m))
    counts = np.bincount(units, minlength=len(m))
    m[seen] = sums[seen] / counts[seen]
    v[seen] = MEASUREMENT_NOISE**2 * np.mean(noise)
    return m, np.sqrt(v)


class _ResidualKernel:
    """Correlation of the surrogate's per-unit residual between two units: a product over
    the unit's dimensions of a correlation between the two values, learned from the training
    models' residuals (units that differ in one dimension only). On the simulated cluster a
    T4 unit's residual correlates ~0.9 with the same unit on the next GPU type; on the Falcon
    tables, where the residual is per-config noise, no correlation reaches
    ``KERNEL_MIN_CORRELATION`` and the residuals stay independent."""

    def __init__(self, codes: np.ndarray, matrices: list[np.ndarray]) -> None:
        self.codes = codes  # units x dims: the index of each unit's value per dimension
        self.matrices = matrices  # per dimension: values x values correlation

    @classmethod
    def learn(
        cls,
        space: SearchSpace,
        dims: list[str],
        configs: list[Config],
        z: np.ndarray,
        informative: np.ndarray | None,
    ) -> _ResidualKernel | None:
        """From standardized residuals ``z`` (models x units); ``informative`` masks entries
        that carry no residual (a capacity at the floor). None when no dimension correlates."""
        value_lists = [space.values(d) for d in dims]
        codes = np.array(
            [[vals.index(getattr(c, d)) for d, vals in zip(dims, value_lists)] for c in configs]
        )
        sizes = [len(vals) for vals in value_lists]
        ok = np.ones_like(z, dtype=bool) if informative is None else informative
        matrices = []
        for j, n in enumerate(sizes):
            # units grouped by their values in every other dimension: unit_at[g, a] is the
            # unit of group g with value a in dimension j (-1: not in the space)
            rest = [k for k in range(len(sizes)) if k != j]
            group = np.ravel_multi_index(codes[:, rest].T, [sizes[k] for k in rest])
            groups, group = np.unique(group, return_inverse=True)
            unit_at = np.full((len(groups), n), -1)
            unit_at[group, codes[:, j]] = np.arange(len(codes))
            R = np.eye(n)
            for a in range(n):
                for b in range(a + 1, n):
                    pair = (unit_at[:, a] >= 0) & (unit_at[:, b] >= 0)
                    ia, ib = unit_at[pair, a], unit_at[pair, b]
                    both = ok[:, ia] & ok[:, ib]
                    za, zb = z[:, ia][both], z[:, ib][both]
                    if len(za) < KERNEL_MIN_PAIRS:
                        continue
                    rho = float(np.sum(za * zb) / np.sqrt(np.sum(za**2) * np.sum(zb**2) + 1e-12))
                    R[a, b] = R[b, a] = max(rho, 0.0)
            matrices.append(_nearest_correlation(R))
        if all(np.max(R - np.eye(len(R)), initial=0.0) < KERNEL_MIN_CORRELATION for R in matrices):
            return None
        return cls(codes, matrices)

    def cross(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Correlation between every unit in ``rows`` and every unit in ``cols``."""
        out = np.ones((len(rows), len(cols)))
        for j, R in enumerate(self.matrices):
            out *= R[self.codes[rows, j]][:, self.codes[cols, j]]
        return out


def _nearest_correlation(R: np.ndarray, floor: float = 0.02) -> np.ndarray:
    """A positive-definite correlation matrix near ``R`` (eigenvalues clipped, unit diagonal),
    so that products of them are a valid kernel."""
    w, V = np.linalg.eigh(R)
    R = (V * np.maximum(w, floor)) @ V.T
    d = np.sqrt(np.diag(R))
    return R / d[:, None] / d[None, :]


def objective_sign(objective: Objective) -> float:
    return 1.0 if objective.direction == "maximize" else -1.0


def _stop_states(S: np.ndarray, sign: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """States of pseudo-searches on the training models, for calibrating the stopping rule.

    Each training model in turn is the target: its configs are measured in the order of the
    other models' mean (what the search does before its observations say otherwise), and after
    each measurement the state records the *predicted gap* (the best unmeasured config's
    prediction, the others' mean shifted by the level seen so far, relative to the incumbent)
    , whether the incumbent is truly within 5% of that model's optimum and its relative regret."""
    K, U = S.shape
    gaps, within, regret = [], [], []
    for k in range(K):
        rest = sign * (S.sum(0) - S[k]) / (K - 1)
        y = sign * S[k]
        order = np.argsort(-rest, kind="stable")
        opt = float(y.max())
        bound = opt - STOP_WITHIN * abs(opt)
        inc = -np.inf
        resid = 0.0
        # best unmeasured prediction: the first unmeasured config in the order, found by a
        # running pointer (rest is sorted along the order)
        for n in range(min(U - 1, STOP_STATE_DEPTH)):
            u = order[n]
            inc = max(inc, float(y[u]))
            resid += float(y[u] - rest[u])
            level = resid / (n + 1)
            nxt = float(rest[order[n + 1]]) + level
            gaps.append((nxt - inc) / max(abs(inc), 1e-12))
            within.append(inc >= bound - 1e-12)
            regret.append((opt - inc) / max(abs(inc), 1e-12))
    return np.array(gaps), np.array(within, dtype=float), np.array(regret)


def _level_inflation(P: np.ndarray, r: np.ndarray, var: np.ndarray, resid_cov: np.ndarray) -> float:
    """The factor on the model level's prior variance that maximises the evidence of the
    target's residuals (type-II maximum likelihood over LEVEL_INFLATIONS): the level's spread
    across training models is the default, but a target far outside it (every config 3x faster
    than any training model) widens it, so its first measurements move every prediction."""
    n = len(r)
    if n == 0:
        return 1.0
    base = (P[:, 1:] * var[1:]) @ P[:, 1:].T + resid_cov
    ones = P[:, 0:1] @ P[:, 0:1].T
    best, best_ll = 1.0, -np.inf
    for f in LEVEL_INFLATIONS:
        C = base + f * var[0] * ones
        sign, logdet = np.linalg.slogdet(C)
        if sign <= 0:
            continue
        ll = -0.5 * (logdet + r @ np.linalg.solve(C, r))
        if ll > best_ll + 1e-9:
            best, best_ll = f, ll
    return best


def _onehots(space: SearchSpace, dims: list[str], configs: list[Config]) -> np.ndarray:
    """One-hot columns of every dimension in ``dims`` with more than one value, centred over
    the units: main effects then cannot shift every unit at once, which is the shared level's
    job (the model-level random effect ``b0``), so one measurement moves the level."""
    cols = []
    for d in dims:
        vals = space.values(d)
        if len(vals) < 2:
            continue
        col = np.array([vals.index(getattr(c, d)) for c in configs])
        onehot = np.eye(len(vals))[col]
        cols.append(onehot - onehot.mean(0))
    return np.hstack(cols) if cols else np.zeros((len(configs), 0))


def _binned_variance(
    level: np.ndarray, resid: np.ndarray, bins: int = 20, robust: bool = False
) -> tuple[np.ndarray, _Tail]:
    """Per-unit residual variance (the mean squared residual of units at a similar prior
    level) and the empirical distribution of the standardized residuals per level bin."""
    U = level.shape[0]
    bins = max(1, min(bins, U // 5))
    edges = np.quantile(level, np.linspace(0, 1, bins + 1))
    b = np.clip(np.searchsorted(edges, level, side="right") - 1, 0, bins - 1)
    out = np.empty(U)
    samples = []
    for k in range(bins):
        sel = b == k
        r = resid[:, sel].ravel()
        if not len(r):
            samples.append(np.zeros(1))
            continue
        var = float(np.mean(r**2))
        if robust:  # (MAD) scale: configs that fail outright must not inflate the rest
            mad = float(np.median(np.abs(r - np.median(r))))
            var = max((1.4826 * mad) ** 2, 0.1 * var)
        var = max(var, 1e-12)
        out[sel] = var
        samples.append(r / math.sqrt(var))
    return out, _Tail(b, samples)


class _Tail:
    """Empirical residual distribution per level bin (standardized): the tail probabilities of
    the stopping rule come from what the training models' residuals did, not from a Gaussian
    (bounded residuals make a Gaussian tail far too pessimistic)."""

    def __init__(self, bin_of_unit: np.ndarray, samples: list[np.ndarray]) -> None:
        self.bin_of_unit = bin_of_unit
        self.sorted = [np.sort(z) for z in samples]
        # suffix sums for E[(Z - z0)+]
        self.suffix = [np.concatenate([np.cumsum(z[::-1])[::-1], [0.0]]) for z in self.sorted]

    def sf(self, units: np.ndarray, z0: np.ndarray) -> np.ndarray:
        """P(Z > z0) per unit; beyond the largest sample a decaying 1/(2n) keeps tails possible."""
        out = np.empty(len(units))
        bins = self.bin_of_unit[units]
        for k in np.unique(bins):
            sel = bins == k
            z = self.sorted[k]
            above = len(z) - np.searchsorted(z, z0[sel], side="right")
            beyond = np.exp(-np.maximum(z0[sel] - z[-1], 0.0)) * 0.5
            out[sel] = np.where(above > 0, above, beyond) / len(z)
        return out

    def partial(self, units: np.ndarray, z0: np.ndarray) -> np.ndarray:
        """E[(Z - z0)+] per unit."""
        out = np.empty(len(units))
        bins = self.bin_of_unit[units]
        for k in np.unique(bins):
            sel = bins == k
            z = self.sorted[k]
            i = np.searchsorted(z, z0[sel], side="right")
            out[sel] = (self.suffix[k][i] - (len(z) - i) * z0[sel]) / len(z)
        return out


class MetaSampler(BaseSampler):
    """Prior-mean Bayesian optimization (see the module docstring). One config per trial:
    every parameter of a trial comes from one relative suggestion."""

    def __init__(
        self,
        space: SearchSpace,
        objective: Objective,
        prior=None,
        target_features: np.ndarray | None = None,
        seed: int = 0,
        acquisition: str = "ucb",
    ) -> None:
        self.acquisition_name = acquisition
        self.space = space
        self.objective = objective
        self.prior = prior
        self._rng = random.Random(seed)
        self._dists = distributions(space)
        self.model = _Surrogate(space, objective, prior, target_features)

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
        state = self.state(study, exclude_trial=trial.number)
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

    # -- model state --------------------------------------------------------------------------

    def state(self, study: Study, exclude_trial: int | None = None) -> dict[str, Any]:
        """Observations from the study: measured configs, pending configs, the posterior."""
        model = self.model
        measured: dict[int, Measurement] = {}
        pending: set[int] = set()
        for t in study.get_trials(deepcopy=False):
            if t.number == exclude_trial or not t.params:
                continue
            try:
                i = model.index.get(config_of(t))
            except (TypeError, ValueError):
                continue
            if i is None:
                continue
            if t.state == TrialState.COMPLETE and "measurement" in t.user_attrs:
                if not t.user_attrs.get("repeat"):
                    measured.setdefault(i, Measurement(**t.user_attrs["measurement"]))
            elif t.state == TrialState.RUNNING:
                pending.add(i)
        pending -= set(measured)
        units, ys = [], []
        best = None
        feasible_known: dict[int, bool] = {}
        failed_units: set[int] = set()
        for i, m in measured.items():
            if model.capacity and not m.ok:
                # a failed deployment is not a capacity to regress on (it would drag every
                # unit sharing its batch size or GPU down); its unit, and with an out-of-memory
                # error every unit that needs at least as much memory, is marked failed
                failed_units.update(model.failure_implied(model.configs[i], m))
                continue
            s = self._score(model.configs[i], m)
            if s is not None:
                units.append(model.unit_of[i])
                ys.append(s)
            value = self.objective.value(m)
            feasible_known[i] = value is not None
            if value is not None and (best is None or self.objective.better(value, best)):
                best = value
        units_a = np.array(units, dtype=int)
        y_a = np.array(ys, dtype=float)
        m, s = model.fit(units_a, y_a)
        if pending:  # constant liar: pending configs told their posterior mean
            pu = np.array([model.unit_of[i] for i in pending], dtype=int)
            m, s = model.fit(np.concatenate([units_a, pu]), np.concatenate([y_a, m[pu]]))
        if failed_units:
            fu = np.array(sorted(failed_units), dtype=int)
            m[fu] = math.log(CAPACITY_FLOOR_RPS)
            s[fu] = 1e-3
        return {"measured": measured, "pending": pending, "mean": m, "sd": s, "best": best}

    def _score(self, config: Config, m: Measurement) -> float | None:
        if self.model.capacity:
            if not m.ok:  # failed (out of memory, crash): no capacity, whatever the replicas
                return math.log(CAPACITY_FLOOR_RPS)
            if m.capacity_rps is not None:
                return math.log(max(m.capacity_rps / config.replicas, CAPACITY_FLOOR_RPS))
            return None
        if not m.ok:
            return None
        v = self.objective.value(m)
        if v is None and self.objective.slo_p99_ms is None:
            v = m.rps_per_cost
        return None if v is None else float(v)

    def _open(self, state: dict[str, Any]) -> np.ndarray:
        free = np.ones(len(self.model.configs), dtype=bool)
        for i in state["measured"]:
            free[i] = False
        for i in state["pending"]:
            free[i] = False
        return free

    def feasibility(self, state: dict[str, Any]) -> np.ndarray:
        """P(config serves the target load within the SLO), from the capacity posterior."""
        model = self.model
        need = np.log(self.objective.target_rps * THROUGHPUT_TOLERANCE / model.replicas)
        m = state["mean"][model.unit_of]
        s = state["sd"][model.unit_of]
        p = 1.0 - ndtr((need - m) / s)
        for i, meas in state["measured"].items():
            p[i] = 1.0 if self.objective.value(meas) is not None else 0.0
        return p

    def acquisition(self, state: dict[str, Any]) -> np.ndarray:
        """Score of each config (higher = suggest first); -inf where not suggestible."""
        free = self._open(state)
        out = np.full(len(free), -np.inf)
        if not free.any():
            return out
        model = self.model
        if model.capacity:
            p = self.feasibility(state)
            best = state["best"]
            ref = best if best is not None else float(model.cost.max()) * 1.0001
            gain = np.maximum(ref - model.cost, 0.0)
            acq = gain * p + 1e-12 * p
            likely = free & (p >= FEASIBLE_ENOUGH) & (gain > 0)
            if FEASIBLE_ENOUGH < 1.0 and likely.any():
                # the cheapest config the posterior expects to serve the load: verify it
                acq = np.where(likely, 1.0 + model.cost.max() - model.cost, acq * 1e-9)
            out[free] = acq[free]
            return out
        sign = 1.0 if self.objective.direction == "maximize" else -1.0
        m = sign * state["mean"][model.unit_of]
        s = state["sd"][model.unit_of]
        best = state["best"]
        incumbent = -np.inf if best is None else sign * best
        if self.acquisition_name == "pmax":
            out[free] = _prob_of_max(m[free], s[free], incumbent)
        else:
            out[free] = m[free] + UCB_BETA * s[free]
        return out

    def _choose(self, state: dict[str, Any]) -> int | None:
        acq = self.acquisition(state)
        if not np.isfinite(acq).any():
            return None
        top = np.flatnonzero(acq == acq.max())
        return int(top[0]) if len(top) == 1 else int(self._rng.choice(list(top)))

    # -- stopping -------------------------------------------------------------------------------

    def confidence_within_5pct(self, study: Study) -> float:
        """P(the incumbent is within 5% of the optimum), under the posterior (independent
        marginals); 0.0 without a feasible incumbent."""
        state = self.state(study)
        return self._confidence(state)

    def _confidence(self, state: dict[str, Any]) -> float:
        best = state["best"]
        if best is None:
            return 0.0
        free = self._open(state)
        model = self.model
        if model.capacity:
            threat = free & (model.cost < best / (1.0 + STOP_WITHIN))
            if not threat.any():
                return 1.0
            p = self.feasibility(state)
            return float(np.exp(np.sum(np.log1p(-np.clip(p[threat], 0, 1 - 1e-12)))))
        units = model.unit_of[free]
        m = state["mean"][units]
        s = state["sd"][units]
        sign = 1.0 if self.objective.direction == "maximize" else -1.0
        if model.stop_states is not None and len(units):
            # calibrated on the training models: the within-5% rate of pseudo-search states
            # whose predicted gap (best unmeasured prediction vs incumbent) is nearest to ours
            return float(model.stop_states[1][self._similar_states(state, units)].mean())
        bound = best * (1.0 + 0.05 * sign) if best >= 0 else best * (1.0 - 0.05 * sign)
        z = sign * (bound - m) / s  # a config threatens the incumbent above z (in sd units)
        p_exceed = model.tail.sf(units, z) if model.tail is not None else 1.0 - ndtr(z)
        return float(np.exp(np.sum(np.log1p(-np.clip(p_exceed, 0.0, 1.0 - 1e-12)))))

    def _similar_states(self, state: dict[str, Any], units: np.ndarray) -> np.ndarray:
        """Indices of the training pseudo-search states whose predicted gap (best unmeasured
        prediction vs incumbent, relative) is nearest to this study's."""
        sign = 1.0 if self.objective.direction == "maximize" else -1.0
        best = state["best"]
        gap = (float(np.max(sign * state["mean"][units])) - sign * best) / max(abs(best), 1e-12)
        return self._nearest_states(gap)

    def _nearest_states(self, x: float) -> np.ndarray:
        """Indices of the (finite) calibration states nearest to ``x``."""
        xs = self.model.stop_states[0]
        idx = np.flatnonzero(np.isfinite(xs))
        if not len(idx):
            return np.arange(len(xs))
        n = min(len(idx), max(STOP_NEIGHBOURS, len(idx) // 20))
        return idx[np.argpartition(np.abs(xs[idx] - x), n - 1)[:n]]

    def expected_improvement(self, state: dict[str, Any]) -> float:
        """The best remaining expected improvement over the incumbent (objective units)."""
        best = state["best"]
        free = self._open(state)
        if best is None or not free.any():
            return math.inf if best is None else 0.0
        model = self.model
        if model.capacity:
            p = self.feasibility(state)
            return float(np.max(np.maximum(best - model.cost, 0.0)[free] * p[free]))
        sign = 1.0 if self.objective.direction == "maximize" else -1.0
        units = model.unit_of[free]
        if model.stop_states is not None:
            # calibrated: the mean regret of similar pseudo-search states on training models
            return float(model.stop_states[2][self._similar_states(state, units)].mean()) * abs(
                best
            )
        m = sign * state["mean"][units]
        s = state["sd"][units]
        z0 = (sign * best - m) / s
        if model.tail is not None:
            ei = s * model.tail.partial(units, z0)
        else:
            ei = s * (np.exp(-0.5 * z0 * z0) / math.sqrt(2 * math.pi) - z0 * (1.0 - ndtr(z0)))
        return float(ei.max())

    def should_stop(self, study: Study) -> bool:
        """True when the remaining expected improvement is negligible and the incumbent is
        within 5% of the optimum with confidence >= STOP_CONFIDENCE."""
        state = self.state(study)
        best = state["best"]
        if best is None:
            return False
        if self.expected_improvement(state) > STOP_EI_FRACTION * abs(best):
            return False
        return self._confidence(state) >= STOP_CONFIDENCE


def _prob_of_max(m: np.ndarray, s: np.ndarray, incumbent: float) -> np.ndarray:
    """P(candidate i is the largest of all candidates and above ``incumbent``), independent
    Gaussian marginals, integrated on a grid; ties broken by the mean."""
    n = len(m)
    upper = m + 4.0 * s
    lo = max(incumbent, float(np.max(m - 4.0 * s)))
    hi = float(upper.max())
    out = np.zeros(n)
    if not hi > lo:
        return m * 1e-9 + 1e-12 * 0
    order = np.argsort(-upper)
    cand = order[: min(n, MAX_CANDIDATES)]
    cand = cand[upper[cand] > lo]
    if len(cand) == 0:
        return m * 1e-12
    grid = np.linspace(lo, hi, GRID_POINTS + 1)
    F = ndtr((grid[None, :] - m[cand, None]) / s[cand, None])
    logF = np.log(np.clip(F, 1e-300, 1.0))
    total = logF.sum(0)
    pmf = np.diff(F, axis=1)
    mid = 0.5 * (logF[:, 1:] + logF[:, :-1])
    others = np.exp(0.5 * (total[1:] + total[:-1]) - mid)
    out[cand] = (pmf * others).sum(1)
    # below-resolution candidates keep a tiny mean-ordered score, so the order stays sensible
    return out + 1e-12 * (m - m.min()) / (np.ptp(m) + 1e-12)


def should_stop(study: optuna.Study, objective: Objective | None = None) -> bool:
    """The stopping rule of a study run by the ``meta`` sampler (False for other samplers)."""
    sampler = study.sampler
    return isinstance(sampler, MetaSampler) and sampler.should_stop(study)


def confidence_within_5pct(study: optuna.Study, objective: Objective | None = None) -> float:
    """P(the incumbent is within 5% of the optimum) for a study run by the ``meta`` sampler."""
    sampler = study.sampler
    if not isinstance(sampler, MetaSampler):
        return 0.0
    return sampler.confidence_within_5pct(study)
