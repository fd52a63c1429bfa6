"""The prior: what every model measured before says about a config of a new model.

A :class:`Prior` holds, per search space, one row of *scores* per training model over that
space's configs (the table the knowledge base knows), and a ridge regression from config
features (GPU specs, not GPU names) to the mean score, for configs no training model measured
(an unseen GPU type). The score of a config is what the optimizer models:

* ``value``: the objective value without a target load (rps per dollar-hour, or the Falcon
  tables' normalised score);
* ``log_capacity``: log of one replica's capacity at the SLO (``capacity_rps / replicas``), for
  spaces searched at a target load: with it the replicas a load needs follow from one
  measurement (throughput grows about linearly with replicas).

Saved as safetensors (matrices) plus JSON metadata (feature schema version, training models,
date); nothing is pickled.
"""

from __future__ import annotations

import datetime as _dt
import functools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._errors import UserError
from .._space import SearchSpace
from .._types import Config, Measurement, ModelTable

PRIOR_FORMAT_VERSION = 1
#: Capacities below this (requests/s per replica) count as this: a config that cannot meet the
#: SLO at any load says nothing about how far it is from meeting it (see autoconf._meta).
CAPACITY_FLOOR_RPS = 1.0
#: A ``log_capacity`` score at or below this is a capacity at the floor: a config that missed
#: the SLO at any load, or failed to deploy.
FLOOR_SCORE = math.log(CAPACITY_FLOOR_RPS) + 1e-6
#: Ridge penalty of the config-feature regression.
RIDGE_ALPHA = 1.0
#: Leading entries of kops' feature vector (the roofline-like ones) in the model x config
#: regression of :meth:`Prior.predict_from_features`.
MODEL_FEATURES = 8


@functools.lru_cache(maxsize=65536)
def _key(config: Config) -> str:
    """``config.key()``, remembered: a prior over the shipped zoo keys thousands of configs on
    every search, and ``Config.key`` goes through ``dataclasses.asdict``."""
    return config.key()


def config_features(space: SearchSpace, config: Config) -> np.ndarray:
    """Numeric features of a config: log batch size, cores, replicas, GPU specs and share.

    GPU types enter through their specs, so a GPU no training model ran on still gets a
    prediction from the regression.
    """
    gpu = space.gpus.get(config.gpu_type)
    share = (config.gpu_share_pct or 100) / 100.0
    specs = (
        (gpu.fp16_tflops, gpu.fp32_tflops, gpu.memory_gb, gpu.bandwidth_gbps, gpu.price_per_hour)
        if gpu is not None
        else (0.0, 0.0, 0.0, 0.0, 0.0)
    )
    return np.array(
        [
            math.log2(config.batch_size),
            math.log2(config.cpu_cores),
            math.log2(config.replicas),
            math.log1p(config.instances_per_gpu or 1),
            math.log1p(config.max_queue_delay_ms or 0.0),
            math.log1p(config.gpu_mem_gb or 0.0),
            share,
            *(math.log1p(s * share) for s in specs),
            1.0 if config.gpu_type == "cpu" else 0.0,
        ]
    )


def score_kind(table: ModelTable) -> str:
    """``log_capacity`` for tables searched at a target load, ``value`` otherwise."""
    return "log_capacity" if table.objective.target_rps is not None else "value"


def measurement_score(kind: str, config: Config, m: Measurement, objective) -> float | None:
    """The score a prior row holds for one measurement, ``None`` when it has none."""
    if kind == "value":
        if not m.ok:
            return None
        v = m.rps_per_cost if objective.slo_p99_ms is None else objective.value(m)
        return None if v is None else float(v)
    if not m.ok:  # failed deployment: no capacity at any replica count
        return math.log(CAPACITY_FLOOR_RPS)
    cap = m.capacity_rps
    if cap is None:
        return None
    return math.log(max(cap / config.replicas, CAPACITY_FLOOR_RPS))


@dataclass
class FeaturePrediction:
    """What a target's kops features predict for each config (:meth:`Prior.predict_from_features`).

    ``shared`` is the ridge regression on the model features, the config features and their
    products: one slope per product, shared by every config. Where a config behaves in a way
    those products cannot express (a queue delay that only matters at one batch size on one
    GPU), every model's residual there has the same sign. ``per_config`` adds each config's mean
    residual over the training models: the regression's own bias at that config, learned from
    the same data.
    """

    shared: np.ndarray
    per_config: np.ndarray


