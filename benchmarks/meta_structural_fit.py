"""Can a min(GPU-side, CPU-side) capacity structure describe the simulated zoo's tables?

    python benchmarks/meta_structural_fit.py [--gamma 0.9] [--beta 1.0] [--out results/meta/structural_fit.json]

A candidate basis for ``meta``'s surrogate at a target load (results/shipped/README.md,
"Stop 21"): the service time of a batch of ``m`` on one of ``k`` instances sharing a GPU is
``o + k * max(m * flops / (e * peak_fp32), (4 params + 2 m act) / (0.7 bandwidth)) +
m * c / (cores / k) ** gamma`` (FLOPs, parameters and activation bytes from the model's kops
features, peak and bandwidth from the space's GPU catalog; ``e``, ``c``, ``o`` per model), and
one replica's capacity is the best ``k m / service(m)`` over batches ``m`` up to the config's
whose ``beta * service(m) * (1 + 1/k)`` fits the SLO. The per-model parameters are fitted on a
grid to the *whole* table (every base config above the capacity floor), with a free level: the
root-mean-square error in log capacity is the floor of what such a basis could predict from a
few measurements. Compare with ``benchmarks/meta_prediction.py`` (the surrogate after n).
"""

from __future__ import annotations

import argparse
import math

import numpy as np
from _output import emit_json

from autoconf.datasets import zoo_tables

BATCHES = (1, 2, 4, 8, 16, 32, 64, 128)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gamma", type=float, default=0.9)
    ap.add_argument("--beta", type=float, default=1.0)
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    tables = zoo_tables()
    space = tables[0].space
    units = [c for c in space.configs() if c.replicas == 1]
    n = np.array([c.batch_size for c in units], float)
    k = np.array([c.instances_per_gpu or 1 for c in units], float)
    cores = np.array([c.cpu_cores for c in units], float) / k
    cpu_speed = np.where(cores >= 1, cores**args.gamma, cores)
    peak = np.array([space.gpus[c.gpu_type].fp32_tflops for c in units]) * 1e12
    bandwidth = np.array([space.gpus[c.gpu_type].bandwidth_gbps for c in units]) * 1e9
    grid = np.array(
        np.meshgrid(
            np.linspace(-2, 0, 9), np.linspace(-5, -2, 16), np.linspace(-3.5, -2, 7), indexing="ij"
        )
    ).reshape(3, -1)
    eff, cpu_s, over_s = (10 ** grid[i][:, None] for i in range(3))
    rows = []
    for t in tables:
        flops, params, act = (10 ** float(t.features[i]) for i in range(3))
        slo_s = t.objective.slo_p99_ms / 1e3
        pred = np.zeros((grid.shape[1], len(units)))
        for m in BATCHES:
            gpu = np.maximum(
                m * flops / (eff * peak), (4 * params + 2 * m * act) / (0.7 * bandwidth)
            )
            service = over_s + k * gpu + m * cpu_s / cpu_speed
            ok = (m <= n)[None, :] & (args.beta * service * (1 + 1 / k) <= slo_s)
            pred = np.where(ok, np.maximum(pred, np.log(k * m / service)), pred)
        y = np.array(
            [
                math.log(t.results[c].capacity_rps)
                if t.results[c].ok and (t.results[c].capacity_rps or 0) > math.exp(0.5)
                else np.nan
                for c in units
            ]
        )
        keep = np.isfinite(y)
        resid_var = (pred[:, keep] - y[keep]).var(1)
        rows.append(
            {
                "model": t.name,
                "rmse_log": round(float(np.sqrt(resid_var.min())), 3),
                "sd_log": round(float(y[keep].std()), 3),
            }
        )
    rmse = np.array([r["rmse_log"] for r in rows])
    out = {
        "gamma": args.gamma,
        "beta": args.beta,
        "rmse_log_median": round(float(np.median(rmse)), 3),
        "rmse_log_mean": round(float(rmse.mean()), 3),
        "tables_under_0.3": int((rmse < 0.3).sum()),
        "tables": rows,
    }
    emit_json(out, args.out)


if __name__ == "__main__":
    main()
