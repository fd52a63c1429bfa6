"""The meta sampler's surrogate: a Bayesian linear model of a config's score over the space's
units (configs, or base configs at a target load), fitted to the target's observations (see
:mod:`autoconf._meta`)."""

from __future__ import annotations

from functools import cached_property
from itertools import product
from typing import NamedTuple

import numpy as np

from .._objective import Objective
from .._space import SearchSpace
from .._types import Config
from ..prior import FLOOR_SCORE
from ._floor import FloorModel, slo_similarity
from ._kernel import ResidualKernel
from ._tail import Tail, binned_variance

#: Relative sd (of the mean residual sd) left on a unit once it is measured.
MEASUREMENT_NOISE = 0.1
#: Prior variance of each dimension value's effect on the target's deviation, relative to the
#: mean residual variance: what lets observations of some T4 configs speak for the other T4s.
MAIN_EFFECT_VARIANCE = 1.0
#: Prior variance (times 1/K) of each training model's weight in the target's deviation.
MODEL_WEIGHT_VARIANCE = 1.0
#: Ridge penalty of the main effects fitted to each training model when estimating the per-unit
#: residual variance.
RESIDUAL_RIDGE = 1.0
#: Candidate factors on the model level's prior variance (chosen by the target's evidence).
LEVEL_INFLATIONS = (1.0, 4.0, 16.0, 64.0)
#: Prior variance of the coefficient on the feature prediction (1: the target may follow it
#: fully, or not at all).
FEATURE_PREDICTION_VARIANCE = 1.0
#: At a target load, the candidate prior means of the surrogate: the training models' mean moved
#: this far towards each kops-feature prediction (``FeaturePrediction``: shared and per-config;
#: 0: the mean; 1: the feature prediction); the target's own measurements choose one by their
#: evidence.
FEATURE_BASES = (0.0, 0.5, 1.0)
#: Factor on the prior variance of an ordered dimension's log trend (the mean squared trend of
#: the training models' deviations). With a prior only: on a plain BO without one, trends made
#: the held-out zoo slower (median 13 -> 19-21 evaluations; results/shipped/README.md, stop 23).
TREND_VARIANCE = 1.0
#: Candidate factors on the per-unit residual's variance and on the main effects' prior variance,
#: chosen with the prior mean by the target's evidence. Measured (meta only, shipped knowledge,
#: 51 zoo models and 14 unseen architectures, 3 seeds): mean evaluations to within 5 % 7.54 ->
#: 7.14; a wider grid (0.1-3, 0.1-4) let a lucky-pass optimum go unmeasured (bert_like@l). A
#: residual 3x the history's (stop 25: a fresh architecture's knobs can matter more than any
#: training model's) left the zoo's runs identical and took the 16 unseen models' mean from 6.35
#: to 6.31 and the 12 fresh ones' from 9.56 to 9.44 (p90 21 -> 18); 9x was worse (6.73).
RESIDUAL_SCALES = (0.3, 1.0, 3.0)
EFFECT_SCALES = (0.3, 1.0)
#: Lower bound of the residual kernel's variance scale calibrated on the target's own
#: leave-one-out errors (measured units cluster, so their errors understate the others').
LOO_SCALE_MIN = 0.05


class Design(NamedTuple):
    """The linear model's basis over the units (``Phi``: units x columns), each column's prior
    variance (``var``), where the main effects' columns are (``effects``), the per-unit residual
    variance (``noise``) and the prior mean of every unit's score (``base``)."""

    Phi: np.ndarray
    var: np.ndarray
    effects: slice
    noise: np.ndarray
    base: np.ndarray


