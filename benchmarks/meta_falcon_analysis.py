"""What the Falcon tables allow: how much a target's table shares with the other 17.

    python benchmarks/meta_falcon_analysis.py > results/meta/falcon_analysis.json

Per held-out model: the rank of its optimum in the mean-over-the-other-models order (the
evaluations a static mean order needs), and the largest correlation of its residual (table minus
that mean) with any other model's residual. Residuals that do not correlate across models mean
no re-weighting of training models can predict where a target departs from the mean.

Then an oracle bound. Each table has a "hot set" H of configs scoring above 0.9 (Falcon's own
success threshold), mostly one shared block of 16 configs, and inside H the scores behave as
independent draws: they do not correlate with the other models' scores at the same configs, nor
with the target's own main effects (both measured below). The oracle is told H exactly, which
no sampler can know, but not the scores inside it: it measures H first, then the other
batch-64/128 configs, then the rest, each group either in random order or in the order of the
other models' mean. A real sampler cannot order exchangeable configs better than at random, so
the oracle's figures bound what any sampler can reach on these tables.
"""

from __future__ import annotations

import json
import statistics

import numpy as np

from autoconf.datasets import load_tables


def main() -> None:
    tables = load_tables("/work/shared/data/falcon/sources")
    configs = sorted(tables[0].results, key=lambda c: c.key())
    Y = np.array([[t.results[c].normalized_rps_per_cost for c in configs] for t in tables])
    rows = []
    for k, t in enumerate(tables):
        rest = np.delete(Y, k, 0)
        mu = rest.mean(0)
        order = np.argsort(-mu, kind="stable")
        y = Y[k]
        pos = {int(i): n + 1 for n, i in enumerate(order)}
        exact = pos[int(np.argmax(y))]
        one = min(pos[int(i)] for i in np.flatnonzero(y >= 0.99 * y.max()))
        r_t = y - mu
        corr = max(
            float(np.corrcoef(r_t, rest[j] - np.delete(rest, j, 0).mean(0))[0, 1])
            for j in range(len(rest))
        )
        rows.append(
            {
                "model": t.name,
                "mean_order_evals_to_optimum": exact,
                "mean_order_evals_to_1pct": one,
                "max_residual_corr_with_other_model": round(corr, 3),
            }
        )
    e = [r["mean_order_evals_to_optimum"] for r in rows]
    o = [r["mean_order_evals_to_1pct"] for r in rows]
    summary = {
        "mean_order_to_optimum_median": statistics.median(e),
        "mean_order_to_optimum_p90": float(np.percentile(e, 90)),
        "mean_order_to_optimum_max": max(e),
        "mean_order_to_1pct_median": statistics.median(o),
        "mean_order_to_1pct_p90": float(np.percentile(o, 90)),
        "max_residual_corr_median": statistics.median(
            r["max_residual_corr_with_other_model"] for r in rows
        ),
    }
    bound = oracle_bound(Y, configs, [t.name for t in tables])
    print(json.dumps({"summary": summary, "models": rows, "oracle_bound": bound}, indent=1))


def oracle_bound(
    Y: np.ndarray, configs: list, names: list[str], orders: int = 2000, budget: int = 200
) -> dict:
    """Evaluations to the optimum / to within 1% of an oracle that knows each table's hot set."""
    rng = np.random.default_rng(0)
    big = np.array([c.batch_size >= 64 for c in configs])
    runs: dict[str, dict[str, list[int]]] = {
        v: {"opt": [], "1pct": []} for v in ("random_within_groups", "mean_order_within_groups")
    }
    corr_with_others: list[float] = []
    main_r2: list[float] = []
    per_model = []
    for k, name in enumerate(names):
        y = Y[k]
        mu = np.delete(Y, k, 0).mean(0)
        hot = np.flatnonzero(y > 0.9)
        if len(hot) > 5:
            corr_with_others.append(float(np.corrcoef(y[hot], mu[hot])[0, 1]))
            main_r2.append(_main_effect_r2(y[hot], [configs[i] for i in hot]))
        groups = (hot, np.flatnonzero((y <= 0.9) & big), np.flatnonzero((y <= 0.9) & ~big))
        row: dict = {"model": name, "hot_set_size": len(hot)}
        for variant, n_orders in (
            ("random_within_groups", orders),
            ("mean_order_within_groups", 1),
        ):
            opt_k, one_k = [], []
            for _ in range(n_orders):
                if variant == "random_within_groups":
                    order = np.concatenate([rng.permutation(g) for g in groups])
                else:
                    order = np.concatenate([g[np.argsort(-mu[g], kind="stable")] for g in groups])
                pos = np.empty(len(y), dtype=int)
                pos[order] = np.arange(1, len(y) + 1)
                opt_k.append(int(pos[np.argmax(y)]))
                one_k.append(int(pos[y >= 0.99 * y.max()].min()))
            runs[variant]["opt"] += opt_k
            runs[variant]["1pct"] += one_k
            row[variant] = {
                "to_optimum_median": float(np.median(opt_k)),
                "to_1pct_median": float(np.median(one_k)),
            }
        per_model.append(row)
    null_r2 = [
        _main_effect_r2(rng.uniform(size=16), [configs[i] for i in np.flatnonzero(Y[0] > 0.9)][:16])
        for _ in range(500)
    ]
    summary: dict = {
        "budget": budget,
        "hot_scores_corr_with_other_models_mean_median": round(
            statistics.median(corr_with_others), 3
        ),
        "hot_scores_main_effect_r2_median": round(statistics.median(main_r2), 3),
        "same_r2_for_16_random_scores_median": round(statistics.median(null_r2), 3),
    }
    for variant, r in runs.items():
        summary[variant] = {
            "to_optimum_median": float(np.median(r["opt"])),
            "to_optimum_p90": round(float(np.percentile(r["opt"], 90)), 1),
            "found_within_budget": round(float(np.mean(np.array(r["opt"]) <= budget)), 3),
            "to_1pct_median": float(np.median(r["1pct"])),
            "to_1pct_p90": round(float(np.percentile(r["1pct"], 90)), 1),
        }
    return {"summary": summary, "models": per_model}


def _main_effect_r2(y: np.ndarray, configs: list) -> float:
    """Share of the variance of ``y`` that one-hot main effects of the config's knobs explain."""
    columns = [np.ones(len(y))]
    for knob in ("batch_size", "cpu_cores", "gpu_mem_gb", "gpu_share_pct", "gpu_type"):
        values = [getattr(c, knob) for c in configs]
        for level in sorted(set(values), key=str)[1:]:
            columns.append(np.array([v == level for v in values], dtype=float))
    X = np.column_stack(columns)
    beta = np.linalg.lstsq(X, y, rcond=None)[0]
    return float(1 - ((y - X @ beta) ** 2).sum() / ((y - y.mean()) ** 2).sum())


if __name__ == "__main__":
    main()
