"""The shared ask/tell loop: counting, dedupe of repeated suggestions, resume from storage."""

from __future__ import annotations

import optuna
import pytest

from autoconf import Config, Measurement, Objective, load_space
from autoconf._record import measured_configs
from autoconf._study import MAX_REPEATS_IN_A_ROW, run_trials

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _fake_evaluate(space, calls):
    def evaluate(config: Config) -> Measurement:
        assert config not in calls, f"{config.key()} measured twice"
        calls.append(config)
        p99 = 100.0 / config.batch_size + 10 * config.replicas
        return Measurement(
            ok=True,
            cost_per_hour=space.cost_per_hour(config),
            throughput_rps=50.0 * config.replicas * config.cpu_cores,
            p99_ms=p99,
        )

    return evaluate


class _StuckSampler(optuna.samplers.BaseSampler):
    """Always proposes the first value of every dimension: a worst case for repeats."""

    def infer_relative_search_space(self, study, trial):
        return {}

    def sample_relative(self, study, trial, search_space):
        return {}

    def sample_independent(self, study, trial, param_name, param_distribution):
        return param_distribution.choices[0]


def test_repeats_are_not_counted_and_cannot_stall():
    space = load_space("cpu-local")
    objective = Objective(slo_p99_ms=60, target_rps=40)
    study = optuna.create_study(sampler=_StuckSampler(), direction=objective.direction)
    calls: list[Config] = []
    log = run_trials(study, space, objective, _fake_evaluate(space, calls), budget=3)
    assert len(log.evaluations) == 3 == len(calls) == len(set(calls))
    assert log.repeats == 2 * MAX_REPEATS_IN_A_ROW
    assert [e.index for e in log.evaluations] == [1, 2, 3]


def test_infeasible_is_never_best_and_failed_carries_violation():
    space = load_space("cpu-local")
    objective = Objective(slo_p99_ms=30, target_rps=40)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    calls: list[Config] = []
    log = run_trials(study, space, objective, _fake_evaluate(space, calls), budget=12)
    best = log.best(objective)
    feasible = [e for e in log.evaluations if objective.feasible(e.measurement)]
    if feasible:
        assert best.value == min(e.measurement.cost_per_hour for e in feasible)
    failed = Measurement.failed("OOM", cost_per_hour=0.0)
    assert objective.value(failed) is None and objective.violation(failed) == float("inf")


def test_resume_from_storage_never_remeasures(tmp_path):
    space = load_space("cpu-local")
    objective = Objective(slo_p99_ms=60)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    calls: list[Config] = []
    evaluate = _fake_evaluate(space, calls)
    for seed in (0, 1):
        study = optuna.create_study(
            study_name="s",
            storage=url,
            load_if_exists=True,
            direction=objective.direction,
            sampler=optuna.samplers.RandomSampler(seed=seed),
        )
        run_trials(study, space, objective, evaluate, budget=5)
    assert len(calls) == 10 == len(set(calls))
    assert set(measured_configs(study)) == set(calls)


@pytest.mark.parametrize(
    ("objective", "value", "optimum", "fraction", "expected"),
    [
        (Objective(target_rps=10), 1.009, 1.0, 0.01, True),
        (Objective(target_rps=10), 1.02, 1.0, 0.01, False),
        (Objective(), 0.991, 1.0, 0.01, True),
        (Objective(), 0.98, 1.0, 0.01, False),
    ],
)
def test_within(objective, value, optimum, fraction, expected):
    assert objective.within(value, optimum, fraction) is expected


def test_load_too_high_is_infeasible():
    objective = Objective(slo_p99_ms=50, target_rps=100)
    m = Measurement(ok=True, cost_per_hour=1.0, throughput_rps=60, p99_ms=20)
    assert not objective.feasible(m)
    m.throughput_rps = 99.5
    assert objective.feasible(m) and objective.value(m) == 1.0


def test_served_is_judged_against_what_was_offered():
    """A generator that offered 93 % of the target (a short Poisson window) must not decide
    feasibility by chance: served vs offered, and offered vs target, are judged separately."""
    objective = Objective(slo_p99_ms=50, target_rps=40)
    kept_up = Measurement(ok=True, cost_per_hour=1.0, throughput_rps=39.6, p99_ms=20)
    kept_up.offered_rps = 40.0
    assert objective.feasible(kept_up)
    # the server kept up with all it was offered, but that was not the target load
    short = Measurement(ok=True, cost_per_hour=1.0, throughput_rps=37.3, p99_ms=20)
    short.offered_rps = 37.3
    assert not objective.feasible(short) and objective.violation(short) > 0
    # the generator offered more than the target and the server fell behind it
    behind = Measurement(ok=True, cost_per_hour=1.0, throughput_rps=40.0, p99_ms=20)
    behind.offered_rps = 45.0
    assert not objective.feasible(behind)
    # no offered rate (tables, older studies): throughput vs target, as before
    legacy = Measurement(ok=True, cost_per_hour=1.0, throughput_rps=39.5, p99_ms=20)
    assert legacy.offered_rps is None and objective.feasible(legacy)
    assert Measurement(**legacy.to_dict()).offered_rps is None


