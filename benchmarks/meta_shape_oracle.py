"""How far ``meta``'s search is from its bars because of its predictions, and how far because of
the search itself: ``meta`` told each held-out model's true capacities.

    python benchmarks/meta_shape_oracle.py [--dataset sim:zoo] [--seeds 3] [--errors 0 0.1 0.2] \
        [--out FILE]

For every table of ``--dataset`` (default the simulated zoo), ``meta`` runs as ``autoconf bench
--train shipped`` runs it (the shipped knowledge with the table's family held out, budget 100),
except that its prior mean of every base config is the table's own log capacity per replica
(the median over its replica counts), moved by a constant it must learn from its first
measurement (``OFFSET``, in log capacity: the level is never known in advance) and blurred by
an independent error of sd ``error`` per base config. The rest of the surrogate (the training
models' deviations, the residual kernel, the floor model) is left as the history makes it, so
the search does not know how good its prior is. Figures: evaluations to within 5 % of the
cheapest feasible config.

With ``error`` 0 the gap to ``benchmarks/meta_sim_bound.py`` (an acquisition told every
capacity, level included) is what the level and ``meta``'s own acquisition cost; the gap to
``autoconf bench`` is what ``meta``'s predictions for a family it never saw cost.
The prior mean is replaced by patching ``Surrogate._build_features``: a diagnostic, not a
sampler anyone can ask for.
"""

from __future__ import annotations

import argparse
import math
import statistics
from multiprocessing import Pool
from unittest import mock

import numpy as np
import optuna
from _output import emit_json

from autoconf._bench import history_for, load_dataset, run_one
from autoconf._meta import _surrogate
from autoconf.prior import CAPACITY_FLOOR_RPS, measurement_score

BUDGET = 100
#: What the told capacities are off by, in log capacity (the search learns it from a measurement).
OFFSET = 1.0

_tables: dict | None = None
_history: list | None = None


def true_log_capacity(table, unit_dims: list[str], unit_configs: list) -> np.ndarray:
    """The table's log capacity per replica of every unit (the score a prior row holds, median
    over its replica counts; the capacity floor where a config has none)."""
    floor = math.log(CAPACITY_FLOOR_RPS)
    per_unit: dict[tuple, list[float]] = {}
    for c, m in table.results.items():
        score = measurement_score("log_capacity", c, m, table.objective)
        key = tuple(getattr(c, d) for d in unit_dims)
        per_unit.setdefault(key, []).append(floor if score is None else score)
    return np.array(
        [statistics.median(per_unit[tuple(getattr(c, d) for d in unit_dims)]) for c in unit_configs]
    )


def run(job: tuple[str, str, int, float]) -> tuple[str, int, float, int | None]:
    """One table, one seed, one error size: evaluations to within 5 %."""
    global _tables, _history
    dataset, name, seed, error = job
    if _tables is None:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        _tables = {t.name: t for t in load_dataset(dataset)}
        _history = load_dataset("shipped")
    assert _history is not None
    table = _tables[name]
    history = history_for(table, _history)
    build = _surrogate.Surrogate._build_features
    rng = np.random.default_rng(seed)

    def told(self, prior, target_features) -> None:
        build(self, prior, target_features)
        truth = true_log_capacity(table, self.unit_dims, self.unit_configs)
        self.mu = truth + OFFSET + error * rng.standard_normal(len(truth))
        self.bases = [self.mu]
        self.from_features = None

    with mock.patch.object(_surrogate.Surrogate, "_build_features", told):
        record = run_one("meta", table, history, seed, BUDGET)
    return name, seed, error, record.evals_to_within_5pct


def summary(counts: list[int | None]) -> dict[str, float]:
    xs = sorted(BUDGET + 1 if v is None else v for v in counts)
    return {
        "to_within_5pct_median": statistics.median(xs),
        "to_within_5pct_p90": xs[math.ceil(0.9 * len(xs)) - 1],
        "to_within_5pct_max": xs[-1],
        "runs_within_4": sum(x <= 4 for x in xs),
        "runs": len(xs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--errors", type=float, nargs="+", default=[0.0, 0.1, 0.2])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument(
        "--dataset", default="sim:zoo", help="tables to search (autoconf bench's --eval)"
    )
    parser.add_argument("--out")
    args = parser.parse_args()
    names = [t.name for t in load_dataset(args.dataset)]
    jobs = [(args.dataset, n, s, e) for e in args.errors for n in names for s in range(args.seeds)]
    with Pool(args.processes) as pool:
        results = pool.map(run, jobs, chunksize=1)
    figures = {
        "dataset": args.dataset,
        "offset_log_capacity": OFFSET,
        "budget": BUDGET,
        "seeds": args.seeds,
        **{
            f"capacity_error_sd_{e}": summary([r[3] for r in results if r[2] == e])
            for e in args.errors
        },
        "runs": [list(r) for r in results],
    }
    emit_json(figures, args.out)


if __name__ == "__main__":
    main()
