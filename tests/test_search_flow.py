"""autoconf search end to end on a fast test double (tests/search_doubles.py): plan, resume,
parallel workers, re-measurement, infeasible SLOs, Ctrl-C and bad input."""

from __future__ import annotations

import threading
from pathlib import Path

import optuna
import pytest
import yaml
from search_doubles import QueueDouble, install_queue_double

import autoconf._search as search
from autoconf import cli
from autoconf._commands._args import parse_latency_ms
from autoconf._plan import read_plan
from autoconf._record import measured_configs
from autoconf._report import trial_records


@pytest.fixture
def env(tmp_path, monkeypatch):
    """The double as backend, a fake profile, no knowledge base, only our two commands."""
    monkeypatch.setattr(cli, "COMMANDS", ["search", "validate"])
    return tmp_path, install_queue_double(monkeypatch, tmp_path)


def opts(tmp_path: Path, model: Path, **kw) -> search.SearchOptions:
    base = dict(
        model_path=model,
        slo_p99_ms=50,
        target_rps=60,
        backend="double",
        budget=8,
        out_dir=tmp_path / "out",
        knowledge="none",
        progress=False,
        duration_s=1.0,
        sampler="random",
    )
    base.update(kw)
    return search.SearchOptions(**base)


def search_calls():
    """Evaluations at the search load (re-measurements run longer)."""
    return [c for c, load in QueueDouble.calls if load.duration_s <= 1.0]


