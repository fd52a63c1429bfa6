"""report.html and trials.csv: what a search measured, for people and for spreadsheets.

The page is self-contained (inline SVG plots, inline CSS, no scripts, no network): it can be
mailed, attached to a CI run or opened from a file share.
"""

from __future__ import annotations

import csv
import html
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

from . import _record as record
from ._objective import Objective
from ._secrets import redact
from ._types import Config, Measurement

_METRICS = (
    "cost_per_hour",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "throughput_rps",
    "capacity_rps",
    "error_rate",
)


@dataclass
class TrialRecord:
    """One measured config of a study, in the order it was measured."""

    number: int
    config: Config
    measurement: Measurement
    feasible: bool
    violation: float
    value: float | None


def trial_records(study: optuna.Study, objective: Objective) -> list[TrialRecord]:
    """Every distinct measured config (repeats and failed/interrupted trials left out)."""
    return [
        TrialRecord(
            number=t.number,
            config=record.config_of(t),
            measurement=m,
            feasible=record.feasible_of(t),
            violation=record.stored_violation(t),
            value=objective.value(m),
        )
        for t, m in record.measured_trials(study)
    ]


def closest(records: Sequence[TrialRecord], n: int = 5) -> list[TrialRecord]:
    """The ``n`` configs nearest to feasible (smallest violation, then cheapest)."""
    return sorted(records, key=lambda r: (r.violation, r.measurement.cost_per_hour))[:n]


def write_trials_csv(path: str | Path, records: Sequence[TrialRecord]) -> Path:
    path = Path(path)
    dims: list[str] = []
    for r in records:
        for k in r.config.to_dict():
            if k not in dims:
                dims.append(k)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "trial",
                *dims,
                *_METRICS,
                "ok",
                "feasible",
                "violation",
                "error",
                "wall_s",
                "stable",
                "throughput_spread",
                "unstable_reasons",
            ]
        )
        for r in records:
            cfg = r.config.to_dict()
            m = r.measurement
            w.writerow(
                [
                    r.number,
                    *(cfg.get(d, "") for d in dims),
                    *(_csv_num(getattr(m, k)) for k in _METRICS),
                    m.ok,
                    r.feasible,
                    f"{r.violation:.4g}",
                    m.error or "",
                    f"{m.wall_s:.2f}",
                    "" if m.stable is None else m.stable,
                    _csv_num(m.throughput_spread),
                    "; ".join(m.unstable_reasons),
                ]
            )
    return path


def _csv_num(v: float | None) -> str:
    return "" if v is None else f"{v:.6g}"


def _num(v: float | None, unit: str = "", digits: int = 1) -> str:
    """Fixed-point numbers for people (never ``1e+02``)."""
    if v is None:
        return "–"
    return f"{v:,.{digits}f}{unit}"


@dataclass
class ReportContext:
    """Everything the page shows besides the trials."""

    title: str
    model_name: str
    objective: Objective
    space_name: str
    backend: str
    sampler: str
    outcome: str  # "plan" | "infeasible" | "interrupted" | "unvalidated"
    chosen: Config | None = None
    chosen_validation: Measurement | None = None
    validated_rps: float | None = None
    validations: list[dict[str, Any]] = field(default_factory=list)
    command: str = ""
    elapsed_s: float = 0.0
    notes: list[str] = field(default_factory=list)


def _again(ctx: ReportContext) -> str:
    """What the chosen config's second look was: simulated (the ``sim`` backend measures
    nothing) or re-measured."""
    return "simulated" if ctx.backend == "sim" else "re-measured"


def _svg(fig: Any) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    svg = buf.getvalue()
    return svg[svg.index("<svg") :]


