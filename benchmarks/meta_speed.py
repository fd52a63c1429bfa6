"""Time one ``meta`` suggestion with 200 observations in the 5,376-config gpu-default space.

    python benchmarks/meta_speed.py [--observations 200] [--repeats 20] [--out results/meta/speed.json]

The study is filled with 200 completed trials (measurements from the simulated zoo's first
table), the prior trained on the other zoo tables; then ``study.ask`` is timed (one ask = one
full surrogate refit + acquisition over every config). Both objectives: cost at a target load
(capacity model per base config) and rps per dollar (one unit per config).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import optuna
from _output import emit_json

from autoconf import Objective
from autoconf._record import distributions, tell
from autoconf.datasets import zoo_tables
from autoconf.samplers import SamplerContext, make_sampler


def time_asks(table, history, objective, n_obs: int, repeats: int) -> list[float]:
    import random

    # the target's kops features, as a search has them: the feature prediction is a basis and a
    # candidate prior mean of the surrogate
    ctx = SamplerContext(table.space, objective, 0, table.features, history)
    sampler = make_sampler("meta", ctx)
    study = optuna.create_study(
        direction=objective.direction, sampler=optuna.samplers.RandomSampler(0)
    )
    dists = distributions(table.space)
    configs = list(table.results)
    random.Random(0).shuffle(configs)
    for c in configs[:n_obs]:
        study.enqueue_trial(c.to_dict())
        trial = study.ask(fixed_distributions=dists)
        tell(study, trial, objective, table.results[c])
    study.sampler = sampler
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        trial = study.ask(fixed_distributions=dists)
        times.append(time.perf_counter() - t0)
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
    return times


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--observations", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    tables = zoo_tables()
    target, history = tables[0], tables[1:]
    out = {
        "space_configs": target.space.size(),
        "observations": args.observations,
        "load_avg_1m_before": os.getloadavg()[0],
    }
    for label, objective in (
        ("target_load", target.objective),
        ("rps_per_cost", Objective(slo_p99_ms=target.objective.slo_p99_ms)),
    ):
        ts = time_asks(target, history, objective, args.observations, args.repeats)
        out[label] = {
            "median_s": round(statistics.median(ts), 4),
            "max_s": round(max(ts), 4),
            "repeats": len(ts),
        }
    out["load_avg_1m_after"] = os.getloadavg()[0]
    emit_json(out, args.out)


if __name__ == "__main__":
    main()
