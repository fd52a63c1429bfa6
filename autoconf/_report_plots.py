"""report.html's plots (matplotlib, inline SVG): the search trajectory, the Pareto view of cost
against p99, latency against load and the objective per config.

Each plot is a function of (records, context) that returns a figure, or a sentence saying why
there is nothing worth drawing (one point, every point at the same x): the page shows the
sentence instead of a degenerate plot.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ._notation import again, short

if TYPE_CHECKING:
    from ._report import ReportContext, TrialRecord

GREEN, RED, BLUE, PURPLE, GREY = "#2da44e", "#d64545", "#1f6feb", "#8250df", "#8c959f"
#: An axis is logarithmic when its data spans more than this factor.
LOG_SPAN = 20.0
#: Points at x values this close (relative) are "all at the same x".
SAME_X = 0.05
FIGSIZE = (6.4, 4.2)


def plots(records: Sequence[TrialRecord], ctx: ReportContext) -> list[tuple[str, str, str]]:
    """The page's plots as (title, kind, body): kind ``svg`` (inline SVG) or ``note`` (text)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 11, "svg.fonttype": "none"})
    out: list[tuple[str, str, str]] = []
    makers: tuple[tuple[str, Callable[..., Any]], ...] = (
        ("Search trajectory", _trajectory),
        (_pareto_title(records, ctx), _pareto),
        (_latency_title(records, ctx), _latency),
        (_objective_title(ctx), _objective),
    )
    for title, make in makers:
        fig = make(plt, records, ctx)
        if isinstance(fig, str):
            out.append((title, "note", fig))
        else:
            out.append((title, "svg", _svg(fig)))
            plt.close(fig)
    return out


def _svg(fig: Any) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    svg = buf.getvalue()
    return svg[svg.index("<svg") :]


def _spans(values: Sequence[float]) -> bool:
    """Whether positive ``values`` span enough for a log axis."""
    pos = [v for v in values if v and v > 0]
    return len(pos) > 1 and max(pos) > LOG_SPAN * min(pos)


def _same(values: Sequence[float]) -> bool:
    if not values:
        return True
    lo, hi = min(values), max(values)
    return hi - lo <= SAME_X * max(abs(hi), 1e-9)


def _label(r: TrialRecord) -> str:
    """A point's label: the study's trial number (as in the tables, plan.yaml, trials.csv)."""
    return f"#{r.number} {short(r.config)}"


def _trajectory(plt: Any, records: Sequence[TrialRecord], ctx: ReportContext) -> Any:
    """Every trial's figure (cost, or requests/s per $/h) against configs measured, the best
    feasible so far as a step line; failed deployments as marks along the bottom."""
    from matplotlib.ticker import MaxNLocator

    if len(records) < 2:
        return "One config measured: no trajectory to draw yet (see the trials table)."
    obj = ctx.objective
    minimize = obj.direction == "minimize"

    def shown(r: TrialRecord) -> float | None:
        if not r.measurement.ok:
            return None
        return r.measurement.cost_per_hour if minimize else r.measurement.rps_per_cost

    fig, ax = plt.subplots(figsize=FIGSIZE)
    best, bx, by = None, [], []
    for i, r in enumerate(records, start=1):
        if r.value is not None and (best is None or obj.better(r.value, best)):
            best = r.value
            ax.annotate(
                f"#{r.number}", (i, best), textcoords="offset points", xytext=(4, 6), fontsize=8
            )
        if best is not None:
            bx.append(i)
            by.append(best)
    ys = [v for r in records if (v := shown(r))]
    for feasible, color, marker, label in (
        (True, GREEN, "o", "feasible trial"),
        (False, RED, "x", "infeasible trial"),
    ):
        pts = [
            (i, v) for i, r in enumerate(records, 1) if r.feasible == feasible and (v := shown(r))
        ]
        if pts:
            ax.scatter(*zip(*pts), s=22, color=color, marker=marker, label=label, zorder=2)
    failed = [i for i, r in enumerate(records, 1) if not r.measurement.ok]
    if failed:
        ax.scatter(failed, [0.02] * len(failed), transform=ax.get_xaxis_transform(), marker="v",
                   color=RED, s=28, label="deployment failed", zorder=2)  # fmt: skip
    if bx:
        ax.step(bx, by, where="post", color=BLUE, lw=2, label="best feasible so far", zorder=3)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlim(0.5, len(records) + 0.5)
    if _spans(ys):
        _log(ax, "y")
    ax.set_xlabel("configs measured")
    ax.set_ylabel("cost per hour ($)" if minimize else "capacity requests/s per $/h")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def pareto_front(
    points: Sequence[tuple[float, float, Any]], higher_better: bool = False
) -> list[tuple[float, float, Any]]:
    """The (cost, y, item) points no other point beats on both cost (lower is better) and ``y``
    (lower is better, or higher with ``higher_better``), cheapest first."""
    sign = -1.0 if higher_better else 1.0
    front: list[tuple[float, float, Any]] = []
    for cost, y, item in sorted(points, key=lambda p: (p[0], sign * p[1])):
        if not front or sign * y < sign * front[-1][1]:
            front.append((cost, y, item))
    return front


