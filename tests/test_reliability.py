"""Faults and secrets (issue 15): redaction of credentials in every output, race-free study
creation, shared studies agreeing on their plan."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from search_doubles import install_queue_double

import autoconf._search as search
from autoconf import cli
from autoconf._secrets import RedactingFilter, redact

SECRET = "s3cr3t-P4ss"
URL = f"postgresql://alice:{SECRET}@db.example:5432/autoconf"


@pytest.fixture
def env(tmp_path, monkeypatch):
    """The queue double as backend and a fake profile."""
    return tmp_path, install_queue_double(monkeypatch, tmp_path)


def test_redact_masks_every_credential():
    line = f"autoconf search m.onnx --storage {URL} --knowledge 'mysql://bob:{SECRET}@h/db'"
    clean = redact(line)
    assert SECRET not in clean and "alice" not in clean
    assert "postgresql://***@db.example:5432/autoconf" in clean
    assert redact(f"sqlite:///x.db?password={SECRET}") == "sqlite:///x.db?password=***"
    assert redact("sqlite:////tmp/a@b/study.db") == "sqlite:////tmp/a@b/study.db"  # no userinfo


def test_the_command_line_in_plan_and_report_carries_no_password(env):
    tmp_path, model = env
    command = f"autoconf search model.onnx --slo-p99 50ms --storage {URL}"
    opts = search.SearchOptions(
        model_path=model, slo_p99_ms=50, target_rps=60, backend="double", budget=6,
        out_dir=tmp_path / "out", knowledge="none", progress=False, duration_s=1.0,
        sampler="random", command=command,
    )  # fmt: skip
    result = search.run_search(opts)
    assert result.plan_path is not None
    for path in (tmp_path / "out").rglob("*"):
        if path.is_file() and path.suffix != ".db":
            text = path.read_text(errors="replace")
            assert SECRET not in text, path
    plan = (tmp_path / "out" / "plan.yaml").read_text()
    assert "postgresql://***@db.example" in plan
    assert "postgresql://***@db.example" in (tmp_path / "out" / "report.html").read_text()


def test_a_bad_knowledge_url_is_not_echoed_with_its_password(env, capsys, monkeypatch):
    tmp_path, model = env
    monkeypatch.setattr(cli, "COMMANDS", ["search"])
    argv = ["search", str(model), "--slo-p99", "50ms", "--backend", "double",
            "--out", str(tmp_path / "o"), "--knowledge", URL, "--no-progress"]  # fmt: skip
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "knowledge base" in err and SECRET not in err
    assert len(err.strip().splitlines()) == 1


def test_log_records_are_redacted():
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "cannot open %s", (URL,), None)
    RedactingFilter().filter(record)
    assert SECRET not in record.getMessage()
    assert "***@db.example" in record.getMessage()


_OPEN = """
import sys, time
import optuna
from autoconf._objective import Objective
from autoconf._search._stores import open_study
start = float(sys.argv[2])
time.sleep(max(0.0, start - time.time()))
open_study(sys.argv[1], "shared", Objective(50.0, 60.0), optuna.samplers.RandomSampler(), False,
           join=True)
