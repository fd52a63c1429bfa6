"""Leave-one-model-out on the Falcon tables with the ``meta`` sampler, driven by run_trials.

python benchmarks/meta_falcon.py [--dir DIR] [--seeds N] [--budget N] [--models a,b]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import optuna

from autoconf._study import run_trials
from autoconf.backends._replay import load_tables
from autoconf.samplers import SamplerContext, make_sampler


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default="/work/shared/data/falcon/sources")
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--budget", type=int, default=200)
    ap.add_argument("--sampler", default="meta")
    ap.add_argument("--models", default="")
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    tables = load_tables(args.dir)
    wanted = set(args.models.split(",")) if args.models else None
    exact, one = [], []
    for t in tables:
        if wanted and t.name not in wanted:
            continue
        history = [h for h in tables if h.name != t.name]
        opt = max(t.objective.value(m) for m in t.results.values())
        for seed in range(args.seeds):
            ctx = SamplerContext(t.space, t.objective, seed, None, history)
            study = optuna.create_study(
                direction="maximize", sampler=make_sampler(args.sampler, ctx)
            )
            hits: dict[str, int] = {}

            def on_eval(e, hits=hits, opt=opt, t=t):
                if e.value is not None:
                    if "one" not in hits and t.objective.within(e.value, opt, 0.01):
                        hits["one"] = e.index
                    if "exact" not in hits and e.value >= opt:
                        hits["exact"] = e.index

            t0 = time.perf_counter()
            run_trials(
                study,
                t.space,
                t.objective,
                t.results.__getitem__,
                args.budget,
                seed=seed,
                on_evaluation=on_eval,
                should_stop=lambda s, h=hits: "exact" in h,
            )
            exact.append(hits.get("exact", 10**6))
            one.append(hits.get("one", 10**6))
            print(
                json.dumps(
                    {
                        "model": t.name,
                        "seed": seed,
                        **hits,
                        "wall_s": round(time.perf_counter() - t0, 2),
                    }
                ),
                flush=True,
            )
    e, o = np.array(exact), np.array(one)
    print(
        f"exact: median {statistics.median(e)} p90 {np.percentile(e, 90):.1f} reached {np.mean(e < 10**6):.2f}"
    )
    print(f"1%:    median {statistics.median(o)} p90 {np.percentile(o, 90):.1f}")


if __name__ == "__main__":
    main()