class Surrogate:
    """The Bayesian linear model over the space's units (configs, or base configs)."""

    def __init__(self, space: SearchSpace, objective: Objective, prior, target_features) -> None:
        self.space = space
        self.objective = objective
        self.configs = space.configs()
        self.index = {c: i for i, c in enumerate(self.configs)}
        self.capacity = objective.target_rps is not None
        #: correlation of the per-unit residual between units (None: independent)
        self.kernel: ResidualKernel | None = None
        #: the residuals' empirical tail (None: Gaussian; no prior, or under 3 training models)
        self.tail: Tail | None = None
        #: the prior's score of every unit on each training model (K x U; None without a
        #: prior): what the stopping rule calibrates on
        self.prior_matrix: np.ndarray | None = None
        #: P(a unit misses the SLO at any load), from the training models' floors (None: no
        #: target load, or no prior)
        self.floor: FloorModel | None = None
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
        self._codes: np.ndarray | None = None  # units x dims value indices (neighbours)
        self.replicas = np.array([c.replicas for c in self.configs], dtype=float)
        self.cost = np.array([space.cost_per_hour(c) for c in self.configs])
        self._build_features(prior, target_features)

    def _build_features(self, prior, target_features) -> None:
        """What the surrogate takes from the prior (its mean, the training models' deviations
        and the residual they leave, the floor model, the feature prediction) and the basis of
        main effects and trends a target's measurements fit."""
        U = len(self.unit_configs)
        kind = "log_capacity" if self.capacity else "value"
        # without a target load a capacity prior still says what a config serves per dollar
        converted = prior is not None and not self.capacity and prior.kind == "log_capacity"
        use_prior = prior is not None and (prior.kind == kind or converted)
        # one-hot main effects of every unit dimension with more than one value
        self.H = _onehots(self.space, self.unit_dims, self.unit_configs)
        self.slope_var = 0.25
        self.level_sd = 1.0
        self.n_models = 0
        self.noise: np.ndarray | None = None  # None: estimated from the target's observations
        mu, D = np.zeros(U), np.zeros((0, U))
        if use_prior:
            mu, D = self._learn_prior(prior, target_features, converted)
        self.mu = mu
        self.D = D.T  # U x K
        # a trend in the log of every ordered dimension (with a prior only): what lets measured
        # batch sizes 2..16 rising say that 32 rises further (one-hot effects cannot extrapolate)
        self.T = (
            _trends(self.space, self.unit_dims, self.unit_configs) if use_prior else self.H[:, :0]
        )
        self.trend_var = np.full(self.T.shape[1], 1e-12)
        if D.shape[0]:
            slopes = (self.T.T @ D.T) / np.maximum((self.T**2).sum(0), 1e-12)[:, None]  # x K
            self.trend_var += TREND_VARIANCE * np.mean(slopes**2, axis=1)
        # prior variance of a main effect: how large they are in the training deviations
        self.effect_var = None
        if use_prior and self.H.shape[1] and D.shape[0]:
            G = self.H.T @ self.H + 1e-3 * U * np.eye(self.H.shape[1])
            coef = np.linalg.solve(G, self.H.T @ D.T)  # columns x K
            self.effect_var = float(np.mean(coef**2)) + 1e-12
        #: what the target's kops features predict (centred), a basis of the surrogate; None
        #: without features
        self.from_features: np.ndarray | None = None
        #: candidate prior means of every unit's score (the training models' mean, and at a
        #: target load the same moved towards each feature prediction): the evidence picks one
        self.bases = [mu]
        if use_prior:
            self._learn_feature_bases(prior, target_features, converted)

    def _learn_prior(
        self, prior, target_features, converted: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """The prior's mean score of every unit (training models weighed by their kops features'
        likeness to the target's) and each training model's deviation from it less its own
        level (K x U); also the level's spread, the floor model and the residual model."""
        S = prior.matrix_for(self.space, self.unit_configs)  # K x U
        if converted:
            S = self._value_of_log_capacity(S)
        self.prior_matrix = S
        K = S.shape[0]
        self.n_models = K
        weights = _similarity_weights(prior.model_features, target_features, K)
        if self.capacity:
            like = slo_similarity(prior.model_slo_ms, self.objective.slo_p99_ms)
            start = weights if like is None else weights * like
            self.floor = FloorModel(np.less_equal(S, FLOOR_SCORE), start)
        mu = weights @ S
        D = S - mu
        # the level of a model (b0 in the surrogate) is not a config deviation
        offsets = D.mean(1)
        D = D - offsets[:, None]
        self.level_sd = float(np.sqrt(np.mean(offsets**2))) + 1e-3
        if K >= 3:
            self.noise = self._learn_residual(S, mu)
        else:
            self.noise = np.full(S.shape[1], max(float(D.var()), 1e-6) + 1e-6)
        return mu, D

    def _learn_residual(self, S: np.ndarray, mu: np.ndarray) -> np.ndarray:
        """The per-unit residual variance, binned by prior level (heteroscedastic), from each
        training model's leave-one-out residual; also its tail, its kernel over units and the
        spread of the models' slopes on the others' mean."""
        loo, slopes = _loo_residuals(S, self.H)
        noise, self.tail = binned_variance(mu, loo, robust=self.capacity)
        informative = np.greater(S, FLOOR_SCORE) if self.capacity else None
        self.kernel = ResidualKernel.learn(
            self.space, self.unit_dims, self.unit_configs, loo / np.sqrt(noise), informative
        )
        self.slope_var = float(np.mean((slopes - 1.0) ** 2)) + 1e-4
        return noise

    def _learn_feature_bases(self, prior, target_features, converted: bool) -> None:
        """The feature prediction's column and, at a target load, the candidate prior means
        moved towards each feature prediction (:data:`FEATURE_BASES`)."""
        pred = prior.predict_from_features(self.space, self.unit_configs, target_features)
        if pred is None:
            return
        shared = self._value_of_log_capacity(pred.shared) if converted else pred.shared
        self.from_features = shared - shared.mean()
        if self.capacity:
            mu = self.mu
            self.bases = [mu] + [
                mu + f * (g - mu)
                for g in (pred.shared, pred.per_config)
                for f in FEATURE_BASES
                if f > 0
            ]

    def _value_of_log_capacity(self, log_capacity: np.ndarray) -> np.ndarray:
        """Requests/s per dollar-hour of every unit from its log capacity per replica at the SLO
        (a capacity prior's score): the capacity of its replicas over their price."""
        replicas = np.array([c.replicas for c in self.unit_configs], dtype=float)
        cost = np.array([self.space.cost_per_hour(c) for c in self.unit_configs], dtype=float)
        return np.exp(log_capacity) * replicas / np.maximum(cost, 1e-9)

    def fit(
        self,
        units: np.ndarray,
        y: np.ndarray,
        obs_var: np.ndarray | None = None,
        pin: bool = True,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and sd of every unit's score given observations ``y`` at ``units``;
        ``obs_var`` is each observation's own noise variance (live measurements,
        :mod:`autoconf._noise`; ``None``: exact, as tables and the simulator answer). ``pin``
        False leaves the measured units at what the model fits there (independent residuals
        only): how far a measurement lies from it is its surprise (:meth:`surprise_z`)."""
        design = self._design(y)
        Phi, var, _, noise, base = design
        has_prior = self.D.shape[1] > 0
        if len(units) == 0:
            return base.copy(), np.sqrt((Phi**2) @ var + noise)
        P = Phi[units]
        r = y - base[units]
        if has_prior and self.kernel is not None:
            return self._fit_correlated(design, units, y, obs_var)
        own = noise[units] if obs_var is None else noise[units] + obs_var
        if has_prior:
            var = var.copy()
            var[0] *= _level_evidence(P, r[:, None], var, np.diag(own))[0][0]
        # the residual e(u) is a property of the unit, not observation noise: a measured unit
        # is known up to MEASUREMENT_NOISE (its other replica counts follow from it), and
        # the residual scale is calibrated on the target's own observations
        scale = 1.0
        for _ in range(2):
            nz = noise[units] * scale
            if obs_var is not None:
                nz = nz + obs_var
            A = (P.T / nz) @ P + np.diag(1.0 / var)
            L = np.linalg.cholesky(A)
            w = np.linalg.solve(A, P.T @ (r / nz))
            if len(units) < 3 or not self.capacity:
                break
            z2 = (r - P @ w) ** 2 / own
            scale = float(np.clip((z2.sum() + 2.0) / (len(units) + 2.0), 0.05, 4.0))
        noise = noise * scale
        m = base + Phi @ w
        V = np.linalg.solve(L, Phi.T)
        v = (V**2).sum(0) + noise
        if not pin:
            return m, np.sqrt(v)
        return _pin_measured(m, v, units, y, noise, obs_var)

    def _design(self, y: np.ndarray) -> Design:
        """The basis and its prior: with a prior, :attr:`_prior_design` (the same at every
        fit); without one, main effects around the target's own mean and spread (``y``)."""
        if self.D.shape[1] > 0:
            return self._prior_design
        U = len(self.mu)
        spread = max(float(np.var(y)), 1e-6) if len(y) > 1 else 1.0
        base = np.full(U, float(np.mean(y)) if len(y) else 0.0)
        var = np.concatenate([[spread], np.full(self.H.shape[1], spread / 2)])
        effects = slice(1, 1 + self.H.shape[1])
        return Design(
            np.hstack([np.ones((U, 1)), self.H]), var, effects, np.full(U, 0.1 * spread), base
        )

    @cached_property
    def _prior_design(self) -> Design:
        """The basis with a prior: the training models' mean, deviations, main effects, trends
        and the feature prediction, each column with its prior variance."""
        U = len(self.mu)
        K = self.D.shape[1]
        assert self.noise is not None  # a prior (K > 0) always brings its residual noise
        centred = self.mu - self.mu.mean()
        cols = [np.ones((U, 1)), centred[:, None], self.D, self.H, self.T]
        effects = slice(2 + K, 2 + K + self.H.shape[1])  # the columns of H in Phi
        if self.from_features is not None:
            cols.append(self.from_features[:, None])
        v_h = MAIN_EFFECT_VARIANCE * (
            self.effect_var if self.effect_var is not None else float(np.mean(self.noise))
        )
        var = np.concatenate(
            [
                [self.level_sd**2],
                [self.slope_var],
                np.full(K, MODEL_WEIGHT_VARIANCE / K),
                np.full(self.H.shape[1], v_h),
                self.trend_var,
                [FEATURE_PREDICTION_VARIANCE] if self.from_features is not None else [],
            ]
        )
        return Design(np.hstack(cols), var, effects, self.noise, self.mu)

    def surprise_z(
        self, units: np.ndarray, y: np.ndarray, obs_var: np.ndarray | None = None
    ) -> np.ndarray | None:
        """How many sds (the residual's and a live measurement's own noise, ``obs_var``) each
        observation lies above the fit to all of them (no target load, independent residuals;
        None elsewhere): what the prior and the main effects did not see coming."""
        if self.capacity or self.kernel is not None or self.noise is None or not len(units):
            return None
        m, _ = self.fit(units, y, obs_var, pin=False)
        var = self.noise[units] if obs_var is None else self.noise[units] + obs_var
        return (y - m[units]) / np.sqrt(var)

    def neighbours(self, units: np.ndarray) -> np.ndarray:
        """Per unit, the number of dimensions in which it is one knob away from one of ``units``
        (0: none differs from it in exactly one dimension). A unit next to two of them in two
        dimensions completes their box."""
        if self._codes is None:
            values = [self.space.values(d) for d in self.unit_dims]
            self._codes = np.array(
                [
                    [v.index(getattr(c, d)) for d, v in zip(self.unit_dims, values)]
                    for c in self.unit_configs
                ]
            )
        codes = self._codes
        along = np.zeros(codes.shape, dtype=bool)  # units x dims: one knob away along dim
        for u in np.unique(units):
            differ = codes != codes[u]
            along |= differ & (differ.sum(1) == 1)[:, None]
        return along.sum(1)

    def _fit_correlated(
        self, design: Design, units: np.ndarray, y: np.ndarray, obs_var: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`fit` with the per-unit residual a Gaussian process over units (the learned
        :class:`ResidualKernel`): a measurement also moves the units that share most of its
        knobs. Function-space form, so the cost is linear in the number of units."""
        assert self.kernel is not None  # fit() comes here only with a kernel
        Phi, var, effects, noise, base = design
        U = len(base)
        sd = np.sqrt(noise)
        Kuo = self.kernel.cross(np.arange(U), units) * sd[:, None] * sd[units][None, :]
        Koo = Kuo[units]
        nugget = MEASUREMENT_NOISE**2 * float(np.mean(noise))
        own = nugget * np.eye(len(units))
        if obs_var is not None:
            own = own + np.diag(obs_var)
        # the prior mean, the level's spread and the scales of the residual and of the main
        # effects that the target's observations are likeliest under (type-II maximum
        # likelihood over a small grid): a held-out family whose batch size barely matters
        # shrinks its siblings' spread after a few of them, one whose knobs matter more than
        # its history's widens it
        # the covariance does not depend on the prior mean: one factorisation per scale serves
        # every candidate mean's residuals
        residuals = np.stack([y - candidate[units] for candidate in self.bases], axis=1)
        evidence = {}
        for residual_scale, effect_scale in product(RESIDUAL_SCALES, EFFECT_SCALES):
            scaled = var.copy()
            scaled[effects] *= effect_scale
            evidence[residual_scale, effect_scale] = _level_evidence(
                Phi[units], residuals, scaled, residual_scale * Koo + own
            )
        best_ll, choice = -np.inf, (1.0, base, 1.0, 1.0)
        for b, candidate in enumerate(self.bases):
            for (residual_scale, effect_scale), (factors, lls) in evidence.items():
                if lls[b] > best_ll + 1e-9:
                    best_ll = lls[b]
                    choice = (factors[b], candidate, residual_scale, effect_scale)
        inflation, base, residual_scale, effect_scale = choice
        r = y - base[units]
        var = var.copy()
        var[0] *= inflation
        var[effects] *= effect_scale
        Kuo = Kuo * residual_scale
        cross = (Phi * var) @ Phi[units].T + Kuo  # U x n
        C = cross[units] + own
        L = np.linalg.cholesky(C)
        alpha = np.linalg.solve(L.T, np.linalg.solve(L, r))
        m = base + cross @ alpha
        A = np.linalg.solve(L, cross.T)  # n x U
        v = np.maximum((Phi**2) @ var + residual_scale * noise - (A**2).sum(0), 1e-9)
        # the covariance's scale, calibrated on the target's own observations by their
        # leave-one-out predictive errors (closed form for a Gaussian process)
        if len(units) >= 3:
            Ci = np.linalg.solve(L.T, np.linalg.solve(L, np.eye(len(units))))
            z2 = alpha**2 / np.diag(Ci)
            v *= float(np.clip((z2.sum() + 2.0) / (len(units) + 2.0), LOO_SCALE_MIN, 4.0))
        return _pin_measured(m, v, units, y, noise, obs_var)


def _pin_measured(
    m: np.ndarray,
    v: np.ndarray,
    units: np.ndarray,
    y: np.ndarray,
    noise: np.ndarray,
    obs_var: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Posterior mean and sd with every measured unit at its measured mean, known up to
    MEASUREMENT_NOISE (its other replica counts follow from it), or up to its measurements' own
    noise (``obs_var``, averaged over them) where that is larger."""
    seen = np.zeros(len(m), dtype=bool)
    seen[units] = True
    sums = np.bincount(units, weights=y, minlength=len(m))
    counts = np.bincount(units, minlength=len(m))
    m[seen] = sums[seen] / counts[seen]
    v[seen] = MEASUREMENT_NOISE**2 * np.mean(noise)
    if obs_var is not None:
        own = np.bincount(units, weights=obs_var, minlength=len(m))[seen] / counts[seen] ** 2
        v[seen] = np.maximum(v[seen], own)
    return m, np.sqrt(v)


def _level_evidence(
    P: np.ndarray, R: np.ndarray, var: np.ndarray, resid_cov: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per column of ``R`` (the target's residuals under one candidate prior mean each), the
    factor on the model level's prior variance that maximises their evidence (type-II maximum
    likelihood over LEVEL_INFLATIONS), and that log evidence: the level's spread across
    training models is the default, but a target far outside it (every config 3x faster than
    any training model) widens it, so its first measurements move every prediction."""
    n, m = R.shape
    best, best_ll = np.ones(m), np.full(m, -np.inf)
    if n == 0:
        return best, np.zeros(m)
    base = (P[:, 1:] * var[1:]) @ P[:, 1:].T + resid_cov
    ones = P[:, 0:1] @ P[:, 0:1].T
    for f in LEVEL_INFLATIONS:
        C = base + f * var[0] * ones
        sign, logdet = np.linalg.slogdet(C)
        if sign <= 0:
            continue
        ll = -0.5 * (logdet + np.einsum("ij,ij->j", R, np.linalg.solve(C, R)))
        better = ll > best_ll + 1e-9
        best = np.where(better, f, best)
        best_ll = np.where(better, ll, best_ll)
    return best, best_ll


def _similarity_weights(model_features: np.ndarray | None, target_features, K: int) -> np.ndarray:
    """Each training model's weight in the prior mean: a Gaussian kernel on the distance of its
    standardised kops features to the target's (bandwidth: the median distance); uniform
    without features."""
    weights = np.full(K, 1.0 / K)
    if target_features is None or model_features is None:
        return weights
    f = np.asarray(target_features, dtype=float)
    F = model_features
    if F.shape[1] != f.shape[0]:
        return weights
    scale = F.std(0) + 1e-9
    d2 = (((F - f) / scale) ** 2).mean(1)
    weights = np.exp(-0.5 * d2 / max(np.median(d2), 1e-9))
    return weights / weights.sum()


def _loo_residuals(S: np.ndarray, H: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each training model's residual (K x U) after what the surrogate fits to a target (a
    level, a slope on the other models' mean, ridge main effects ``H``), and its slope. Main
    effects are fitted here too: counting them in the residual would let one measurement move
    the unit itself instead of the shared level."""
    K, U = S.shape
    loo = np.empty_like(S)
    slopes = np.empty(K)
    for k in range(K):
        rest = (S.sum(0) - S[k]) / (K - 1)
        X = np.hstack([np.ones((U, 1)), rest[:, None], H])
        G = X.T @ X + RESIDUAL_RIDGE * np.diag([0.0, 0.0] + [1.0] * H.shape[1])
        coef = np.linalg.solve(G, X.T @ S[k])
        loo[k] = S[k] - X @ coef
        slopes[k] = coef[1]
    return loo, slopes


def _trends(space: SearchSpace, dims: list[str], configs: list[Config]) -> np.ndarray:
    """A centred log2(value) column of every numeric dimension in ``dims`` with three or more
    positive values (on ``gpu-default`` batch size and cores): the ordered part of its effect."""
    cols = []
    for d in dims:
        vals = space.values(d)
        if len(vals) < 3 or not all(isinstance(v, (int, float)) and v > 0 for v in vals):
            continue
        col = np.log2(np.array([getattr(c, d) for c in configs], dtype=float))
        cols.append(col - col.mean())
    return np.stack(cols, axis=1) if cols else np.zeros((len(configs), 0))


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
