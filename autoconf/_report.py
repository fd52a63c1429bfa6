"""report.html and trials.csv: what a search measured, for people and for spreadsheets.

The page is self-contained (inline SVG plots, inline CSS, no scripts, no network): it can be
mailed, attached to a CI run or opened from a file share.
"""

from __future__ import annotations

import csv
import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

from . import _record as record
from ._notation import LEGEND, again, short
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
    #: the model's kops summary (:func:`model_summary`); empty when there is no profile
    model: dict[str, Any] = field(default_factory=dict)


def _si(v: float) -> str:
    """``203.5 k``, ``4.1 G``: a count for people."""
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= factor:
            return f"{v / factor:,.1f} {prefix}"
    return f"{v:,.0f}"


def model_summary(profile: Any) -> dict[str, Any]:
    """What the report shows of a kops profile: FLOPs, parameters, key operators; empty (never
    an error) for a profile without them (the table backends' stand-ins)."""
    out: dict[str, Any] = {}
    try:
        out["FLOPs per inference"] = _si(float(profile.total_flops))
        out["parameters"] = f"{int(profile.total_params):,}"
        out["weights"] = f"{int(profile.param_bytes) / 2**20:,.1f} MiB"
        out["activations"] = f"{int(profile.activation_bytes) / 2**20:,.1f} MiB"
        out["graph nodes"] = f"{int(profile.node_count):,}"
        out["key operators"] = ", ".join(str(o) for o in profile.key_operators) or "–"
        out["at dims"] = ", ".join(f"{k}={v}" for k, v in dict(profile.dims).items()) or "–"
    except (AttributeError, TypeError, ValueError):
        pass
    return out


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1120px;
color:#1f2328;padding:0 16px}
h1{font-size:22px;margin-bottom:4px}h2{font-size:16px;margin-top:28px}
.sub{color:#59636e;margin-top:0}
.card{border:1px solid #d1d9e0;border-radius:8px;padding:12px 16px;margin:12px 0}
.ok{border-left:6px solid #2da44e}.bad{border-left:6px solid #d64545}.warn{border-left:6px solid #bf8700}
.kv{display:grid;grid-template-columns:max-content auto;gap:2px 16px}
.kv b{color:#59636e;font-weight:500}
.plots{display:flex;flex-wrap:wrap;gap:16px}.plots figure{margin:0;flex:1 1 520px;min-width:0}
.plots svg{width:100%;height:auto}figcaption{font-weight:600;margin:4px 0}
.note{color:#59636e;border:1px dashed #d1d9e0;border-radius:8px;padding:24px 16px}
.two{display:flex;flex-wrap:wrap;gap:12px;margin-top:20px}.two .card{flex:1 1 420px;margin:0}
details summary{cursor:pointer;color:#0969da}details table{margin:4px 0;width:auto}
details div{white-space:normal;max-width:420px;text-align:left}td.wrap{white-space:normal;min-width:280px}
table{border-collapse:collapse;font-size:12px;width:100%}
th,td{border-bottom:1px solid #e6e9ec;padding:3px 6px;text-align:right;white-space:nowrap}
th{background:#f6f8fa;position:sticky;top:0}td.l,th.l{text-align:left}
tr.chosen td{background:#ddf4ff;font-weight:600}tr.inf td{color:#8c959f}
code{background:#f6f8fa;padding:1px 4px;border-radius:4px}
"""


def render_report(records: Sequence[TrialRecord], ctx: ReportContext) -> str:
    """The whole page: header, plan (or why none), runners-up, re-measurements, notes, the
    model, plots, the legend and every trial."""
    from ._report_plots import plots

    e = html.escape
    obj = ctx.objective
    load = f"{obj.target_rps:g} requests/s" if obj.target_rps is not None else "its capacity"
    slo = f"p99 ≤ {obj.slo_p99_ms:g} ms" if obj.slo_p99_ms is not None else "no latency SLO"
    goal = (
        "the cheapest config per hour that serves the target load within the SLO"
        if obj.direction == "minimize"
        else "the most requests/s per dollar (capacity within the SLO / cost per hour)"
    )
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{e(ctx.title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{e(ctx.title)}</h1>",
        f"<p class='sub'>model <b>{e(ctx.model_name)}</b> · {e(slo)} at {e(load)} · space "
        f"<code>{e(ctx.space_name)}</code> · backend <code>{e(ctx.backend)}</code> · sampler "
        f"<code>{e(ctx.sampler)}</code> · {len(records)} configs measured in "
        f"{ctx.elapsed_s:,.0f} s</p><p class='sub'>objective: {e(goal)}</p>",
    ]
    parts += _outcome_card(records, ctx)
    parts += _runners_up(records, ctx)
    parts += _validations_table(ctx)
    for note in ctx.notes:
        parts.append(f"<div class='card warn'>{e(note)}</div>")
    parts += _legend_and_model(ctx)
    if records:
        parts.append("<h2>Plots</h2><div class='plots'>")
        for title, kind, body in plots(records, ctx):
            inner = body if kind == "svg" else f"<p class='note'>{e(body)}</p>"
            parts.append(f"<figure aria-label='{e(title)}'><figcaption>{e(title)}</figcaption>"
                         f"{inner}</figure>")  # fmt: skip
        parts.append("</div>")
    parts += _trials_table(records, ctx)
    if ctx.command:
        parts.append(f"<p class='sub'>made by <code>{e(redact(ctx.command))}</code></p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _objective_text(obj: Objective, m: Measurement) -> str:
    """A measurement's objective figure in words."""
    if obj.direction == "minimize":
        return f"${m.cost_per_hour:,.4f} per hour at {obj.target_rps:g} requests/s"
    v = m.rps_per_cost
    return "–" if v is None else f"{v:,.1f} requests/s per $/h"


def _legend_and_model(ctx: ReportContext) -> list[str]:
    """How to read a config's name, and the model's kops summary, side by side."""
    e = html.escape
    rows = "".join(f"<b><code>{e(k)}</code></b><span>{e(v)}</span>" for k, v in LEGEND)
    parts = [
        "<div class='two'><div class='card'><h2 style='margin-top:0'>How to read a config</h2>"
        f"<p class='sub'>e.g. <code>bs8 T4 x2 4c i2 q5ms</code></p><div class='kv'>{rows}</div>"
        "<p class='sub'>Colours: <span style='color:#2da44e'>● feasible</span> (meets the SLO at "
        "the load), <span style='color:#d64545'>× infeasible</span>, "
        "<span style='color:#1f6feb'>★ chosen</span>; #n is the trial's row below.</p></div>"
    ]
    if ctx.model:
        kv = "".join(f"<b>{e(k)}</b><span>{e(v)}</span>" for k, v in ctx.model.items())
        parts.append(
            "<div class='card'><h2 style='margin-top:0'>The model (kops)</h2>"
            f"<div class='kv'>{kv}</div></div>"
        )
    parts.append("</div>")
    return parts


def _runners_up(records: Sequence[TrialRecord], ctx: ReportContext, n: int = 5) -> list[str]:
    """The best feasible configs after the chosen one, with their re-measurement if any."""
    e = html.escape
    obj = ctx.objective
    sign = 1.0 if obj.direction == "minimize" else -1.0
    seen = {ctx.chosen.key()} if ctx.chosen is not None else set()
    rows: list[tuple[int, TrialRecord]] = []
    for i, r in sorted(
        ((i, r) for i, r in enumerate(records, 1) if r.value is not None),
        key=lambda t: (sign * (t[1].value or 0.0), t[1].measurement.p99_ms or 0.0),
    ):
        if r.config.key() not in seen:
            seen.add(r.config.key())
            rows.append((i, r))
    if not rows:
        return []
    verdicts = {
        Config.from_dict(v["config"]).key(): "holds" if v["holds"] else "did not hold"
        for v in ctx.validations
    }
    head = "Runners-up" if ctx.chosen is not None else "Best feasible configs"
    out = [
        f"<h2>{head}</h2><table><tr><th>#</th><th class='l'>config</th><th>objective</th>"
        "<th>cost $/h</th><th>p99 ms</th><th>throughput rps</th><th>capacity rps</th>"
        "<th class='l'>re-measured</th></tr>"
    ]
    for _, r in rows[:n]:
        m = r.measurement
        out.append(
            f"<tr><td>{r.number}</td><td class='l'>{e(short(r.config))}</td>"
            f"<td>{e(_objective_text(obj, m))}</td><td>{_num(m.cost_per_hour, '', 4)}</td>"
            f"<td>{_num(m.p99_ms)}</td><td>{_num(m.throughput_rps)}</td>"
            f"<td>{_num(m.capacity_rps)}</td>"
            f"<td class='l'>{verdicts.get(r.config.key(), 'not re-measured')}</td></tr>"
        )
    out.append("</table>")
    return out


def _outcome_card(records: Sequence[TrialRecord], ctx: ReportContext) -> list[str]:
    """The chosen plan, or why there is none and the closest configs."""
    e = html.escape
    parts: list[str] = []
    if ctx.outcome == "plan" and ctx.chosen is not None:
        v = ctx.chosen_validation
        parts.append(
            "<div class='card ok'><h2 style='margin-top:0'>Chosen plan</h2><div class='kv'>"
        )
        rows = [("config", short(ctx.chosen))]
        if v is not None:
            rows += [
                ("objective", _objective_text(ctx.objective, v)),
                ("cost per hour", f"${v.cost_per_hour:,.4f}"),
                (
                    "validated at",
                    f"{ctx.validated_rps:,.1f} requests/s" if ctx.validated_rps else "–",
                ),
                (f"{again(ctx.backend)} p99", _num(v.p99_ms, " ms")),
                (
                    f"{again(ctx.backend)} p50 / p95",
                    f"{_num(v.p50_ms, ' ms')} / {_num(v.p95_ms, ' ms')}",
                ),
                (f"{again(ctx.backend)} throughput", _num(v.throughput_rps, " requests/s")),
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
                    f"<tr><td class='l'>{e(short(r.config))}</td><td>{_num(m.p99_ms)}</td>"
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
                f"<tr><td class='l'>{e(short(Config.from_dict(v['config'])))}</td>"
                f"<td>{_num(v.get('target_rps'))}</td><td>{_num(v.get('p99_ms'))}</td>"
                f"<td>{_num(v.get('throughput_rps'))}</td>"
                f"<td class='l'>{'holds' if v['holds'] else 'does not hold'}</td>"
                f"<td class='l wrap'>{e(_validation_stability(v))}</td></tr>"
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
        "<th class='l'>feasible</th><th class='l'>stable</th><th>s</th>"
        "<th class='l'>load steps</th></tr>"
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
            f"<tr class='{cls}'><td>{r.number}</td><td class='l'>{e(short(r.config))}</td>"
            f"<td>{_num(m.cost_per_hour, '', 4)}</td><td>{_num(m.p50_ms)}</td>"
            f"<td>{_num(m.p95_ms)}</td><td>{_num(m.p99_ms)}</td><td>{_num(m.throughput_rps)}</td>"
            f"<td>{_num(m.capacity_rps)}</td><td>{_num(100 * m.error_rate, ' %', 1)}</td>"
            f"<td class='l'>{e(verdict)}</td><td class='l'>{e(stability(m).split(':')[0])}</td>"
            f"<td>{m.wall_s:.1f}</td><td class='l'>{_steps_details(m)}</td></tr>"
        )
    parts.append("</table>")
    return parts


def _steps_details(m: Measurement) -> str:
    """A trial's capacity-search steps and stability, folded (``<details>``); ``–`` when the
    backend recorded neither (tables, the simulator)."""
    e = html.escape
    steps = m.extra.get("capacity_steps") or []
    facts = []
    for name, v in (("throughput spread", m.throughput_spread), ("latency spread", m.latency_spread),
                    ("late sends", m.late_send_share)):  # fmt: skip
        if v is not None:
            facts.append(f"{name} {v:.0%}")
    if m.generator_cpu_headroom is not None:
        facts.append(f"generator CPU headroom {m.generator_cpu_headroom:.2f} cores")
    if m.attempts > 1:
        facts.append(f"{m.attempts} deployments")
    reasons = list(m.unstable_reasons)
    if not steps and not facts and not reasons:
        return "–"
    summary = f"{len(steps)} steps" if steps else "stability"
    body = []
    if steps:
        body.append("<table><tr><th>rate rps</th><th>p99 ms</th><th class='l'>SLO</th>"
                    "<th class='l'>stable</th><th class='l'></th></tr>")  # fmt: skip
        for s in steps:
            passed = {True: "met", False: "missed"}.get(s.get("passed"), "–")
            stable = {True: "yes", False: "no"}.get(s.get("stable"), "–")
            again = "measured again" if s.get("superseded") else ""
            body.append(
                f"<tr><td>{_num(s.get('rate_rps'))}</td><td>{_num(s.get('p99_ms'))}</td>"
                f"<td class='l'>{passed}</td><td class='l'>{stable}</td>"
                f"<td class='l'>{again}</td></tr>"
            )
        body.append("</table>")
    if facts:
        body.append(f"<div>{e(', '.join(facts))}</div>")
    body += [f"<div>unstable: {e(r)}</div>" for r in reasons]
    return f"<details><summary>{summary}</summary>{''.join(body)}</details>"


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