def _pareto_title(records: Sequence[TrialRecord], ctx: ReportContext) -> str:
    if ctx.objective.target_rps is None:
        return "Pareto view: cost against capacity"
    return "Pareto view: cost against p99"


def _pareto(plt: Any, records: Sequence[TrialRecord], ctx: ReportContext) -> Any:
    """Cost per hour against p99 at the target load (lower-left is better), or, without a
    target load, against capacity (upper-left is better: p99 at capacity sits at the SLO by
    construction); the non-dominated configs joined and named."""
    obj = ctx.objective
    by_capacity = obj.target_rps is None

    def y_of(r: TrialRecord) -> float | None:
        m = r.measurement
        return (m.capacity_rps or m.throughput_rps) if by_capacity else m.p99_ms

    pts = [
        (r.measurement.cost_per_hour, y, (i, r))
        for i, r in enumerate(records, 1)
        if r.measurement.ok and (y := y_of(r))
    ]
    if len(pts) < 2:
        return "Fewer than two configs measured successfully: no trade-off to show."
    costs = [c for c, _, _ in pts]
    if max(costs) - min(costs) <= 1e-9 * max(costs):
        return (
            f"Every config measured costs the same (${costs[0]:,.4f}/h): there is no trade-off "
            "with cost; the objective per config below ranks them."
        )
    fig, ax = plt.subplots(figsize=FIGSIZE)
    for feasible, color, marker, label in (
        (True, GREEN, "o", "feasible"),
        (False, RED, "x", "infeasible"),
    ):
        sel = [(c, y) for c, y, (_, r) in pts if r.feasible == feasible]
        if sel:
            ax.scatter(*zip(*sel), s=26, color=color, marker=marker, label=label, zorder=2)
    front = pareto_front(pts, higher_better=by_capacity)
    ax.plot([c for c, _, _ in front], [y for _, y, _ in front], color=BLUE, lw=1.2, ls="--",
            label="Pareto front: nothing both cheaper and better", zorder=1)  # fmt: skip
    for c, y, (_, r) in front[:8]:
        ax.annotate(_label(r), (c, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
    chosen = [(c, y) for c, y, (_, r) in pts if ctx.chosen is not None and r.config == ctx.chosen]
    if chosen:
        ax.scatter(*zip(*chosen), marker="*", s=200, color=BLUE, label="chosen", zorder=4)
    if obj.slo_p99_ms is not None and not by_capacity:
        ax.axhline(obj.slo_p99_ms, color=RED, ls=":", lw=1, label=f"SLO p99 {obj.slo_p99_ms:g} ms")
    if _spans([c for c, _, _ in pts]):
        _log(ax, "x")
    if _spans([y for _, y, _ in pts]):
        _log(ax, "y")
    ax.set_xlabel("cost per hour ($)")
    ax.set_ylabel(
        "capacity within the SLO (requests/s)"
        if by_capacity
        else "p99 latency at the target load (ms)"
    )
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return fig


def _log(ax: Any, axis: str) -> None:
    """A log axis with plain tick labels (0.5, 1, 2, 5, 10: never 10^0)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    getattr(ax, f"set_{axis}scale")("log")
    target = ax.xaxis if axis == "x" else ax.yaxis
    target.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    target.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.6g}"))
    target.set_minor_formatter(NullFormatter())


def _at_one_load(records: Sequence[TrialRecord]) -> bool:
    xs = [r.measurement.throughput_rps or 0.0 for r in records if r.measurement.ok]
    return _same(xs)


def _latency_title(records: Sequence[TrialRecord], ctx: ReportContext) -> str:
    if _at_one_load(records):
        return "Latency percentiles per config"
    return "Latency against throughput"


def _latency(plt: Any, records: Sequence[TrialRecord], ctx: ReportContext) -> Any:
    """p99 against throughput; when every config ran at one load (a target load), each config's
    p50-p95-p99 instead (a scatter at one x says nothing)."""
    ok = [(i, r) for i, r in enumerate(records, 1) if r.measurement.ok and r.measurement.p99_ms]
    if not ok:
        return "No config was measured successfully: no latencies to show."
    if _at_one_load(records):
        return _percentiles(plt, ok, ctx)
    obj = ctx.objective
    fig, ax = plt.subplots(figsize=FIGSIZE)
    for feasible, color, label in ((True, GREEN, "feasible"), (False, RED, "infeasible")):
        sel = [(r.measurement.throughput_rps or 0.0, r.measurement.p99_ms) for _, r in ok
               if r.feasible == feasible]  # fmt: skip
        if sel:
            ax.scatter(*zip(*sel), s=24, color=color, label=label, zorder=3)
    v = ctx.chosen_validation
    if v is not None and v.p99_ms is not None:
        ax.scatter([v.throughput_rps or 0], [v.p99_ms], marker="*", s=180, color=BLUE,
                   label=f"chosen ({again(ctx.backend)})", zorder=4)  # fmt: skip
    top = sorted(ok, key=lambda t: -(t[1].measurement.throughput_rps or 0.0))[:3]
    for _, r in top:
        ax.annotate(_label(r), (r.measurement.throughput_rps or 0.0, r.measurement.p99_ms),
                    textcoords="offset points", xytext=(5, 4), fontsize=8)  # fmt: skip
    if obj.slo_p99_ms is not None:
        ax.axhline(obj.slo_p99_ms, color=RED, ls="--", lw=1, label=f"SLO p99 {obj.slo_p99_ms:g} ms")
    if obj.target_rps is not None:
        ax.axvline(
            obj.target_rps, color=PURPLE, ls=":", lw=1, label=f"target {obj.target_rps:g} rps"
        )
    if _spans([r.measurement.throughput_rps or 0.0 for _, r in ok]):
        _log(ax, "x")
    if _spans([p for _, r in ok if (p := r.measurement.p99_ms) is not None]):
        _log(ax, "y")
    ax.set_xlabel("throughput (requests/s)" + ("" if obj.target_rps else ", at capacity"))
    ax.set_ylabel("p99 latency (ms)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return fig


def _percentiles(plt: Any, ok: list[tuple[int, TrialRecord]], ctx: ReportContext) -> Any:
    """Each config's p50, p95 and p99 at the one load they all ran at, fastest first."""
    rows = sorted(ok, key=lambda t: t[1].measurement.p99_ms or 0.0)[:25]
    fig, ax = plt.subplots(figsize=(FIGSIZE[0], max(2.6, 0.26 * len(rows) + 1.0)))
    for y, (_, r) in enumerate(rows):
        m = r.measurement
        color = GREEN if r.feasible else RED
        ax.plot([m.p50_ms or m.p99_ms, m.p99_ms], [y, y], color=color, lw=2, alpha=0.6)
        ax.scatter([m.p99_ms], [y], color=color, s=26, zorder=3)
        if m.p50_ms is not None:
            ax.scatter([m.p50_ms], [y], color=color, marker="|", s=80, zorder=3)
        if m.p95_ms is not None:
            ax.scatter([m.p95_ms], [y], color=color, marker="|", s=50, zorder=3)
    ax.set_yticks(range(len(rows)), [_label(r) for _, r in rows], fontsize=8)
    ax.invert_yaxis()
    obj = ctx.objective
    if obj.slo_p99_ms is not None:
        ax.axvline(obj.slo_p99_ms, color=RED, ls="--", lw=1, label=f"SLO p99 {obj.slo_p99_ms:g} ms")
        ax.legend(fontsize=8, loc="lower right")
    if _spans(
        [p for _, r in rows if (p := r.measurement.p99_ms) is not None]
        + [r.measurement.p50_ms or 0.0 for _, r in rows]
    ):
        _log(ax, "x")
    load = f"{obj.target_rps:g} requests/s" if obj.target_rps is not None else "one load"
    ax.set_xlabel(f"latency at {load} (ms): bar from p50 to p99, ticks p50 and p95, dot p99")
    ax.grid(alpha=0.3, axis="x", which="both")
    return fig


def _objective_title(ctx: ReportContext) -> str:
    if ctx.objective.direction == "minimize":
        return "Objective: cost per hour at the target load"
    return "Objective: capacity requests/s per $/h"


def _objective(plt: Any, records: Sequence[TrialRecord], ctx: ReportContext) -> Any:
    """The objective of every feasible config, best first (the chosen one in blue); the
    infeasible ones have none and are counted in the caption."""
    obj = ctx.objective
    feasible = [(i, r) for i, r in enumerate(records, 1) if r.value is not None]
    if not feasible:
        return "No config was feasible: there is no objective value to compare."
    sign = 1.0 if obj.direction == "minimize" else -1.0
    ranked = sorted(feasible, key=lambda t: sign * (t[1].value or 0.0))[:25]
    fig, ax = plt.subplots(figsize=(FIGSIZE[0], max(2.6, 0.26 * len(ranked) + 1.0)))
    colors = [BLUE if ctx.chosen is not None and r.config == ctx.chosen else GREEN
              for _, r in ranked]  # fmt: skip
    values = [v for _, r in ranked if (v := r.value) is not None]
    ax.barh(range(len(ranked)), values, color=colors)
    ax.set_yticks(range(len(ranked)), [_label(r) for _, r in ranked], fontsize=8)
    ax.invert_yaxis()
    if _spans(values):
        _log(ax, "x")
    unit = "$ per hour, lower is better" if sign > 0 else "requests/s per $/h, higher is better"
    left_out = len(records) - len(feasible)
    more = f"; {left_out} infeasible configs have no value" if left_out else ""
    ax.set_xlabel(f"{unit} (blue: chosen{more})")
    ax.grid(alpha=0.3, axis="x", which="both")
    return fig
