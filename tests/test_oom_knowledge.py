"""Failures as knowledge (issue 13): an out-of-memory rules out every config that needs at least
as much memory, for every sampler, also after ``--resume``; without ``--qps`` the search
spends no trial on replica counts. On the sim backend (its OOMs follow its memory model: a
simulation, not a GPU) with a space of small GPUs, so that OOMs abound."""

from __future__ import annotations

import optuna
import pytest
import yaml

import kops
from autoconf import Config, Measurement, Objective, cli, load_space
from autoconf import _record as record
from autoconf import _search as autoconf_search
from autoconf._implied import ConfigArrays, ImpliedFailures, base_key, oom_kind

optuna.logging.set_verbosity(optuna.logging.WARNING)

#: bert_like at its default size needs 0.5 GB + 5 MB per sample in the simulator: S runs out at
#: batch 32 (or 1 with two instances), M at 128, L never.
SPACE = """
name: oom-test
dimensions:
  batch_size: [1, 4, 16, 32, 64, 128]
  gpu_type: [S, M, L]
  replicas: {min: 1, max: 4}
  cpu_cores: [1, 2]
  instances_per_gpu: [1, 2]
  max_queue_delay_ms: [1, 5]
  precision: [fp16, fp32]
gpus:
  S: {fp16_tflops: 65, fp32_tflops: 8.1, memory_gb: 0.6, bandwidth_gbps: 320, price_per_hour: 0.2}
  M: {fp16_tflops: 121, fp32_tflops: 30, memory_gb: 1.0, bandwidth_gbps: 300, price_per_hour: 0.3}
  L: {fp16_tflops: 312, fp32_tflops: 19.5, memory_gb: 16, bandwidth_gbps: 1555, price_per_hour: 0.9}
pricing: {cpu_core_per_hour: 0.0447}
"""


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return kops.zoo.build("bert_like", tmp_path_factory.mktemp("m") / "bert_like.onnx")


@pytest.fixture
def space_file(tmp_path):
    path = tmp_path / "oom-test.yaml"
    path.write_text(SPACE)
    return path


def _search(model, space_file, out, budget, *extra, slo="200ms"):
    argv = [
        "search",
        str(model),
        "--slo-p99",
        slo,
        "--space",
        str(space_file),
        "--backend",
        "sim",
        "--budget",
        str(budget),
        "--out",
        str(out),
        "--knowledge",
        "none",
        "--no-progress",
        *extra,
    ]
    return cli.main(argv)


def _study(out):
    storage = f"sqlite:///{out / 'study.db'}"
    (summary,) = optuna.get_all_study_summaries(storage)
    return optuna.load_study(study_name=summary.study_name, storage=storage)


def _assert_no_oom_repeated_or_implied(study, space):
    """No OOM base config measured twice; no config measured after an OOM that implies it."""
    implied = ImpliedFailures(space)
    oom_bases: set[tuple] = set()
    for number, config, m in record.numbered_measurements(study):
        cause = implied.cause(config)
        assert cause is None, f"trial #{number} {config.key()} measured: {cause.reason()}"
        if oom_kind(m) is not None:
            assert base_key(config) not in oom_bases, f"OOM base config repeated: #{number}"
            oom_bases.add(base_key(config))
        implied.add(number, config, m)
    return implied


@pytest.mark.parametrize(
    "sampler, slo, least",
    # meta stops once it is confident (a tight SLO keeps it searching); random spends the budget
    [("meta", "6ms", 6), ("random", "200ms", 40)],
)
def test_no_qps_search_never_repeats_or_implies_an_oom_with_resume(
    model, space_file, tmp_path, capsys, sampler, slo, least
):
    out = tmp_path / "out"
    assert _search(model, space_file, out, 20, "--sampler", sampler, slo=slo) == 0
    assert _search(model, space_file, out, 40, "--sampler", sampler, "--resume", slo=slo) == 0
    err = capsys.readouterr()
    study = _study(out)
    space = load_space(space_file)
    measured = record.numbered_measurements(study)
    assert least <= len(measured) <= 40
    implied = _assert_no_oom_repeated_or_implied(study, space)
    assert implied, "the test space should make the search meet an out-of-memory"
    # no --qps: one replica count searched, said in the progress line, the plan and the report
    assert {c.replicas for _, c, _ in measured} == {1}
    assert "replicas fixed at 1: no --qps" in err.out + err.err
    plan = yaml.safe_load((out / "plan.yaml").read_text())
    assert plan["config"]["replicas"] == 1
    notes = plan["provenance"]["search_space"]["notes"]
    assert any("no --qps: replicas fixed at 1" in n for n in notes)
    assert any(n.startswith("out of memory in trial #") for n in notes)
    assert "pass --qps to size replicas" in (out / "report.html").read_text()
    # a suggestion of a ruled-out config is completed unmeasured, marked, never a measurement
    inferred = record.inferred_trials(study)
    if sampler == "random":  # knows no rule of its own: the loop answers its such suggestions
        assert inferred
    for t, cause in inferred:
        assert record.measurement_of(t) is None and not record.feasible_of(t)
        assert implied.cause(record.config_of(t)) is not None
        assert t.user_attrs["error"].startswith(
            f"not measured: implied out of memory by trial #{cause}"
        )


