"""The search benchmark: how many evaluations a sampler needs to find a model's optimum.

Each sampler runs on each evaluation model for ``repeats`` seeds, against the model's table
(ground truth for every config), through the same ask/tell loop as a real search
(``autoconf._study.run_trials`` with one worker: a repeated suggestion is answered from the stored result and
does not count). A sampler is built from a :class:`SamplerContext` whose history holds the
training tables minus every table of the evaluation model's group, so it never sees the model
it is evaluated on. A table named ``FAMILY@VARIANT`` belongs to group ``FAMILY`` (the simulated
zoo's perturbed copies of one model); any other name is its own group. With the same dataset for
training and evaluation this is leave-one-group-out. Only training tables of the evaluated
model's space are used when there are any (a sampler learns from one space).

``--train shipped`` is the knowledge a new user's search starts from
(:mod:`autoconf.prior._shipped`), under the same rule: the evaluated model's group is left out of
it, so no model is evaluated against knowledge that holds it or any variant of it.

Where the table's optimum serves the load only by latency noise (a simulated config whose
capacity falls short of the load), the evaluations to within 5 % of the cheapest config that
serves it in truth are reported beside (:func:`served_optimum_of`).

A run ends once it has measured the optimum: no later evaluation can change a figure, and its
best-so-far curve is continued at the optimum up to the budget.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import optuna

from ._errors import UserError
from ._study import Evaluation, run_trials
from ._types import Measurement, ModelTable
from .samplers import SamplerContext, make_sampler

#: A Falcon search counts as successful at its first config scoring above this.
FALCON_SUCCESS_SCORE = 0.9


@dataclass
class BenchRecord:
    """One run: one sampler on one model with one seed. ``evals_to_*`` are 1-based counts of
    distinct configs measured, ``None`` when not reached within the budget."""

    sampler: str
    model: str
    seed: int
    budget: int
    optimum: float
    direction: str
    evals_to_within_1pct: int | None
    evals_to_within_5pct: int | None
    evals_to_optimum: int | None
    evals_to_score_0_9: int | None = None
    #: The cheapest config that serves the load in truth (:func:`served_optimum_of`; None
    #: without a target load or capacities), and the evaluations to within 5 % of it.
    served_optimum: float | None = None
    evals_to_within_5pct_served: int | None = None
    #: True for tables with Falcon's normalised score (``evals_to_score_0_9`` applies).
    scored: bool = False
    repeats: int = 0
    wall_s: float = 0.0
    best_so_far: list[float | None] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        # 6 significant digits keep a JSON of thousands of curves small
        out["best_so_far"] = [None if v is None else float(f"{v:.6g}") for v in self.best_so_far]
        return out


def group_of(name: str) -> str:
    return name.split("@", 1)[0]


def history_for(table: ModelTable, train: list[ModelTable]) -> list[ModelTable]:
    """What a run on ``table`` may learn from: ``train`` without the table's group (every
    variant of its model family), and of that the tables in its space where there are any."""
    history = [t for t in train if group_of(t.name) != group_of(table.name)]
    return [t for t in history if t.space.name == table.space.name] or history


def optimum_of(table: ModelTable) -> float:
    values = [v for m in table.results.values() if (v := table.objective.value(m)) is not None]
    if not values:
        raise UserError(f"model {table.name!r}: no feasible config in its table")
    return min(values) if table.objective.direction == "minimize" else max(values)


def served_optimum_of(table: ModelTable) -> float | None:
    """The cheapest config measured feasible whose capacity also reaches the target load; None
    without a target load or without capacities in the table.

    A simulated table's p99 carries measurement noise, so at the feasibility boundary a config
    whose noise-free capacity falls a few per cent short of the load can pass once by luck (the
    simulated zoo has such optima at 0.955-0.999 of the load). A plan at such a config misses
    its SLO in production; this optimum is the one a plan can rely on, and the bench reports
    the evaluations to it beside those to the table's optimum.
    """
    objective = table.objective
    target = objective.target_rps
    if target is None or any(m.ok and m.capacity_rps is None for m in table.results.values()):
        return None
    costs = [
        m.cost_per_hour
        for m in table.results.values()
        if objective.feasible(m) and (m.capacity_rps or 0.0) >= target
    ]
    return min(costs) if costs else None


def _is_falcon(table: ModelTable) -> bool:
    return any(m.normalized_rps_per_cost is not None for m in table.results.values())


def run_one(
    sampler: str, table: ModelTable, history: list[ModelTable], seed: int, budget: int
) -> BenchRecord:
    """One sampler, one model, one seed."""
    import time

    objective = table.objective
    context = SamplerContext(
        space=table.space,
        objective=objective,
        seed=seed,
        target_features=table.features,
        history=history,
    )
    study = optuna.create_study(
        direction=objective.direction, sampler=make_sampler(sampler, context)
    )
    cost = table.space.cost_per_hour

    def evaluate(config) -> Measurement:
        found = table.results.get(config)
        return found if found is not None else Measurement.failed("not in table", cost(config))

    opt = optimum_of(table)
    served = served_optimum_of(table)

    reached: list[bool] = []

    def seen(e: Evaluation) -> None:
        if e.value is not None and objective.within(e.value, opt, 0.0):
            reached.append(True)

    start = time.perf_counter()
    log = run_trials(
        study,
        table.space,
        objective,
        evaluate,
        budget,
        seed=seed,
        on_evaluation=seen,
        should_stop=lambda _study: bool(reached),
    )
    wall = time.perf_counter() - start
    best: float | None = None
    curve: list[float | None] = []
    firsts: dict[str, int | None] = dict.fromkeys(("1pct", "5pct", "opt", "score", "served"))
    targets = [("1pct", opt, 0.01), ("5pct", opt, 0.05), ("opt", opt, 0.0)]
    if served is not None:
        targets.append(("served", served, 0.05))
    for e in log.evaluations:
        if e.value is not None and (best is None or objective.better(e.value, best)):
            best = e.value
        curve.append(best)
        if best is not None:
            for key, target, frac in targets:
                if firsts[key] is None and objective.within(best, target, frac):
                    firsts[key] = e.index
        score = e.measurement.normalized_rps_per_cost
        if firsts["score"] is None and score is not None and score >= FALCON_SUCCESS_SCORE:
            firsts["score"] = e.index
    if curve and firsts["opt"] is not None:
        curve += [curve[-1]] * (budget - len(curve))
    return BenchRecord(
        sampler=sampler,
        model=table.name,
        seed=seed,
        budget=budget,
        optimum=opt,
        direction=objective.direction,
        evals_to_within_1pct=firsts["1pct"],
        evals_to_within_5pct=firsts["5pct"],
        evals_to_optimum=firsts["opt"],
        evals_to_score_0_9=firsts["score"] if _is_falcon(table) else None,
        scored=_is_falcon(table),
        served_optimum=served,
        evals_to_within_5pct_served=firsts["served"],
        repeats=log.repeats,
        wall_s=wall,
        best_so_far=curve,
    )


def run_bench(
    train: list[ModelTable],
    evaluate: list[ModelTable],
    samplers: list[str],
    repeats: int,
    budget: int,
    *,
    seeds: dict[str, int] | None = None,
    progress: Callable[[BenchRecord], None] | None = None,
) -> list[BenchRecord]:
    """Every sampler on every evaluation model for ``repeats`` seeds (``seeds`` may lower the
    count for one sampler, e.g. a slow one). The history of each run is ``train`` minus the
    evaluation model's group."""
    if repeats < 1 or budget < 1:
        raise UserError("--repeats and --budget must be >= 1")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    records: list[BenchRecord] = []
    for table in evaluate:
        history = history_for(table, train)
        for sampler in samplers:
            for seed in range((seeds or {}).get(sampler, repeats)):
                record = run_one(sampler, table, history, seed, budget)
                records.append(record)
                if progress is not None:
                    progress(record)
    return records