def test_plan_is_cheapest_feasible_and_remeasured(env):
    tmp, model = env
    r = search.run_search(opts(tmp, model, budget=10))
    assert r.outcome == "plan"
    plan = read_plan(tmp / "out" / "plan.yaml")
    feasible = [x for x in r.records if x.value is not None]
    assert plan.cost_per_hour == pytest.approx(min(x.value for x in feasible))
    # re-measured at the target load with the longer validation run, after the search
    config, load = QueueDouble.calls[-1]
    assert config == plan.to_config() and load.target_rps == 60 and load.duration_s == 2.0
    assert plan.measured.p99_ms <= 50 and plan.load.target_rps == 60
    assert plan.provenance.model_sha256 == plan.model.sha256
    assert all(x.config != plan.config for x in plan.runners_up)
    rows = (tmp / "out" / "trials.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + len(r.records) == 11
    html = (tmp / "out" / "report.html").read_text()
    assert (
        html.count("<figure") == 4
        and "Runners-up" in html
        and "http-equiv" not in html
        and "<script" not in html
    )


def test_resume_after_interrupt_never_remeasures(env):
    tmp, model = env
    with pytest.raises(KeyboardInterrupt):
        search.run_search(opts(tmp, model, budget=9, backend_options={"interrupt_after": 5}))
    first = search_calls()
    assert len(first) == 5  # 4 finished, the 5th interrupted
    storage = f"sqlite:///{tmp / 'out' / 'study.db'}"
    name = optuna.study.get_all_study_names(storage)[0]
    study = optuna.load_study(study_name=name, storage=storage)
    assert len(measured_configs(study)) == 4
    assert (tmp / "out" / "report.html").exists()  # the partial report of an interrupted run
    QueueDouble.calls = []
    r = search.run_search(opts(tmp, model, budget=9, resume=True))
    second = search_calls()
    assert len(second) == 5  # 9 in all: the 4 kept are not run again
    assert not set(first[:4]) & set(second)
    assert len(r.records) == 9 and len({x.config for x in r.records}) == 9


def test_existing_study_without_resume_is_refused(env, capsys):
    tmp, model = env
    search.run_search(opts(tmp, model, budget=2))
    argv = [
        "search",
        str(model),
        "--slo-p99",
        "50ms",
        "--qps",
        "60",
        "--backend",
        "double",
        "--budget",
        "2",
        "--out",
        str(tmp / "out"),
        "--knowledge",
        "none",
        "--no-progress",
        "--sampler",
        "random",
    ]
    assert cli.main(argv) == 2
    assert "--resume" in capsys.readouterr().err


def test_parallel_workers_never_measure_a_config_twice_or_concurrently(env):
    tmp, model = env
    started = threading.active_count()
    r = search.run_search(
        opts(tmp, model, budget=12, parallel=3, sampler="tpe", backend_options={"sleep_s": 0.05})
    )
    calls = search_calls()
    assert len(calls) == 12 and len(set(calls)) == 12
    assert QueueDouble.overlaps == []
    assert QueueDouble.closed == 3  # one backend per worker, all torn down
    assert r.outcome == "plan" and threading.active_count() == started


def test_failed_remeasurement_moves_on_to_the_next_best(env):
    tmp, model = env
    r = search.run_search(opts(tmp, model, budget=12, backend_options={"fail_long_runs": 1}))
    ranked = search.ranked(r.records, search.Objective(50, 60), set())  # cost, then p99
    long_runs = [c for c, load in QueueDouble.calls if load.duration_s > 1.5]
    assert long_runs[0] == ranked[0].config  # the best was re-measured first and failed
    assert r.outcome == "plan" and r.chosen == long_runs[1] != ranked[0].config
    assert r.chosen in {x.config for x in ranked}
    plan = yaml.safe_load((tmp / "out" / "plan.yaml").read_text())
    assert {"config": ranked[0].config.to_dict()}.items() <= next(
        x for x in plan["runners_up"] if x["validation"] == "failed"
    ).items()


def test_unmeetable_slo_exits_1_with_closest_configs(env, capsys):
    tmp, model = env
    argv = [
        "search",
        str(model),
        "--slo-p99",
        "1ms",
        "--qps",
        "60",
        "--backend",
        "double",
        "--budget",
        "5",
        "--out",
        str(tmp / "out"),
        "--knowledge",
        "none",
        "--no-progress",
        "--duration",
        "1s",
        "--sampler",
        "random",
    ]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert "no config met the SLO" in err and "closest configs" in err
    assert err.count("batch_size=") == 5 and "Traceback" not in err
    assert not (tmp / "out" / "plan.yaml").exists()
    assert "No plan." in (tmp / "out" / "report.html").read_text()


def test_ctrl_c_exits_130_tears_down_and_keeps_trials(env, capsys):
    tmp, model = env
    argv = [
        "search",
        str(model),
        "--slo-p99",
        "50ms",
        "--qps",
        "60",
        "--backend",
        "double",
        "--budget",
        "8",
        "--out",
        str(tmp / "out"),
        "--knowledge",
        "none",
        "--no-progress",
        "--duration",
        "1s",
        "--sampler",
        "random",
        "--backend-option",
        "interrupt_after=3",
    ]
    assert cli.main(argv) == 130
    assert QueueDouble.closed == 1
    storage = f"sqlite:///{tmp / 'out' / 'study.db'}"
    study = optuna.load_study(
        study_name=optuna.study.get_all_study_names(storage)[0], storage=storage
    )
    assert len(trial_records(study, search.Objective(50, 60))) == 2
    assert not [t for t in study.trials if t.state == optuna.trial.TrialState.RUNNING]


def test_ctrl_c_still_feeds_the_knowledge_base(env):
    from autoconf.prior import KnowledgeBase

    tmp, model = env
    kb_path = tmp / "kb.db"
    with pytest.raises(KeyboardInterrupt):
        search.run_search(
            opts(tmp, model, knowledge=str(kb_path), backend_options={"interrupt_after": 3})
        )
    kb = KnowledgeBase(kb_path)
    (table,) = kb.tables()
    assert len(table.results) == 2  # the two trials that finished before Ctrl-C
    kb.close()


@pytest.mark.parametrize(
    ("space_text", "field"),
    [
        ("gpu_type: [cpu, Z100]", "dimensions.gpu_type: unknown GPU type 'Z100'"),
        ("replicas: [1, 2]\n  colour: [red]", "unknown dimension 'colour'"),
    ],
)
def test_bad_space_names_the_field_exit_2(env, capsys, space_text, field):
    tmp, model = env
    text = (Path(search.SPACES_DIR) / "cpu-local.yaml").read_text()
    bad = (
        text.replace("gpu_type: [cpu]", space_text)
        if "Z100" in space_text
        else text.replace("replicas: [1, 2]", space_text)
    )
    (tmp / "bad.yaml").write_text(bad)
    argv = [
        "search",
        str(model),
        "--slo-p99",
        "50ms",
        "--space",
        str(tmp / "bad.yaml"),
        "--backend",
        "double",
        "--out",
        str(tmp / "out"),
        "--knowledge",
        "none",
    ]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and field in err


def test_bad_slo_is_one_line(env, capsys):
    tmp, model = env
    assert cli.main(["search", str(model), "--slo-p99", "fast"]) == 2
    assert capsys.readouterr().err.strip() == (
        "autoconf: error: --slo-p99: cannot read 'fast' as a latency (e.g. 50ms, 0.2s)"
    )
    assert parse_latency_ms("0.2s") == 200 and parse_latency_ms("50ms") == 50


def test_a_latency_without_a_unit_is_refused_with_a_hint(env, capsys):
    """``--slo-p99 50`` could be 50 ms or 50 s: refused, naming the spelling that works."""
    tmp, model = env
    assert cli.main(["search", str(model), "--slo-p99", "50", "--backend", "double"]) == 2
    assert capsys.readouterr().err.strip() == (
        "autoconf: error: --slo-p99: give a unit, e.g. 50ms (got '50')"
    )


def test_resume_fails_trials_left_running_by_a_killed_process(env):
    """A worker killed with SIGKILL leaves its trial RUNNING; --resume fails it (its pid is
    gone) so the config is free again, while trials of live workers stay claimed."""
    import socket

    from autoconf._record import distributions
    from autoconf._study import fail_stale_trials

    tmp, model = env
    search.run_search(opts(tmp, model, budget=2))
    storage = f"sqlite:///{tmp / 'out' / 'study.db'}"
    study = optuna.load_study(
        study_name=optuna.study.get_all_study_names(storage)[0], storage=storage
    )
    dists = distributions(search.load_space("cpu-local"))
    dead = study.ask(fixed_distributions=dists)
    dead.set_user_attr("worker", f"{socket.gethostname()}:999999:1")
    alive = study.ask(fixed_distributions=dists)
    alive.set_user_attr("worker", f"{socket.gethostname()}:1:1")  # pid 1 lives
    assert fail_stale_trials(study) == 1
    states = {t.number: t.state for t in study.get_trials()}
    assert states[dead.number] == optuna.trial.TrialState.FAIL
    assert states[alive.number] == optuna.trial.TrialState.RUNNING


def test_two_searches_sharing_storage_never_measure_the_same_config(tmp_path):
    """Two workers with their own Study object, sampler and lock on one SQLite file (what two
    processes sharing --storage have in common), run in threads so the double can see overlaps.
    Their samplers suggest the same sequence, so only the claim in storage keeps them apart."""
    from autoconf import Load
    from autoconf._study import run_trials

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    optuna.create_study(storage=storage, study_name="shared")
    space, objective = search.load_space("cpu-local"), search.Objective(50, 60)
    QueueDouble.reset()

    def worker(seed: int) -> None:
        sampler = optuna.samplers.RandomSampler(seed=7)  # both suggest the same configs
        study = optuna.load_study(study_name="shared", storage=storage, sampler=sampler)
        backend = QueueDouble(space, sleep_s=0.05)
        run_trials(
            study,
            space,
            objective,
            lambda c: backend.evaluate(None, c, Load(50, 60, 1.0)),
            6,
            seed=seed,
        )

    threads = [threading.Thread(target=worker, args=(s,)) for s in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    calls = [c for c, _ in QueueDouble.calls]
    assert len(calls) == 12 and len(set(calls)) == 12 and QueueDouble.overlaps == []
