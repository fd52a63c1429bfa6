"""report.html and trials.csv from stored trials: self-contained, complete, readable numbers."""

from __future__ import annotations

import csv
import re

import optuna

from autoconf import Config, Measurement, Objective, load_space
from autoconf._record import tell
from autoconf._report import (
    ReportContext,
    TrialRecord,
    closest,
    render_report,
    trial_records,
    write_trials_csv,
)
from autoconf._report_plots import pareto_front


def _study(objective):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction=objective.direction)
    space = load_space("cpu-local")
    from autoconf._record import distributions

    dists = distributions(space)
    for i, c in enumerate(space.configs()[:6]):
        trial = study.ask(fixed_distributions=dists)
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        study.enqueue_trial(c.to_dict())
        trial = study.ask(fixed_distributions=dists)
        if i == 5:
            m = Measurement.failed("OOMKilled", space.cost_per_hour(c))
        else:
            p99 = 20.0 + 15 * i
            m = Measurement(
                ok=True,
                cost_per_hour=100.0 * (6 - i),
                throughput_rps=60.0,
                p50_ms=p99 / 3,
                p95_ms=p99 / 2,
                p99_ms=p99,
            )
        tell(study, trial, objective, m)
    return study


def test_report_is_self_contained_with_four_plots_and_every_trial():
    objective = Objective(slo_p99_ms=50, target_rps=60)
    records = trial_records(_study(objective), objective)
    assert len(records) == 6 and [r.feasible for r in records] == [True] * 3 + [False] * 3
    best = min((r for r in records if r.feasible), key=lambda r: r.value)
    ctx = ReportContext(
        title="t",
        model_name="m.onnx",
        objective=objective,
        space_name="cpu-local",
        backend="sim",
        sampler="meta",
        outcome="plan",
        chosen=best.config,
        chosen_validation=best.measurement,
        validated_rps=60.0,
    )
    page = render_report(records, ctx)
    assert page.count("<svg") == 4 and "class='note'" not in page
    for part in ("How to read a config", "Runners-up", "Pareto view: cost against p99"):
        assert part in page
    # every config ran at the target load: percentiles per config, not a scatter at one x
    assert "Latency percentiles per config" in page and "Latency against throughput" not in page
    assert "per hour at 60 requests/s" in page  # the objective itself, not only the price
    assert not re.search(r"""(src|href)=["']?https?:""", page) and "<script" not in page
    assert page.count("<tr class='chosen'>") == 1
    assert "400.0000" in page and "e+0" not in page.split("<svg")[0]  # no %g-style 4e+02
    assert "failed: OOMKilled" in page


def test_no_plan_page_lists_the_closest_configs_first():
    objective = Objective(slo_p99_ms=10, target_rps=60)  # nothing meets 10 ms
    records = trial_records(_study(objective), objective)
    near = closest(records, 2)
    assert [r.measurement.p99_ms for r in near] == [20.0, 35.0]
    ctx = ReportContext(
        title="t",
        model_name="m.onnx",
        objective=objective,
        space_name="s",
        backend="sim",
        sampler="meta",
        outcome="infeasible",
    )
    page = render_report(records, ctx)
    assert "No plan." in page and page.index("closest configs") < page.index("<svg")


def test_trials_csv_has_one_row_per_measured_config(tmp_path):
    objective = Objective(slo_p99_ms=50, target_rps=60)
    records = trial_records(_study(objective), objective)
    path = write_trials_csv(tmp_path / "trials.csv", records)
    rows = list(csv.DictReader(path.open()))
    assert len(rows) == 6 and rows[0]["batch_size"] == "1" and rows[0]["p99_ms"] == "20"
    assert rows[5]["ok"] == "False" and rows[5]["error"] == "OOMKilled"


def _ctx(objective, **kw):
    base = dict(
        title="t",
        model_name="m.onnx",
        objective=objective,
        space_name="s",
        backend="local",
        sampler="meta",
        outcome="infeasible",
    )
    return ReportContext(**{**base, **kw})


def _record(number, config, m, objective):
    return TrialRecord(
        number=number,
        config=config,
        measurement=m,
        feasible=objective.feasible(m),
        violation=objective.violation(m),
        value=objective.value(m),
    )


def test_one_trial_shows_notes_instead_of_degenerate_plots():
    objective = Objective(slo_p99_ms=50)
    m = Measurement(ok=True, cost_per_hour=1.0, throughput_rps=90.0, capacity_rps=90.0, p99_ms=30)
    page = render_report([_record(0, Config(8, "cpu"), m, objective)], _ctx(objective))
    assert "One config measured: no trajectory" in page
    assert "Fewer than two configs measured successfully" in page
    assert "−0.04" not in page  # matplotlib's axis around a single value (unicode minus)


def test_hostile_names_are_escaped_in_tables_and_plots():
    objective = Objective(slo_p99_ms=50)
    evil = "<script>alert(1)</script>"
    records = [
        _record(
            i,
            Config(2**i, evil, replicas=i + 1),
            Measurement(
                ok=True,
                cost_per_hour=1.0 + i,
                throughput_rps=50.0 * (i + 1),
                capacity_rps=50.0 * (i + 1),
                p99_ms=20.0 + i,
            ),  # fmt: skip
            objective,
        )
        for i in range(3)
    ]
    page = render_report(records, _ctx(objective, model_name=evil, title=evil))
    assert "<script" not in page and "&lt;script&gt;" in page


def test_capacity_steps_and_stability_fold_out_per_trial():
    objective = Objective(slo_p99_ms=50)
    m = Measurement(
        ok=True, cost_per_hour=1.0, throughput_rps=90.0, capacity_rps=90.0, p99_ms=45.0,
        stable=False, throughput_spread=0.31, unstable_reasons=["throughput wandered"],
        extra={"capacity_steps": [
            {"rate_rps": 100.0, "p99_ms": 80.0, "passed": False, "stable": True, "superseded": False},
            {"rate_rps": 90.0, "p99_ms": 45.0, "passed": True, "stable": False, "superseded": True},
            {"rate_rps": 90.0, "p99_ms": 44.0, "passed": True, "stable": False, "superseded": False},
        ]},
    )  # fmt: skip
    page = render_report([_record(0, Config(8, "cpu"), m, objective)], _ctx(objective))
    details = page[page.index("<details>") : page.index("</details>")]
    assert "3 steps" in details and "measured again" in details and "missed" in details
    assert "throughput spread 31%" in details and "unstable: throughput wandered" in details


def test_pareto_front_keeps_only_configs_nothing_beats_on_cost_and_p99():
    pts = [(1.0, 40.0, "a"), (2.0, 30.0, "b"), (2.5, 35.0, "c"), (3.0, 10.0, "d"), (1.0, 45.0, "e")]
    assert [p[2] for p in pareto_front(pts)] == ["a", "b", "d"]
    assert [p[2] for p in pareto_front(pts, higher_better=True)] == ["e"]