def _stats(values: Sequence[int | None], budget: int) -> str:
    """median / p90 / max of a count, a miss counting as beyond the budget (shown ``>B``)."""
    xs = sorted(math.inf if v is None else v for v in values)
    if not xs:
        return "-"

    def show(x: float) -> str:
        return f">{budget}" if math.isinf(x) else f"{x:g}"

    p90 = xs[min(len(xs) - 1, math.ceil(0.9 * len(xs)) - 1)]
    return f"{show(_median(xs))} / {show(p90)} / {show(xs[-1])}"


def _median(xs: list[float]) -> float:
    """The median of sorted counts, a miss being ``inf``: the mean of the two middle values
    when both are reached, ``inf`` when either is a miss. One rule for every sampler, so that a
    sampler with misses is not credited the lower middle value while one without is averaged."""
    n = len(xs)
    lo, hi = xs[(n - 1) // 2], xs[n // 2]
    return math.inf if math.isinf(hi) else (lo + hi) / 2


def summarize(records: list[BenchRecord]) -> str:
    """A Markdown report: per sampler the evaluations to reach the optimum, then per model."""
    if not records:
        return "(no runs)\n"
    falcon = any(r.scored for r in records)
    budget = max(r.budget for r in records)
    samplers = list(dict.fromkeys(r.sampler for r in records))
    served = any(r.served_optimum is not None for r in records)
    head = ["sampler", "runs", "to within 1%", "to within 5%", "to optimum"]
    if served:
        head.insert(4, "to within 5% of a served optimum")
    if falcon:
        head.append("to score >= 0.9")
    head.append("optimum found")
    lines = [
        "Evaluations (distinct configs measured) to reach each target: median / p90 / max "
        f"over runs; `>{budget}` = not within the budget."
        + (
            " A served optimum is the cheapest config whose capacity also reaches the load "
            "(where the table's optimum passes only by latency noise, it is the next one up)."
            if served
            else ""
        ),
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for s in samplers:
        rs = [r for r in records if r.sampler == s]
        row = [
            f"`{s}`",
            str(len(rs)),
            _stats([r.evals_to_within_1pct for r in rs], budget),
            _stats([r.evals_to_within_5pct for r in rs], budget),
            _stats([r.evals_to_optimum for r in rs], budget),
        ]
        if served:
            row.insert(4, _stats([r.evals_to_within_5pct_served for r in rs], budget))
        if falcon:
            row.append(_stats([r.evals_to_score_0_9 for r in rs if r.scored], budget))
        found = sum(r.evals_to_optimum is not None for r in rs)
        row.append(f"{found / len(rs):.0%}")
        lines.append("| " + " | ".join(row) + " |")
    lines += _ratios(records, samplers, budget)
    lines += [
        "",
        "Per model: the optimum, and the median evaluations to it per sampler.",
        "",
        "| model | objective | optimum | " + " | ".join(f"`{s}`" for s in samplers) + " |",
        "|" + "---|" * (3 + len(samplers)),
    ]
    for model in dict.fromkeys(r.model for r in records):
        rs = [r for r in records if r.model == model]
        what = "min $/h" if rs[0].direction == "minimize" else "max rps/$"
        cells = []
        for s in samplers:
            xs = sorted(
                math.inf if r.evals_to_optimum is None else r.evals_to_optimum
                for r in rs
                if r.sampler == s
            )
            cells.append(
                "-" if not xs else (f">{budget}" if math.isinf(_median(xs)) else f"{_median(xs):g}")
            )
        lines.append(f"| {model} | {what} | {rs[0].optimum:.4g} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _ratios(records: list[BenchRecord], samplers: list[str], budget: int) -> list[str]:
    """Side by side against the first sampler named: how many times more evaluations each other
    sampler needed (median to within 5 % and to the optimum; ``>=`` where its median was not
    reached within the budget, counted as the budget)."""
    if len(samplers) < 2:
        return []

    def median(s: str, key: str) -> float:
        return _median(
            sorted(
                math.inf if getattr(r, key) is None else getattr(r, key)
                for r in records
                if r.sampler == s
            )
        )

    ref = samplers[0]
    lines = [
        "",
        f"Side by side: median evaluations of each sampler / those of `{ref}` (higher = `{ref}` "
        "needed fewer).",
        "",
        "| sampler | to within 5% | to optimum |",
        "|---|---|---|",
    ]
    for s in samplers[1:]:
        cells = []
        for key in ("evals_to_within_5pct", "evals_to_optimum"):
            mine, theirs = median(ref, key), median(s, key)
            if math.isinf(mine):
                cells.append("-")
            else:
                ratio = min(theirs, budget) / mine
                cells.append(f"{'>=' if math.isinf(theirs) else ''}{ratio:.1f}x")
        lines.append(f"| `{s}` | " + " | ".join(cells) + " |")
    return lines


def regret_curves(records: list[BenchRecord]) -> dict[str, list[float]]:
    """Per sampler, the median over runs of the simple regret |best - optimum| / |optimum| after
    each evaluation (infinite while nothing feasible was found)."""
    out: dict[str, list[float]] = {}
    for s in dict.fromkeys(r.sampler for r in records):
        rs = [r for r in records if r.sampler == s]
        length = max(r.budget for r in rs)
        per_step = []
        for i in range(length):
            vals = []
            for r in rs:
                curve = r.best_so_far
                best = curve[min(i, len(curve) - 1)] if curve else None
                vals.append(
                    math.inf if best is None else abs(best - r.optimum) / abs(r.optimum or 1.0)
                )
            vals.sort()
            per_step.append(vals[(len(vals) - 1) // 2])  # lower median: inf cannot be averaged
        out[s] = per_step
    return out


def plot_regret(records: list[BenchRecord], path: str | Path, title: str = "") -> Path:
    """A PNG of the median simple-regret curves (log scale), one line per sampler."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for sampler, curve in regret_curves(records).items():
        ax.plot(range(1, len(curve) + 1), [min(max(v, 1e-4), 10.0) for v in curve], label=sampler)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("evaluations (distinct configs measured)")
    ax.set_ylabel("median simple regret")
    ax.set_title(f"{title}\n(regret 1e-4 = optimum reached, 10 = nothing feasible yet)", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def load_records(path: str | Path) -> list[BenchRecord]:
    """Records written by ``autoconf bench --json``."""
    import json

    return [BenchRecord(**r) for r in json.loads(Path(path).read_text())]


def load_dataset(spec: str) -> list[ModelTable]:
    """Tables for a DATASET spec: ``falcon:DIR``, ``sim:DIR`` (ONNX models, profiled with kops and
    simulated), ``sim:zoo`` (also ``sim:zoo/train``, ``sim:zoo/eval``), ``shipped`` (the knowledge
    the package ships, every space) or a directory of tables."""
    from .datasets import load_tables, onnx_dir_tables, zoo_tables

    if spec == "shipped":
        from .prior import shipped_all

        return shipped_all()
    kind, sep, rest = spec.partition(":")
    if sep and kind == "falcon":
        tables = load_tables(rest)
        if not all(_is_falcon(t) for t in tables):
            raise UserError(f"{rest}: not a directory of Falcon tables")
        return tables
    if sep and kind == "sim":
        if rest in ("zoo", "zoo/train", "zoo/eval"):
            split = rest.partition("/")[2] or None
            return zoo_tables(split=split)
        return onnx_dir_tables(rest)
    if Path(spec).is_dir():
        return load_tables(spec)
    raise UserError(
        f"unknown dataset {spec!r} (falcon:DIR, sim:DIR, sim:zoo, shipped, or a directory of tables)"
    )
