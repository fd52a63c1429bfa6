"""report.html and trials.csv from stored trials: self-contained, complete, readable numbers."""

from __future__ import annotations

import csv
import re

import optuna

from autoconf import Measurement, Objective, load_space
from autoconf._record import tell
from autoconf._report import ReportContext, closest, render_report, trial_records, write_trials_csv


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


def test_report_is_self_contained_with_three_plots_and_every_trial():
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
    assert page.count("<svg") == 3
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