def test_trial_record_round_trip():
    """What the loop stores on a trial (autoconf._record) reads back as the same Measurement,
    its violation and feasibility; a repeat is stored but never read as a measurement."""
    from autoconf import _record as record

    space = load_space("cpu-local")
    objective = Objective(slo_p99_ms=50.0, target_rps=60.0)
    study = optuna.create_study(direction=objective.direction)
    dists = record.distributions(space)
    config = space.configs()[0]
    m = Measurement(
        ok=True, cost_per_hour=space.cost_per_hour(config), p99_ms=80.0, throughput_rps=61.0
    )
    for repeat in (False, True):
        study.enqueue_trial(config.to_dict())
        trial = study.ask(fixed_distributions=dists)
        record.set_worker(trial, "host:1:2")
        record.tell(study, trial, objective, m, repeat=repeat)
    first, again = study.get_trials()
    assert record.config_of(first) == config
    assert record.measurement_of(first) == m and record.measurement_of(again) is None
    assert record.stored_violation(first) == objective.violation(m) > 0
    assert record.violation_of(first) == [objective.violation(m)]
    assert not record.feasible_of(first)
    assert record.worker_of(first) == "host:1:2"
    assert [t.number for t, _ in record.measured_trials(study)] == [first.number]
    assert record.measured_configs(study) == {config: m}
    record.set_rejected(study, {"b", "a"})
    record.set_validations(study, [record.validation_entry(config, 60.0, False, m)])
    assert record.rejected_of(study) == {"a", "b"}
    assert record.validations_of(study)[0]["p99_ms"] == 80.0


@pytest.mark.parametrize("workers", [1, 2])
def test_one_loop_serial_and_parallel(workers):
    """The same loop with one worker (the benchmark's) and two (threads sharing the study):
    the budget is met exactly, no config is measured twice, repeats are told not counted."""
    import threading

    space = load_space("cpu-local")
    objective = Objective(slo_p99_ms=60.0)
    study = optuna.create_study(direction=objective.direction, sampler=_StuckSampler())
    calls: list[Config] = []
    lock = threading.Lock()
    evaluate = _fake_evaluate(space, calls)

    def locked(config: Config) -> Measurement:
        with lock:
            return evaluate(config)

    log = run_trials(study, space, objective, locked, 5, workers=workers, seed=1)
    assert len(log.evaluations) == len(calls) == 5 == len(set(calls))
    assert [e.index for e in log.evaluations] == [1, 2, 3, 4, 5]
    assert log.repeats >= MAX_REPEATS_IN_A_ROW  # the stuck sampler repeats, never counted
    assert len(measured_configs(study)) == 5


def test_one_loop_stops_on_the_rule_and_raises_evaluation_errors():
    space = load_space("cpu-local")
    objective = Objective(slo_p99_ms=60.0)
    study = optuna.create_study(direction=objective.direction)
    calls: list[Config] = []
    log = run_trials(
        study,
        space,
        objective,
        _fake_evaluate(space, calls),
        10,
        should_stop=lambda s: len(measured_configs(s)) >= 3,
    )
    assert len(log.evaluations) == 3

    def broken(config: Config) -> Measurement:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_trials(study, space, objective, broken, 10, workers=2)
    states = {t.state for t in study.get_trials()}
    assert optuna.trial.TrialState.RUNNING not in states  # the interrupted trials were failed


def test_a_measurement_cut_short_by_ctrl_c_is_never_stored():
    """Ctrl-C with two workers: the teardown that follows makes a worker's measurement fail
    ("replica died under test"); that failure must not be stored as a result (issue 15 item 2):
    the trial ends FAIL, so --resume measures the config again."""
    import _thread
    import threading
    import time

    space = load_space("cpu-local")
    objective = Objective(slo_p99_ms=60.0)
    study = optuna.create_study(direction=objective.direction)
    torn_down = threading.Event()
    started = threading.Barrier(2)

    def evaluate(config: Config) -> Measurement:
        if started.wait() == 0:
            _thread.interrupt_main()  # the user's Ctrl-C, while both workers measure
        torn_down.wait(10)  # the servers are stopped under the measurement...
        return Measurement.failed("replica 0 died under test: exit code 0", 1.0)

    with pytest.raises(KeyboardInterrupt):
        run_trials(study, space, objective, evaluate, 10, workers=2)
    torn_down.set()  # ...by the teardown that runs after the interrupt
    time.sleep(1.0)  # let the workers return and try to store
    trials = study.get_trials()
    assert len(trials) == 2
    assert all(t.state == optuna.trial.TrialState.FAIL for t in trials), trials
    assert measured_configs(study) == {}