@dataclass
class Prior:
    """Training scores of one space: ``scores[k, i]`` is model ``k``'s score of config ``i``
    (NaN where unmeasured); ``weights``/``bias`` the config-feature ridge regression."""

    space_name: str
    kind: str
    config_keys: list[str]
    model_names: list[str]
    scores: np.ndarray
    model_features: np.ndarray | None = None
    #: each training model's SLO (p99, ms; None when some model has none): whether a config
    #: meets a model's SLO at all depends on it (autoconf._meta._floor)
    model_slo_ms: np.ndarray | None = None
    ridge_weights: np.ndarray | None = None
    ridge_bias: float = 0.0
    feature_version: str | None = None
    created: str = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat())

    @property
    def n_models(self) -> int:
        return len(self.model_names)

    def predict_mean(self, space: SearchSpace, configs: list[Config]) -> np.ndarray:
        """The regression's mean score of each config (for configs outside the table)."""
        if self.ridge_weights is None:
            return np.zeros(len(configs))
        X = np.stack([config_features(space, c) for c in configs])
        return X @ self.ridge_weights + self.ridge_bias

    def predict_from_features(
        self, space: SearchSpace, configs: list[Config], target_features: np.ndarray | None
    ) -> FeaturePrediction | None:
        """Scores of ``configs`` for a model with kops features ``target_features``: a ridge
        regression of every training model's scores on its leading kops features (FLOPs,
        parameters, bytes, intensity), the configs' features (GPU specs) and their products,
        and the same corrected by each config's mean residual (:class:`FeaturePrediction`).
        It follows a target's size across GPU specs where the mean over models cannot (a model
        40x bigger than any in the history is bandwidth-bound on every GPU). None without
        model features."""
        F = self.model_features
        if F is None or target_features is None or F.shape[0] != self.n_models:
            return None
        f = np.asarray(target_features, dtype=float)
        if F.shape[1] != f.shape[0]:
            return None
        F, f = F[:, :MODEL_FEATURES], f[:MODEL_FEATURES]
        C = np.stack([config_features(space, c) for c in configs])
        C = C[:, C.std(0) > 0]

        def design(model: np.ndarray) -> np.ndarray:
            products = (model[None, :, None] * C[:, None, :]).reshape(len(C), -1)
            return np.hstack([np.tile(model, (len(C), 1)), C, products])

        X = np.vstack([design(F[k]) for k in range(len(F))])
        y = self.matrix_for(space, configs).reshape(-1)  # model-major: K x N
        if self.kind == "log_capacity":  # a capacity at the floor is a failure, not a size
            keep = np.isfinite(y) & np.greater(y, FLOOR_SCORE)
        else:
            keep = np.isfinite(y)
        if keep.sum() < X.shape[1]:
            return None
        mean, sd = X[keep].mean(0), X[keep].std(0) + 1e-9
        Xn = (X[keep] - mean) / sd
        level = float(y[keep].mean())
        A = Xn.T @ Xn + RIDGE_ALPHA * np.eye(X.shape[1])
        beta = np.linalg.solve(A, Xn.T @ (y[keep] - level))
        shared = level + ((design(f) - mean) / sd) @ beta
        resid = np.zeros(len(y))
        resid[keep] = y[keep] - level - Xn @ beta
        counts = keep.reshape(len(F), len(configs)).sum(0)
        sums = resid.reshape(len(F), len(configs)).sum(0)
        bias = sums / np.maximum(counts, 1)  # 0 where no training model has a capacity
        return FeaturePrediction(shared, shared + bias)

    def matrix_for(self, space: SearchSpace, configs: list[Config]) -> np.ndarray:
        """Training scores over ``configs`` (K x N); configs unknown to the prior get the
        regression mean, missing cells the column's mean over models."""
        index = {k: i for i, k in enumerate(self.config_keys)}
        K = self.n_models
        out = np.full((K, len(configs)), np.nan)
        cols = [index.get(_key(c)) for c in configs]
        known = [j for j, i in enumerate(cols) if i is not None]
        if known:
            out[:, known] = self.scores[:, [i for i in cols if i is not None]]
        unknown = [j for j, i in enumerate(cols) if i is None]
        if unknown:
            out[:, unknown] = self.predict_mean(space, [configs[j] for j in unknown])[None, :]
        if K:
            col_mean = np.nanmean(np.where(np.isnan(out).all(0), 0.0, out), axis=0)
            rows, idx = np.where(np.isnan(out))
            out[rows, idx] = col_mean[idx]
        return out

    # -- persistence -----------------------------------------------------------------------

    def metadata(self) -> dict:
        return {
            "format_version": PRIOR_FORMAT_VERSION,
            "space": self.space_name,
            "kind": self.kind,
            "training_models": self.model_names,
            "config_keys": self.config_keys,
            "feature_version": self.feature_version,
            "ridge_bias": self.ridge_bias,
            "created": self.created,
        }

    def save(self, path: str | Path) -> Path:
        """Write ``path`` (safetensors) and ``path.json`` (metadata)."""
        from safetensors.numpy import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {"scores": np.ascontiguousarray(self.scores, dtype=np.float64)}
        if self.model_features is not None:
            tensors["model_features"] = np.ascontiguousarray(self.model_features, dtype=np.float64)
        if self.ridge_weights is not None:
            tensors["ridge_weights"] = np.ascontiguousarray(self.ridge_weights, dtype=np.float64)
        if self.model_slo_ms is not None:
            tensors["model_slo_ms"] = np.ascontiguousarray(self.model_slo_ms, dtype=np.float64)
        meta = self.metadata()
        save_file(tensors, str(path), metadata={"autoconf": json.dumps({"space": self.space_name})})
        Path(str(path) + ".json").write_text(json.dumps(meta, indent=1))
        return path