"""


def test_processes_creating_one_new_sqlite_study_at_once_all_succeed(tmp_path):
    """Issue 15 item 5: several processes starting together on a new SQLite study raced on its
    schema (``UNIQUE constraint failed: alembic_version.version_num``, exit 2)."""
    import os
    import subprocess
    import sys
    import time

    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    for round_ in range(2):
        storage = f"sqlite:///{tmp_path / f'race-{round_}.db'}"
        start = time.time() + 4.0  # after every interpreter has imported optuna
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", _OPEN, storage, str(start)],
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
            for _ in range(4)
        ]
        errors = [p.communicate(timeout=120)[1] for p in procs]
        assert [p.returncode for p in procs] == [0] * 4, errors


def test_a_config_that_held_for_another_process_is_chosen_without_remeasuring():
    """Two processes sharing a study write the same plan: a re-measurement stored by one (held,
    or rejected) is reused by the other instead of re-measured with another outcome."""
    import optuna

    from autoconf import Measurement, Objective
    from autoconf._record import set_rejected, set_validations, validation_entry
    from autoconf._report import TrialRecord
    from autoconf._search._remeasure import Remeasurements, Validator
    from autoconf._space import load_space

    space = load_space("cpu-local")
    best, second, third = list(space.configs())[:3]
    objective = Objective(50.0, 60.0)
    study = optuna.create_study()
    mine = Remeasurements.of(study)  # read before the other process re-measured
    held = Measurement(ok=True, cost_per_hour=1.0, throughput_rps=60.0, p99_ms=20.0)
    set_rejected(study, {best.key()})
    set_validations(study, [validation_entry(second, 60.0, True, held)])

    class NeverHolds(Validator):
        calls: list = []

        def __call__(self, config, searched):
            self.calls.append(config)
            return False, Measurement.failed("did not hold", 1.0), 60.0

    validator = NeverHolds(None, None, objective, 1.0)
    m = Measurement(ok=True, cost_per_hour=1.0, throughput_rps=60.0, p99_ms=30.0)
    records = [TrialRecord(i, c, m, True, 0.0, 1.0) for i, c in enumerate((best, second, third))]
    chosen = mine.first_that_holds(study, records, validator, lambda s: None)
    assert chosen is not None and chosen.record.config == second
    assert chosen.validation.p99_ms == 20.0
    assert validator.calls == []


def test_a_plain_postgresql_url_reaches_the_server(tmp_path):
    """Issue 15 item 10: the documented ``postgresql://`` URL failed with "Failed to import DB
    access module" (SQLAlchemy 2.1 picks psycopg 3, now a dependency). No server listens on
    port 1 here, so the driver must get as far as trying to connect."""
    import optuna

    from autoconf import Objective
    from autoconf._errors import UserError
    from autoconf._search._stores import open_study

    sampler = optuna.samplers.RandomSampler()
    with pytest.raises(UserError) as info:
        open_study(f"postgresql://u:{SECRET}@127.0.0.1:1/db", "s", Objective(50, 60), sampler, True)
    message = str(info.value)
    assert "import" not in message and "connect" in message
    assert SECRET not in message and "\n" not in message


def _empty_dirs(node):
    if isinstance(node, dict):
        if "emptyDir" in node:
            yield node
        for v in node.values():
            yield from _empty_dirs(v)
    elif isinstance(node, list):
        for v in node:
            yield from _empty_dirs(v)


@pytest.mark.parametrize("gpu", [None, "A100-80GB"])
def test_every_empty_dir_has_a_size_limit(relu_model, gpu):
    """Issue 15 item 10: emptyDirs without sizeLimit (trial pods, load jobs, plan manifests)."""
    from autoconf._manifests import render_plan_manifests
    from stress import DeploymentSpec, render_load_manifests, render_trial_manifests
    from stress._manifests import LoadJobSpec, repository_size_limit

    spec = DeploymentSpec(relu_model, batch_size=4, replicas=2, cpu_cores=1.0, gpu_type=gpu)
    docs = render_trial_manifests(spec, "t-1")
    docs += render_load_manifests(spec, "t-1-l", LoadJobSpec("http://t-1:8000", 5, 1, workers=2))
    docs += render_plan_manifests(
        spec, image="nvcr.io/nvidia/tritonserver:24.08-py3", namespace="prod",
        hpa_max_replicas=4, target_rps=10.0, slo_p99_ms=50.0,
    )  # fmt: skip
    docs += render_plan_manifests(spec, kserve=True, model_uri="s3://bucket/m.onnx")
    volumes = list(_empty_dirs(docs))
    assert len(volumes) >= 6
    assert all(v["emptyDir"].get("sizeLimit") for v in volumes), volumes
    assert repository_size_limit(spec) == "128Mi"  # a tiny model: the floor
    big = DeploymentSpec(Path("/nonexistent/model.onnx"))
    assert repository_size_limit(big) == "16Gi"


def test_the_sim_does_not_run_cpu_configs_out_of_gpu_memory():
    """Issue 15 item 10: with the default (cpu-local) space the sim marked every config of a tiny
    model "out of GPU memory (needs 0.5 GB)": the cpu pseudo-type's memory_gb is 0. GPUs still
    run out (the sim:zoo tables, on gpu-default, are unchanged)."""
    from autoconf import Load
    from autoconf._simulator import SimModel, simulate_configs
    from autoconf._space import load_space

    tiny = SimModel("tiny", flops=2e5, param_bytes=1e5, activation_bytes=1e3)
    cpu = load_space("cpu-local")
    ms = simulate_configs(tiny, cpu, list(cpu.configs()), Load(slo_p99_ms=50.0, target_rps=20.0))
    assert not any("out of GPU memory" in (m.error or "") for m in ms)
    assert any(m.ok for m in ms)
    gpu = load_space("gpu-default")
    huge = SimModel("huge", flops=1e12, param_bytes=1e11, activation_bytes=1e9)
    configs = [c for c in gpu.configs() if c.gpu_type == "T4"][:5]
    ms = simulate_configs(huge, gpu, configs, Load(slo_p99_ms=50.0, target_rps=20.0))
    assert all("out of GPU memory" in (m.error or "") for m in ms)


def test_processes_validating_at_once_agree_on_the_better_config():
    """Our best config (ranked before the other process measured a better one) holds; the
    other process meanwhile stored a held re-measurement of that better config: we choose it too,
    so both write the same plan."""
    import optuna

    from autoconf import Measurement, Objective
    from autoconf._record import distributions, set_validations, tell, validation_entry
    from autoconf._report import trial_records
    from autoconf._search._remeasure import Remeasurements, Validator
    from autoconf._space import load_space

    space = load_space("cpu-local")
    objective = Objective(50.0, 60.0)  # minimize cost at 60 req/s
    cheap, dear = sorted(list(space.configs())[:8], key=space.cost_per_hour)[::7][:2]
    assert space.cost_per_hour(cheap) < space.cost_per_hour(dear)
    study = optuna.create_study(direction=objective.direction)
    for config in (dear, cheap):
        study.enqueue_trial(config.to_dict())
        trial = study.ask(fixed_distributions=distributions(space))
        m = Measurement(ok=True, cost_per_hour=space.cost_per_hour(config), throughput_rps=60.0,
                        offered_rps=60.0, p99_ms=30.0)  # fmt: skip
        tell(study, trial, objective, m)
    ours = [r for r in trial_records(study, objective) if r.config == dear]
    mine = Remeasurements.of(study)
    held = Measurement(ok=True, cost_per_hour=1.0, throughput_rps=60.0, p99_ms=21.0)
    set_validations(study, [validation_entry(cheap, 60.0, True, held)])  # the other process

    class Holds(Validator):
        def __call__(self, config, searched):
            return True, Measurement(ok=True, cost_per_hour=2.0, p99_ms=25.0), 60.0

    chosen = mine.first_that_holds(study, ours, Holds(None, None, objective, 1.0), print)
    assert chosen is not None and chosen.record.config == cheap
    assert chosen.validation.p99_ms == 21.0
