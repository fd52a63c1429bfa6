"""The ``meta`` stopping rule: how often it stops before the budget, and how good the incumbent
is when it does. Leave-one-model(-family)-out, as ``autoconf bench``.

    python benchmarks/meta_stopping.py --dataset falcon:/work/shared/data/falcon/sources \
        --seeds 2 --budget 200 --out results/meta/stopping_falcon.json
    python benchmarks/meta_stopping.py --dataset sim:zoo --seeds 2 --budget 100 \
        --out results/meta/stopping_sim.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import optuna

from autoconf._bench import history_for, load_dataset, optimum_of
from autoconf._errors import UserError
from autoconf._study import run_trials
from autoconf.samplers import SamplerContext, make_sampler
from autoconf.stopping import StoppingContext, make_stopping_rule


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--budget", type=int, default=200)
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    tables = load_dataset(args.dataset)
    runs = []
    for t in tables:
        history = history_for(t, tables)
        try:
            opt = optimum_of(t)
        except UserError as exc:  # a table with no feasible config has no optimum to stop at
            print(f"skipped: {exc}", file=sys.stderr)
            continue
        for seed in range(args.seeds):
            ctx = SamplerContext(t.space, t.objective, seed, t.features, history)
            study = optuna.create_study(
                direction=t.objective.direction, sampler=make_sampler("meta", ctx)
            )
            rule = make_stopping_rule("meta", StoppingContext(t.objective, study.sampler))
            t0 = time.perf_counter()
            log = run_trials(
                study,
                t.space,
                t.objective,
                t.results.__getitem__,
                args.budget,
                seed=seed,
                should_stop=rule,
            )
            best = log.best(t.objective)
            n = len(log.evaluations)
            runs.append(
                {
                    "model": t.name,
                    "seed": seed,
                    "evaluations": n,
                    "stopped": n < args.budget,
                    "within_5pct": best is not None and t.objective.within(best.value, opt, 0.05),
                    "confidence": round(rule.confidence(study), 4),
                    "wall_s": round(time.perf_counter() - t0, 2),
                }
            )
            print(json.dumps(runs[-1]), flush=True)
    stopped = [r for r in runs if r["stopped"]]
    summary = {
        "dataset": args.dataset,
        "budget": args.budget,
        "runs": len(runs),
        "stopped_fraction": round(len(stopped) / max(len(runs), 1), 3),
        "within_5pct_when_stopped": round(
            sum(r["within_5pct"] for r in stopped) / max(len(stopped), 1), 3
        ),
        "median_evaluations_at_stop": sorted(r["evaluations"] for r in stopped)[len(stopped) // 2]
        if stopped
        else None,
    }
    print(json.dumps(summary))
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"summary": summary, "runs": runs}, f, indent=1)


if __name__ == "__main__":
    main()