def train_prior(tables: list[ModelTable], space: SearchSpace | None = None) -> Prior:
    """Build the prior of one space from model tables (the largest space group by default)."""
    if not tables:
        raise UserError("no training tables: the knowledge base is empty")
    if space is None:
        by_space: dict[str, list[ModelTable]] = {}
        for t in tables:
            by_space.setdefault(t.space.name, []).append(t)
        group = max(by_space.values(), key=len)
        space = group[0].space
    group = [t for t in tables if t.space.name == space.name]
    if not group:
        raise UserError(f"no training tables in space {space.name!r}")
    kinds = {score_kind(t) for t in group}
    kind = "log_capacity" if "log_capacity" in kinds else "value"
    group = [t for t in group if score_kind(t) == kind]
    configs = sorted({c for t in group for c in t.results}, key=_key)
    index = {c: i for i, c in enumerate(configs)}
    scores = np.full((len(group), len(configs)), np.nan)
    for k, t in enumerate(group):
        for c, m in t.results.items():
            s = measurement_score(kind, c, m, t.objective)
            if s is not None:
                scores[k, index[c]] = s
    feats = [t.features for t in group]
    model_features = (
        np.stack([np.asarray(f, dtype=float) for f in feats])
        if feats
        and all(f is not None for f in feats)
        and len({len(f) for f in feats if f is not None}) == 1
        else None
    )
    slos = [t.objective.slo_p99_ms for t in group]
    model_slo_ms = (
        np.array(slos, dtype=float) if all(v is not None and v > 0 for v in slos) else None
    )
    # ridge: config features -> mean score over models (configs some model measured)
    counts = (~np.isnan(scores)).sum(0)
    mean = np.where(counts > 0, np.nansum(scores, axis=0) / np.maximum(counts, 1), np.nan)
    ok = ~np.isnan(mean)
    weights, bias = None, 0.0
    if ok.sum() >= 2:
        X = np.stack([config_features(space, c) for c, good in zip(configs, ok) if good])
        y = mean[ok]
        xm = X.mean(0)
        Xc = X - xm
        weights = np.linalg.solve(
            Xc.T @ Xc + RIDGE_ALPHA * np.eye(X.shape[1]), Xc.T @ (y - y.mean())
        )
        bias = float(y.mean() - xm @ weights)
    version = None
    try:
        import kops

        version = str(getattr(kops, "FEATURE_VERSION", None))
    except ImportError:  # pragma: no cover - kops ships with autoconf
        pass
    return Prior(
        space_name=space.name,
        kind=kind,
        config_keys=[_key(c) for c in configs],
        model_names=[t.name for t in group],
        scores=scores,
        model_features=model_features,
        model_slo_ms=model_slo_ms,
        ridge_weights=weights,
        ridge_bias=bias,
        feature_version=version,
    )


def load_prior(path: str | Path) -> Prior:
    """Read a prior written by :meth:`Prior.save` (safetensors + JSON, no pickle)."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    path = Path(path)
    meta_path = Path(str(path) + ".json")
    if not path.is_file() or not meta_path.is_file():
        raise UserError(f"prior {str(path)!r} not found (need {path.name} and {meta_path.name})")
    try:
        tensors = load_file(str(path))
        meta = json.loads(meta_path.read_text())
    except (SafetensorError, ValueError, OSError) as exc:
        raise UserError(f"{path}: not a prior file ({exc})") from None
    if meta.get("format_version") != PRIOR_FORMAT_VERSION or "scores" not in tensors:
        raise UserError(f"{path}: unsupported prior format")
    return Prior(
        space_name=meta["space"],
        kind=meta["kind"],
        config_keys=list(meta["config_keys"]),
        model_names=list(meta["training_models"]),
        scores=tensors["scores"],
        model_features=tensors.get("model_features"),
        model_slo_ms=tensors.get("model_slo_ms"),
        ridge_weights=tensors.get("ridge_weights"),
        ridge_bias=float(meta.get("ridge_bias", 0.0)),
        feature_version=meta.get("feature_version"),
        created=meta.get("created", ""),
    )
