"""What the simulated-cluster bars allow: a search told every config's true capacity.

    python benchmarks/meta_sim_bound.py > results/meta/sim_bound.json

The oracle knows each config's capacity at the SLO exactly (the sim's noise-free
``capacity_rps``), which no sampler can know before measuring, but not the measurement noise
that decides the configs near the boundary: whether a config serves the load is a coin whose
odds, P(feasible | capacity / load), are the rate over every table of the zoo. It measures the
config with the largest expected cost improvement (the same acquisition as ``meta``) until its
incumbent is within 5% of the cheapest feasible config. If the oracle meets a bar and ``meta``
does not, the gap lies in ``meta``'s capacity predictions for unmeasured configs, not in the
boundary noise.

The same search is repeated with the capacities blurred by a log-normal error of each size in
``ERRORS`` (independent per base config, 5 draws): how precise capacity predictions must be
for the bars.
"""

from __future__ import annotations

import json
import statistics

import numpy as np

from autoconf._bench import load_dataset, optimum_of

BUDGET = 100
ERRORS = (0.0, 0.05, 0.1, 0.2, 0.4)  # sd of log capacity the oracle is told with
DRAWS = 5
EDGES = np.linspace(-0.3, 0.3, 31)  # log(capacity / load) bins of the feasibility curve


def feasibility_curve(tables) -> np.ndarray:
    """P(feasible) per bin of log(capacity / target load), pooled over every table."""
    ratio, feasible = [], []
    for t in tables:
        for m in t.results.values():
            if m.ok and m.capacity_rps:
                ratio.append(np.log(m.capacity_rps / t.objective.target_rps))
                feasible.append(t.objective.value(m) is not None)
    bins = np.digitize(ratio, EDGES)
    feasible = np.array(feasible)
    return np.array(
        [
            feasible[bins == k].mean() if (bins == k).any() else float(k > 0)
            for k in range(len(EDGES) + 1)
        ]
    )


def oracle_search(
    table, curve: np.ndarray, error: float = 0.0, rng: np.random.Generator | None = None
) -> int | None:
    """Evaluations the oracle needs to an incumbent within 5% of the optimum, told each base
    config's log capacity with an error of sd ``error``."""
    objective = table.objective
    optimum = optimum_of(table)
    configs = list(table.results)
    items = [table.results[c] for c in configs]
    cost = np.array([m.cost_per_hour for m in items])
    ratio = np.array(
        [
            np.log(m.capacity_rps / objective.target_rps) if m.ok and m.capacity_rps else -9.0
            for m in items
        ]
    )
    if error > 0 and rng is not None:
        base_of = [
            tuple((k, v) for k, v in c.to_dict().items() if k != "replicas") for c in configs
        ]
        bases = {b: float(rng.normal(0.0, error)) for b in dict.fromkeys(base_of)}
        ratio = ratio + np.array([bases[b] for b in base_of])
    p = curve[np.digitize(ratio, EDGES)]
    feasible = np.array([objective.value(m) is not None for m in items])
    free = np.ones(len(items), dtype=bool)
    incumbent = float(cost.max()) * 1.0001
    for n in range(1, BUDGET + 1):
        acq = np.where(free, np.maximum(incumbent - cost, 0.0) * p + 1e-12 * p, -1.0)
        i = int(np.argmax(acq))
        free[i] = False
        if feasible[i]:
            incumbent = min(incumbent, float(cost[i]))
        if objective.within(incumbent, optimum, 0.05):
            return n
    return None


def main() -> None:
    tables = load_dataset("sim:zoo")
    curve = feasibility_curve(tables)
    runs = {t.name: oracle_search(t, curve) for t in tables}
    rng = np.random.default_rng(0)
    blurred = {}
    for error in ERRORS:
        draws = 1 if error == 0 else DRAWS
        counts = [
            BUDGET + 1 if (v := oracle_search(t, curve, error, rng)) is None else v
            for t in tables
            for _ in range(draws)
        ]
        blurred[f"capacity_error_sd_{error}"] = {
            "to_within_5pct_median": statistics.median(counts),
            "to_within_5pct_p90": round(float(np.percentile(counts, 90)), 1),
            "to_within_5pct_max": max(counts),
        }
    summary = {
        **blurred,
        "budget": BUDGET,
        "p_feasible_by_log_capacity_ratio": {
            f"{lo:+.2f}..{hi:+.2f}": round(float(q), 3)
            for lo, hi, q in zip(EDGES[:-1], EDGES[1:], curve[1:-1])
        },
    }
    print(json.dumps({"summary": summary, "models": runs}, indent=1))


if __name__ == "__main__":
    main()
