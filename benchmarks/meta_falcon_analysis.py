"""What the Falcon tables allow: how much a target's table shares with the other 17.

    python benchmarks/meta_falcon_analysis.py > results/meta/falcon_analysis.json

Per held-out model: the rank of its optimum in the mean-over-the-other-models order (the
evaluations a static mean order needs), and the largest correlation of its residual (table minus
that mean) with any other model's residual. Residuals that do not correlate across models mean
no re-weighting of training models can predict where a target departs from the mean.
"""

from __future__ import annotations

import json
import statistics

import numpy as np

from autoconf.backends._replay import load_tables


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
    print(json.dumps({"summary": summary, "models": rows}, indent=1))


if __name__ == "__main__":
    main()