def _plots(records: Sequence[TrialRecord], ctx: ReportContext) -> list[tuple[str, str]]:
    """The page's plots as (title, inline SVG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 9, "svg.fonttype": "none"})
    out: list[tuple[str, str]] = []
    for title, plot in (
        ("Search trajectory", _trajectory_plot),
        ("Latency against throughput", _latency_plot),
        ("Cost per config", _cost_plot),
    ):
        fig = plot(plt, records, ctx)
        out.append((title, _svg(fig)))
        plt.close(fig)
    return out


def _trajectory_plot(plt: Any, records: Sequence[TrialRecord], ctx: ReportContext) -> Any:
    """Best feasible objective against the number of configs measured, every trial's own."""
    obj = ctx.objective
    fig, ax = plt.subplots(figsize=(5.2, 3.2))
    xs, best, bx, by = [], None, [], []
    for i, r in enumerate(records, start=1):
        xs.append(i)
        if r.value is not None and (best is None or obj.better(r.value, best)):
            best = r.value
        if best is not None:
            bx.append(i)
            by.append(best)

    def shown(r: TrialRecord) -> float:
        """Every trial's own objective figure: its cost (or rps per $/h), feasible or not."""
        if obj.direction == "minimize":
            return r.measurement.cost_per_hour
        return r.measurement.rps_per_cost or 0.0

    for feasible, color, marker, label in (
        (True, "#2da44e", "o", "feasible trial"),
        (False, "#d64545", "x", "infeasible trial"),
    ):
        pts = [(i, shown(r)) for i, r in enumerate(records, start=1) if r.feasible == feasible]
        if pts:
            ax.scatter(*zip(*pts), s=16, color=color, marker=marker, label=label, zorder=2)
    if bx:
        ax.step(bx, by, where="post", color="#1f6feb", lw=2, label="best so far", zorder=3)
    ax.set_xlabel("configs measured")
    ax.set_ylabel("cost per hour ($)" if obj.direction == "minimize" else "rps per $/h")
    ax.set_title("Search trajectory")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def _latency_plot(plt: Any, records: Sequence[TrialRecord], ctx: ReportContext) -> Any:
    """p99 latency against throughput, with the SLO and the target load."""
    obj = ctx.objective
    fig, ax = plt.subplots(figsize=(5.2, 3.2))
    ok = [r for r in records if r.measurement.ok and r.measurement.p99_ms is not None]
    for feasible, color, label in ((True, "#2da44e", "feasible"), (False, "#d64545", "infeasible")):
        pts = [r for r in ok if r.feasible == feasible]
        ax.scatter(
            [r.measurement.throughput_rps or 0 for r in pts],
            [r.measurement.p99_ms for r in pts],
            s=18,
            color=color,
            label=label,
            zorder=3,
        )
    if ctx.chosen_validation is not None and ctx.chosen_validation.p99_ms is not None:
        v = ctx.chosen_validation
        ax.scatter(
            [v.throughput_rps or 0],
            [v.p99_ms],
            marker="*",
            s=140,
            color="#1f6feb",
            label=f"chosen ({_again(ctx)})",
            zorder=4,
        )
    if obj.slo_p99_ms is not None:
        ax.axhline(
            obj.slo_p99_ms, color="#d64545", ls="--", lw=1, label=f"SLO p99 {obj.slo_p99_ms:g} ms"
        )
    if obj.target_rps is not None:
        ax.axvline(
            obj.target_rps, color="#8250df", ls=":", lw=1, label=f"target {obj.target_rps:g} rps"
        )
    ax.set_xlabel("throughput (requests/s)")
    ax.set_ylabel("p99 latency (ms)")
    if ok and max(r.measurement.p99_ms for r in ok) > 20 * min(r.measurement.p99_ms for r in ok):
        ax.set_yscale("log")
    ax.set_title("Latency against throughput")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def _cost_plot(plt: Any, records: Sequence[TrialRecord], ctx: ReportContext) -> Any:
    """Cost per config, cheapest first (the chosen one in blue)."""
    ranked = sorted(records, key=lambda r: r.measurement.cost_per_hour)[:30]
    fig, ax = plt.subplots(figsize=(5.2, max(2.4, 0.22 * len(ranked) + 0.8)))
    colors = []
    for r in ranked:
        if ctx.chosen is not None and r.config == ctx.chosen:
            colors.append("#1f6feb")
        else:
            colors.append("#2da44e" if r.feasible else "#d64545")
    ax.barh(range(len(ranked)), [r.measurement.cost_per_hour for r in ranked], color=colors)
    ax.set_yticks(range(len(ranked)), [_short(r.config) for r in ranked], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("cost per hour ($)  — blue: chosen, green: feasible, red: infeasible")
    ax.set_title("Cost per config")
    ax.grid(alpha=0.3, axis="x")
    return fig


def _short(c: Config) -> str:
    d = c.to_dict()
    parts = [
        f"bs{d['batch_size']}",
        str(d["gpu_type"]),
        f"x{d['replicas']}",
        f"{d['cpu_cores']:g}c",
    ]
    if "instances_per_gpu" in d:
        parts.append(f"i{d['instances_per_gpu']}")
    if "max_queue_delay_ms" in d:
        parts.append(f"q{d['max_queue_delay_ms']:g}ms")
    return " ".join(parts)


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1120px;
color:#1f2328;padding:0 16px}
h1{font-size:22px;margin-bottom:4px}h2{font-size:16px;margin-top:28px}
.sub{color:#59636e;margin-top:0}
.card{border:1px solid #d1d9e0;border-radius:8px;padding:12px 16px;margin:12px 0}
.ok{border-left:6px solid #2da44e}.bad{border-left:6px solid #d64545}.warn{border-left:6px solid #bf8700}
.kv{display:grid;grid-template-columns:max-content auto;gap:2px 16px}
.kv b{color:#59636e;font-weight:500}
.plots{display:flex;flex-wrap:wrap;gap:12px}.plots figure{margin:0;flex:1 1 340px}
.plots svg{width:100%;height:auto}
table{border-collapse:collapse;font-size:12px;width:100%}
th,td{border-bottom:1px solid #e6e9ec;padding:3px 6px;text-align:right;white-space:nowrap}
th{background:#f6f8fa;position:sticky;top:0}td.l,th.l{text-align:left}
tr.chosen td{background:#ddf4ff;font-weight:600}tr.inf td{color:#8c959f}
code{background:#f6f8fa;padding:1px 4px;border-radius:4px}
"""


def render_report(records: Sequence[TrialRecord], ctx: ReportContext) -> str:
    """The whole page: header, plan (or why none), re-measurements, notes, plots, trials."""
    e = html.escape
    obj = ctx.objective
    load = f"{obj.target_rps:g} requests/s" if obj.target_rps is not None else "its capacity"
    slo = f"p99 ≤ {obj.slo_p99_ms:g} ms" if obj.slo_p99_ms is not None else "no latency SLO"
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{e(ctx.title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{e(ctx.title)}</h1>",
        f"<p class='sub'>model <b>{e(ctx.model_name)}</b> · {e(slo)} at {e(load)} · space "
        f"<code>{e(ctx.space_name)}</code> · backend <code>{e(ctx.backend)}</code> · sampler "
        f"<code>{e(ctx.sampler)}</code> · {len(records)} configs measured in "
        f"{ctx.elapsed_s:,.0f} s</p>",
    ]
    parts += _outcome_card(records, ctx)
    parts += _validations_table(ctx)
    for note in ctx.notes:
        parts.append(f"<div class='card warn'>{e(note)}</div>")
    if records:
        parts.append("<h2>Plots</h2><div class='plots'>")
        for title, svg in _plots(records, ctx):
            parts.append(f"<figure aria-label='{e(title)}'>{svg}</figure>")
        parts.append("</div>")
    parts += _trials_table(records, ctx)
    if ctx.command:
        parts.append(f"<p class='sub'>made by <code>{e(redact(ctx.command))}</code></p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _outcome_card(records: Sequence[TrialRecord], ctx: ReportContext) -> list[str]:
    """The chosen plan, or why there is none and the closest configs."""
    e = html.escape
    parts: list[str] = []
    if ctx.outcome == "plan" and ctx.chosen is not None:
        v = ctx.chosen_validation
        parts.append(
            "<div class='card ok'><h2 style='margin-top:0'>Chosen plan</h2><div class='kv'>"
        )
        rows = [("config", _short(ctx.chosen))]
        if v is not None:
            rows += [
                ("cost per hour", f"${v.cost_per_hour:,.4f}"),
                (
                    "validated at",
                    f"{ctx.validated_rps:,.1f} requests/s" if ctx.validated_rps else "–",
                ),
                (f"{_again(ctx)} p99", _num(v.p99_ms, " ms")),
                (f"{_again(ctx)} p50 / p95", f"{_num(v.p50_ms, ' ms')} / {_num(v.p95_ms, ' ms')}"),
                (f"{_again(ctx)} throughput", _num(v.throughput_rps, " requests/s")),
                ("error rate", _num(100 * v.error_rate, " %", 2)),
            ]
        parts += [f"<b>{e(k)}</b><span>{e(str(val))}</span>" for k, val in rows]
        parts.append("</div></div>")
    else:
        msg = {
            "infeasible": "No measured config met the SLO at the target load. The closest configs are "
            "listed below; relax the SLO, lower the load or widen the search space.",
            "interrupted": "The search was interrupted; every finished trial is kept "
            "(continue it with --resume).",
            "unvalidated": "Feasible configs were found, but none held when re-measured at the "
            "target load and the budget is spent.",
        }.get(ctx.outcome, ctx.outcome)
        parts.append(f"<div class='card bad'><b>No plan.</b> {e(msg)}")
        if records:
            parts.append(
                "<table><tr><th class='l'>closest configs</th><th>p99 ms</th>"
                "<th>throughput rps</th><th>cost $/h</th><th>violation</th></tr>"
            )
            for r in closest(records):
                m = r.measurement
                parts.append(
                    f"<tr><td class='l'>{e(_short(r.config))}</td><td>{_num(m.p99_ms)}</td>"
                    f"<td>{_num(m.throughput_rps)}</td><td>{_num(m.cost_per_hour, '', 4)}</td>"
                    f"<td>{'failed' if not m.ok else f'{100 * r.violation:.0f} %'}</td></tr>"
                )
            parts.append("</table>")
        parts.append("</div>")
    return parts


def _validations_table(ctx: ReportContext) -> list[str]:
    e = html.escape
    parts: list[str] = []
    if ctx.validations:
        parts.append(
            "<h2>Re-measurements of the best configs at the target load</h2><table>"
            "<tr><th class='l'>config</th><th>load rps</th><th>p99 ms</th>"
            "<th>throughput rps</th><th class='l'>verdict</th><th class='l'>stable</th></tr>"
        )
        for v in ctx.validations:
            parts.append(
                f"<tr><td class='l'>{e(_short(Config.from_dict(v['config'])))}</td>"
                f"<td>{_num(v.get('target_rps'))}</td><td>{_num(v.get('p99_ms'))}</td>"
                f"<td>{_num(v.get('throughput_rps'))}</td>"
                f"<td class='l'>{'holds' if v['holds'] else 'does not hold'}</td>"
                f"<td class='l'>{e(_validation_stability(v))}</td></tr>"
            )
        parts.append("</table>")
    return parts


def _validation_stability(v: dict) -> str:
    if v.get("stable") is None:
        return "-"
    spreads = [
        f"{name} spread {v[k]:.0%}"
        for name, k in (("throughput", "throughput_spread"), ("latency", "latency_spread"))
        if v.get(k) is not None
    ]
    head = "yes" if v["stable"] else "no: " + "; ".join(v.get("unstable_reasons") or [])
    return head + (f" ({', '.join(spreads)})" if spreads else "")


def _trials_table(records: Sequence[TrialRecord], ctx: ReportContext) -> list[str]:
    e = html.escape
    parts: list[str] = []
    parts.append(
        f"<h2>Trials ({len(records)})</h2><table><tr><th>#</th><th class='l'>config</th>"
        "<th>cost $/h</th><th>p50 ms</th><th>p95 ms</th><th>p99 ms</th>"
        "<th>throughput rps</th><th>capacity rps</th><th>errors</th>"
        "<th class='l'>feasible</th><th class='l'>stable</th><th>s</th></tr>"
    )
    for r in records:  # numbered as trials.csv and plan.yaml number them: the study's trial
        m = r.measurement
        cls = (
            "chosen"
            if ctx.chosen is not None and r.config == ctx.chosen
            else ("" if r.feasible else "inf")
        )
        verdict = "yes" if r.feasible else ("failed: " + (m.error or "")[:60] if not m.ok else "no")
        parts.append(
            f"<tr class='{cls}'><td>{r.number}</td><td class='l'>{e(_short(r.config))}</td>"
            f"<td>{_num(m.cost_per_hour, '', 4)}</td><td>{_num(m.p50_ms)}</td>"
            f"<td>{_num(m.p95_ms)}</td><td>{_num(m.p99_ms)}</td><td>{_num(m.throughput_rps)}</td>"
            f"<td>{_num(m.capacity_rps)}</td><td>{_num(100 * m.error_rate, ' %', 1)}</td>"
            f"<td class='l'>{e(verdict)}</td><td class='l'>{e(stability(m))}</td>"
            f"<td>{m.wall_s:.1f}</td></tr>"
        )
    parts.append("</table>")
    return parts


def stability(m: Measurement) -> str:
    """A measurement's stability as a cell: ``-`` where unknown (tables, the simulator),
    ``yes`` with the throughput spread, or ``no:`` and the reasons; with the attempts made."""
    if m.stable is None:
        return "-"
    again = f" ({m.attempts} deployments)" if m.attempts > 1 else ""
    if m.stable:
        spread = "" if m.throughput_spread is None else f" (spread {m.throughput_spread:.0%})"
        return f"yes{spread}{again}"
    return f"no{again}: " + "; ".join(m.unstable_reasons or ["unstable"])


def write_report(path: str | Path, records: Sequence[TrialRecord], ctx: ReportContext) -> Path:
    path = Path(path)
    path.write_text(render_report(records, ctx), encoding="utf-8")
    return path
