"""How well ``meta``'s surrogate predicts an unseen model's capacities after a few measurements.

    python benchmarks/meta_prediction.py [--measured 1 2 3 5] [--draws 3] [--out results/meta/prediction.json]

For every table of the simulated zoo, the surrogate is built as a search would build it (the
shipped knowledge, the table's model family held out, the table's kops features), told the
log capacity per replica of ``n`` base configs drawn at random among those that serve some load
(not out of memory, above the capacity floor), and asked for every other such base config. Per
``n``: the root-mean-square error of the posterior mean in log capacity (median, mean and p90
over tables x draws) and the share of base configs whose error is under one posterior sd (0.68
for a calibrated Gaussian). For comparison, two predictors without a surrogate: the training
models' mean (``mu``) and the kops-feature regression (``g``), each shifted to the measured level.
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import optuna
from _output import emit_json

from autoconf._bench import history_for
from autoconf.datasets import zoo_tables
from autoconf.prior._shipped import shipped_tables
from autoconf.samplers import SamplerContext, make_sampler


def unit_log_capacity(model, table) -> np.ndarray:
    """Log capacity per replica of every unit (NaN: out of memory, or at the capacity floor)."""
    y = np.full(len(model.unit_configs), np.nan)
    for i, c in enumerate(model.configs):
        if c.replicas != 1:
            continue
        m = table.results[c]
        if m.ok and m.capacity_rps and m.capacity_rps > math.exp(0.5):
            y[model.unit_of[i]] = math.log(m.capacity_rps)
    return y


def errors(model, y: np.ndarray, measured: list[int], draws: int) -> dict[int, list[tuple]]:
    """Per number of measured units: (rmse, share within 1 sd, rmse of mu, rmse of g) per draw."""
    known = np.flatnonzero(np.isfinite(y))
    rng = np.random.default_rng(0)
    out: dict[int, list[tuple]] = {n: [] for n in measured}
    g = model.from_features if model.from_features is not None else model.mu
    for _ in range(draws):
        order = rng.permutation(known)
        for n in measured:
            obs = order[:n]
            mean, sd = model.fit(obs, y[obs])
            rest = np.setdiff1d(known, obs)
            err = mean[rest] - y[rest]
            out[n].append(
                (
                    float(np.sqrt(np.mean(err**2))),
                    float(np.mean(np.abs(err) < sd[rest])),
                    _shifted_rmse(model.mu, y, obs, rest),
                    _shifted_rmse(g, y, obs, rest),
                )
            )
    return out


def _shifted_rmse(base: np.ndarray, y: np.ndarray, obs: np.ndarray, rest: np.ndarray) -> float:
    """RMSE on ``rest`` of ``base`` shifted to the mean level of the measured units ``obs``."""
    e = base[rest] + np.mean(y[obs] - base[obs]) - y[rest]
    return float(np.sqrt(np.mean(e**2)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--measured", type=int, nargs="+", default=[1, 2, 3, 5])
    ap.add_argument("--draws", type=int, default=3)
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    tables = zoo_tables()
    train = shipped_tables(tables[0].space)
    rows: dict[int, list[tuple]] = {n: [] for n in args.measured}
    for t in tables:
        ctx = SamplerContext(t.space, t.objective, 0, t.features, history_for(t, train))
        model = make_sampler("meta", ctx).model
        for n, v in errors(model, unit_log_capacity(model, t), args.measured, args.draws).items():
            rows[n].extend(v)
    out = {"tables": len(tables), "draws": args.draws, "measured": {}}
    for n, v in rows.items():
        a = np.array(v)
        out["measured"][str(n)] = {
            "rmse_log_median": round(float(np.median(a[:, 0])), 3),
            "rmse_log_mean": round(float(a[:, 0].mean()), 3),
            "rmse_log_p90": round(float(np.quantile(a[:, 0], 0.9)), 3),
            "within_1sd": round(float(a[:, 1].mean()), 3),
            "mu_shifted_rmse_median": round(float(np.median(a[:, 2])), 3),
            "g_shifted_rmse_median": round(float(np.median(a[:, 3])), 3),
        }
    emit_json(out, args.out)


if __name__ == "__main__":
    main()
