"""The live display shows signs of life during a trial; --no-progress keeps one line per trial;
--quiet prints nothing on success. Driven by a fake clock and a fake backend (no server)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

import stress
from autoconf import Config, Load, Measurement, Objective, load_space
from autoconf._progress import SearchProgress
from autoconf._search import _evaluator
from autoconf._study import Evaluation
from autoconf.backends._base import Backend
from autoconf.cli import main


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _text(progress: SearchProgress) -> str:
    out = Console(file=io.StringIO(), width=160, color_system=None)
    out.print(progress._render())
    return out.file.getvalue()


class SteppingBackend(Backend):
    """Not a server: two load steps of 30 s each on a fake clock, the display drawn during each."""

    name = "stepping"

    def __init__(self, space, clock, progress) -> None:
        super().__init__(space)
        self.clock, self.progress, self.seen = clock, progress, []

    def evaluate(self, profile, config, load):
        for i, rate in enumerate((100.0, 250.0), start=1):
            self.on_step(i, 5, rate, 30.0)
            self.clock.now += 30.0
            self.seen.append(_text(self.progress))
        return Measurement(ok=True, cost_per_hour=0.5, throughput_rps=250.0, p99_ms=20.0)


def test_display_shows_the_running_config_its_load_step_and_time_mid_trial():
    clock = Clock()
    objective = Objective(slo_p99_ms=50)
    progress = SearchProgress(objective, budget=10, done_before=0, clock=clock, estimate=lambda: 1)
    backend = SteppingBackend(load_space("cpu-local"), clock, progress)
    evaluate = _evaluator(backend, None, Load(slo_p99_ms=50), progress)
    config = Config(8, "cpu", cpu_cores=2)
    m = evaluate(config)
    first, second = backend.seen
    assert "bs8 cpu x1 2c" in first and "measuring" in first
    assert "load step 1 of at most 5: 100.0 requests/s for 30 s, 30 s into the trial" in first
    assert "load step 2 of at most 5: 250.0 requests/s" in second and "1 min 00 s" in second
    assert "0 of 10 configs measured, 10 left in the budget" in second
    progress.update(Evaluation(0, config, m, objective.value(m)))
    done = _text(progress)
    assert "measuring" not in done and "1 of 10 configs measured, 9 left in the budget" in done
    # one config measured: the stopping rule's confidence means nothing yet, so none is shown
    assert "confidence" not in done


def test_confidence_is_shown_once_enough_configs_are_measured_and_one_is_feasible():
    objective = Objective(slo_p99_ms=50)
    progress = SearchProgress(objective, budget=10, clock=Clock(), estimate=lambda: 0.42)
    m = Measurement(ok=True, cost_per_hour=0.5, throughput_rps=250.0, capacity_rps=250.0, p99_ms=99)
    for bs in (1, 2, 4):
        progress.update(Evaluation(bs, Config(bs, "cpu"), m, objective.value(m)))
    assert progress.confidence() is None  # three infeasible configs: no incumbent to judge
    ok = Measurement(ok=True, cost_per_hour=0.5, throughput_rps=250.0, capacity_rps=250, p99_ms=9)
    progress.update(Evaluation(8, Config(8, "cpu"), ok, objective.value(ok)))
    assert "confidence the best is within 5% of optimal: 42%" in _text(progress)


def test_every_trial_line_says_whether_its_measurement_was_stable(capsys):
    """A figure taken under interference is flagged where the user first sees it: the trial's
    line and the live table say unstable and how many fresh deployments were tried; a table's
    or the simulator's answer (stability unknown) says nothing."""
    objective = Objective(slo_p99_ms=50)
    progress = SearchProgress(objective, budget=10, clock=Clock())
    ok = dict(ok=True, cost_per_hour=0.5, throughput_rps=250.0, capacity_rps=250.0, p99_ms=9.0)
    cases = [
        (Measurement(**ok, stable=False, attempts=2), "stable: no (2 tries)"),
        (Measurement(**ok, stable=True), "stable: yes"),
        (Measurement(**ok), None),
    ]
    for n, (m, expected) in enumerate(cases, start=1):
        progress.update(Evaluation(n, Config(n, "cpu"), m, objective.value(m)))
        line = capsys.readouterr().err.strip().splitlines()[-1]
        assert line.startswith(f"trial {n}/10")
        assert (expected in line) if expected else ("stable" not in line), line
    table = _text(progress)
    assert "stable" in table and "no (2 tries)" in table


class Stepped(stress.Deployment):
    """Not a server: meets a 50 ms p99 below 400 requests/s."""

    def __init__(self) -> None:
        super().__init__(stress.DeploymentSpec(model_path=Path("double.onnx")))

    def open_loop(self, rate_rps, duration_s, warmup_s=1.0, abort_p99_ms=None):
        p99 = 5.0 if rate_rps < 400 else 500.0
        return stress.LoadResult(
            target_rps=rate_rps, duration_s=duration_s, sent=100, completed=100, errors=0,
            throughput_rps=min(rate_rps, 400.0), p50_ms=p99 / 2, p95_ms=p99, p99_ms=p99,
            max_ms=p99, error_rate=0.0, extra={"offered_rps": rate_rps},
        )  # fmt: skip

    def teardown(self) -> None:
        pass


def test_capacity_search_reports_every_load_step_before_running_it():
    steps = []
    cap = stress.capacity_search(
        Stepped(), 50.0, max_steps=4, duration_s=1.0, on_step=lambda *a: steps.append(a)
    )
    assert [s[0] for s in steps] == list(range(1, len(cap.steps) + 1))
    assert [s[2] for s in steps] == [s.target_rps for s in cap.steps]
    assert all(s[1] == 4 for s in steps)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    import kops.zoo

    return kops.zoo.build_tiny_mlp(tmp_path_factory.mktemp("model") / "tiny_mlp.onnx")


def _search(model, out, *flags):
    return main(
        [
            "search", str(model), "--slo-p99", "50ms", "--backend", "sim", "--space",
            "gpu-default", "--budget", "4", "--knowledge", "none", "--out", str(out), *flags,
        ]
    )  # fmt: skip


def test_no_progress_prints_one_line_per_trial(tiny_model, tmp_path, capsys):
    assert _search(tiny_model, tmp_path / "out", "--no-progress") == 0
    out, err = capsys.readouterr()
    trials = [line for line in err.splitlines() if line.startswith("trial ")]
    measured = int(out.split("(")[1].split()[0])  # "study: NAME (N configs measured now, ..."
    assert len(trials) == measured >= 1 and "plan:" in out


def test_quiet_prints_nothing_on_success(tiny_model, tmp_path, capsys):
    assert _search(tiny_model, tmp_path / "out", "--quiet") == 0
    assert capsys.readouterr() == ("", "")
    assert (tmp_path / "out" / "plan.yaml").exists()