def test_a_study_begun_searching_replicas_resumes_as_it_began(
    model, space_file, tmp_path, monkeypatch
):
    """A no-``--qps`` study stored by an older autoconf (replicas searched) is resumed over the
    same distributions (Optuna refuses others), not broken."""
    out = tmp_path / "out"
    with monkeypatch.context() as m:
        m.setattr(autoconf_search, "searched_space", lambda space, objective: (space, None))
        assert _search_ok(model, space_file, out, 6)
    assert _search_ok(model, space_file, out, 10, "--resume")
    assert len(record.measured_trials(_study(out))) == 10


def _search_ok(model, space_file, out, budget, *extra):
    return _search(model, space_file, out, budget, "--sampler", "random", *extra) in (0, 1)


# -- the rule itself ----------------------------------------------------------------------------


def _m(error: str | None) -> Measurement:
    if error is None:
        return Measurement(ok=True, cost_per_hour=1.0, throughput_rps=10.0, p99_ms=5.0)
    return Measurement.failed(error, 1.0)


def test_an_oom_implies_more_memory_only_and_nothing_else_implies_anything(space_file):
    space = load_space(space_file)
    oom = Config(16, "M", 1, 1, 1, 1, precision="fp16")
    implied = ImpliedFailures.of(space, [(3, oom, _m("out of GPU memory (needs 1.1 GB)"))])

    def ruled(**kw):
        c = Config(**{**oom.to_dict(), **kw})
        return implied.cause(c) is not None

    assert ruled() and ruled(replicas=4, cpu_cores=2, max_queue_delay_ms=5)
    assert ruled(batch_size=64) and ruled(instances_per_gpu=2) and ruled(gpu_type="S")
    assert ruled(precision="fp32")  # fp32 needs at least what fp16 needed
    assert not ruled(batch_size=4) and not ruled(gpu_type="L") and not ruled(precision="int8")
    assert implied.cause(oom).reason().startswith("implied out of memory by trial #3 (")
    # the vectorised mask says the same as the rule, config by config
    configs = space.configs()
    mask = implied.mask(ConfigArrays(space, configs))
    assert [implied.cause(c) is not None for c in configs] == mask.tolist()
    for error in (
        "deployment timed out",
        "replica 0 died: exit code 1",
        "killed by SIGKILL (out of memory?)",
    ):
        assert not ImpliedFailures.of(space, [(1, oom, _m(error))])
    assert not ImpliedFailures.of(space, [(1, oom, _m(None))])
    # a container at its memory limit: its own base config only (the limit grows with batch)
    host = ImpliedFailures.of(
        space, [(1, oom, _m("container x was OOMKilled (memory limit too low)"))]
    )
    assert host.cause(Config(**{**oom.to_dict(), "replicas": 3})) is not None
    assert host.cause(Config(**{**oom.to_dict(), "batch_size": 64})) is None


def test_at_a_target_load_the_meta_posterior_rules_out_what_an_oom_implies(space_file):
    """The meta sampler reads the same rule: ruled-out configs are never free."""
    from autoconf._meta import Posterior

    space = load_space(space_file)
    objective = Objective(slo_p99_ms=200.0, target_rps=100.0)
    post = Posterior(space, objective)
    oom = Config(32, "S", 1, 1, 1, 1, precision="fp16")
    i = post.model.index[oom]
    state = post._fit({i: _m("out of GPU memory (needs 0.7 GB)")}, set())
    free = post.free(state)
    for j, c in enumerate(post.model.configs):
        need_more = c.gpu_type == "S" and c.batch_size >= 32 and c.precision in ("fp16", "fp32")
        assert free[j] != need_more, c.key()
    crash = post._fit({i: _m("replica 0 died: exit code 1")}, set())
    assert post.free(crash).sum() == len(post.model.configs) - 1
