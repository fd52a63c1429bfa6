"""Issue 11, autoconf side: each measurement carries its stability; an unstable one is repeated or
flagged; its noise reaches the meta sampler and its stopping rule; the local backend's space is
cut to what the machine can host beside the load generator. Fast: test doubles, no deployments
(the live check is tests/test_search_local.py)."""

from __future__ import annotations

import math
import os

import numpy as np
import optuna
import pytest

import stress
from autoconf import Config, Measurement, Objective, UserError
from autoconf._feasible import trim_space
from autoconf._noise import (
    STABLE_FLOOR_SD,
    UNSTABLE_SD,
    best_floor,
    could_beat,
    relative_sd,
)
from autoconf._space import load_space
from autoconf._study import run_trials
from autoconf._types import Load
from autoconf.backends._live import LiveBackend, _capacity_measurement
from autoconf.samplers import SamplerContext, make_sampler
from autoconf.stopping import StoppingContext, make_stopping_rule
from tests.test_meta_sampler import space, value_table

optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_relative_sd_exact_stable_unstable():
    exact = Measurement(ok=True, cost_per_hour=1.0, throughput_rps=10.0)
    assert relative_sd(exact) == 0.0  # tables, the simulator: stable unknown
    calm = Measurement(ok=True, cost_per_hour=1.0, stable=True, throughput_spread=0.0)
    assert relative_sd(calm) == STABLE_FLOOR_SD
    wide = Measurement(ok=True, cost_per_hour=1.0, stable=True, throughput_spread=0.09)
    assert relative_sd(wide) == pytest.approx(0.09 / (1.693 * math.sqrt(3)))
    bad = Measurement(ok=True, cost_per_hour=1.0, stable=False, unstable_reasons=["x"])
    assert relative_sd(bad) == UNSTABLE_SD


def test_old_stored_measurements_load_as_unknown():
    m = Measurement.from_dict({"ok": True, "cost_per_hour": 1.0, "a_later_field": 3})
    assert m.stable is None and m.unstable_reasons == [] and m.trusted


def _cores_rule(cores: int):
    def refusal(c: Config) -> str | None:
        need = c.replicas * math.ceil(c.cpu_cores) + 1
        return None if need <= cores else f"needs {need} cores, have {cores}"

    return refusal


def test_cpu_local_is_trimmed_to_the_machine():
    sp = load_space("cpu-local")
    small, notes = trim_space(sp, _cores_rule(2), "local")
    assert small.values("replicas") == [1] and small.values("cpu_cores") == [1]
    assert small.size() == 10 and len(notes) == 3 and "10 of 40" in notes[-1]
    four, _ = trim_space(sp, _cores_rule(4), "local")  # 3 cores beside the generator
    assert all(_cores_rule(4)(c) is None for c in four.configs()) and four.size() == 20
    whole, none = trim_space(sp, _cores_rule(16), "local")
    assert whole is sp and none == []
    with pytest.raises(UserError, match="cannot host any config"):
        trim_space(sp, _cores_rule(1), "local")


def test_local_deployer_refuses_what_this_machine_cannot_host(tmp_path):
    dep = stress.get_deployer("local")
    cores = len(os.sched_getaffinity(0))
    model = tmp_path / "m.onnx"
    too_big = stress.DeploymentSpec(model_path=model, replicas=cores, cpu_cores=1)
    assert "load generator" in dep.refusal(too_big)
    assert stress.get_deployer("local", oversubscribe=True).refusal(too_big) is None
    gpu = stress.DeploymentSpec(model_path=model, gpu_type="A100")
    from stress._local import local_gpus

    if not any("A100" in n for n in local_gpus()):
        assert "A100" in dep.refusal(gpu)


def test_gpu_space_on_the_local_backend_is_refused_before_the_search():
    from stress._local import local_gpus

    if local_gpus():
        pytest.skip("this machine has a GPU")
    from autoconf.backends import get_backend

    with get_backend("local", load_space("gpu-default")) as b, pytest.raises(UserError):
        b.feasible_space()


def _step(rate, passed, stable=True, superseded=False):
    r = stress.LoadResult(
        target_rps=rate,
        duration_s=2.0,
        sent=int(2 * rate),
        completed=int(2 * rate),
        errors=0,
        throughput_rps=rate,
        p50_ms=5.0,
        p95_ms=8.0,
        p99_ms=10.0 if passed else 90.0,
        max_ms=20.0,
        error_rate=0.0,
        stable=stable,
        throughput_spread=0.04 if stable else 0.3,
        unstable_reasons=[] if stable else ["throughput spread 30 %"],
    )
    r.extra.update(passed=passed, superseded=superseded)
    return r


def test_capacity_measurement_carries_the_verdict_and_marks_superseded_steps():
    steps = [_step(50, True), _step(400, True, stable=False, superseded=True), _step(400, True)]
    cap = stress.CapacityResult(
        capacity_rps=400,
        slo_p99_ms=50,
        steps=steps,
        at_capacity=steps[2],
        stable=False,
        unstable_reasons=["not bracketed"],
        remeasured=1,
    )
    m = _capacity_measurement(cap, 1.0, 3.0)
    assert m.stable is False and m.unstable_reasons == ["not bracketed"]
    assert m.throughput_spread == 0.04 and m.capacity_rps == 400
    assert [s["superseded"] for s in m.extra["capacity_steps"]] == [False, True, False]
    assert Measurement.from_dict(m.to_dict()) == m  # the trial record round-trips it


class _Scripted(LiveBackend):
    """A live backend whose deployments are scripted measurements (no processes)."""

    name = deployer_name = "local"

    def __init__(self, script, **kw):
        super().__init__(load_space("cpu-local"), **kw)
        self.script = list(script)

    def _evaluate_once(self, profile, config, load):
        return self.script.pop(0)


def _m(stable):
    return Measurement(ok=True, cost_per_hour=1.0, capacity_rps=100.0, stable=stable)


def test_unstable_measurement_is_repeated_then_flagged():
    c = Config(batch_size=1, gpu_type="cpu")
    b = _Scripted([_m(False), _m(True)])
    m = b.evaluate(None, c, None)
    assert m.stable and m.attempts == 2
    b = _Scripted([_m(False), _m(False), _m(True)], unstable_retries=1)
    m = b.evaluate(None, c, None)
    assert m.stable is False and m.attempts == 2 and b.script  # bounded, flagged
    b = _Scripted([_m(True)])
    assert b.evaluate(None, c, None).attempts == 1


def _cap(capacity, stable):
    return Measurement(
        ok=True, cost_per_hour=1.0, capacity_rps=capacity, stable=stable, throughput_spread=0.03
    )


def test_unstable_measurement_is_repeated_only_when_it_could_win():
    """A repeat cannot change the plan when even the unstable figure's optimistic value
    (+2 x 30 %) is below the pessimistic value of the best measured so far."""
    c = Config(batch_size=1, gpu_type="cpu")
    load = Load(slo_p99_ms=50.0)
    b = _Scripted([_cap(1500.0, True), _cap(200.0, False), _cap(1400.0, False), _cap(1450, True)])
    assert b.evaluate(None, c, load).attempts == 1
    low = b.evaluate(None, c, load)  # 200 x 1.6 = 320 < 1500 x (1 - 2 x 2 %): not repeated
    assert low.attempts == 1 and low.stable is False
    near = b.evaluate(None, c, load)  # 1400 x 1.6 > 1440: repeated, and the repeat is stable
    assert near.attempts == 2 and near.stable and not b.script
    assert could_beat(_cap(0.0, False), 1000.0)  # nothing passed: no bound, repeat
    assert best_floor(_cap(200.0, False), None) == pytest.approx(200.0 * (1 - 2 * UNSTABLE_SD))
    # At a target load (the plan's re-measurement) the incumbent is not tracked.
    b = _Scripted([_cap(1500.0, True), _cap(10.0, False), _cap(10.0, True)])
    b.evaluate(None, c, Load(slo_p99_ms=50.0, target_rps=100.0))
    assert b.evaluate(None, c, Load(slo_p99_ms=50.0, target_rps=100.0)).attempts == 2


def _noisy(table, stable):
    for m in table.results.values():
        m.stable = stable
        m.throughput_spread = 0.0 if stable else None
        m.unstable_reasons = [] if stable else ["throughput spread 30 % over the last 3 windows"]
    return table


def test_stopping_rule_not_confident_on_unstable_measurements():
    sp = space()
    history = [value_table(f"h{k}", sp, 0.01, 10 + k) for k in range(8)]
    target = _noisy(value_table("t", sp, 0.01, 7), stable=False)
    sampler = make_sampler("meta", SamplerContext(sp, Objective(), 0, None, history))
    study = optuna.create_study(direction="maximize", sampler=sampler)
    rule = make_stopping_rule("meta", StoppingContext(Objective(), sampler))
    budget = sp.size() // 2
    log = run_trials(study, sp, Objective(), target.results.__getitem__, budget, should_stop=rule)
    assert len(log.evaluations) == budget  # the exact twin stops before (test_meta_sampler)
    assert rule.confidence(study) < 0.95


def test_noisy_measurements_widen_the_surrogate():
    sp = space()
    target = value_table("t", sp, 0.0, 0)
    sampler = make_sampler("meta", SamplerContext(sp, Objective(), 0, None, []))
    post = sampler.posterior
    configs = sp.configs()[:6]
    exact = {i: target.results[c] for i, c in enumerate(configs)}
    noisy = {i: Measurement(**{**m.to_dict(), "stable": False}) for i, m in exact.items()}
    s_exact = post._fit(exact, set())
    s_noisy = post._fit(noisy, set())
    assert np.all(s_noisy.sd[:6] > s_exact.sd[:6])


def test_report_shows_each_trials_stability():
    from autoconf._report import stability

    assert stability(Measurement(ok=True, cost_per_hour=1.0)) == "-"
    calm = Measurement(ok=True, cost_per_hour=1.0, stable=True, throughput_spread=0.04)
    assert stability(calm) == "yes (spread 4%)"
    bad = Measurement(
        ok=True, cost_per_hour=1.0, stable=False, attempts=2, unstable_reasons=["disturbed"]
    )
    assert stability(bad) == "no (2 deployments): disturbed"


def test_a_noisy_capacity_near_the_load_is_not_certainly_feasible():
    """At a target load, a measured config is feasible with probability 1 only when exact; an
    unstable capacity 10 % above what the load needs is feasible with a probability below 1,
    and the stopping rule's trust in such an incumbent is that probability."""
    from tests.test_meta_sampler import capacity_table

    sp = space(replicas=(1, 2), batch=(1, 4))
    table = capacity_table("t", sp, {"T4": 10.0, "V100": 40.0, "L4": 16.0}, 20.0)
    sampler = make_sampler("meta", SamplerContext(sp, table.objective, 0, None, []))
    post = sampler.posterior
    configs = sp.configs()
    i = next(
        k for k, c in enumerate(configs) if table.objective.value(table.results[c]) is not None
    )
    exact = table.results[configs[i]]
    noisy = Measurement.from_dict({**exact.to_dict(), "stable": False})
    assert post.feasibility(post._fit({i: exact}, set()))[i] == 1.0
    state = post._fit({i: noisy}, set())
    p = post.feasibility(state)[i]
    assert 0.0 < p < 1.0
    rule = make_stopping_rule("meta", StoppingContext(table.objective, sampler))
    assert rule.incumbent_trust(state) == pytest.approx(p)


def test_search_refuses_a_gpu_space_on_the_local_backend_in_one_line(tmp_path, capsys):
    from stress._local import local_gpus

    if local_gpus():
        pytest.skip("this machine has a GPU")
    import kops
    from autoconf import cli

    model = kops.zoo.build("tiny_mlp", tmp_path / "tiny.onnx")
    argv = ["search", str(model), "--slo-p99", "50ms", "--space", "gpu-default"]
    argv += ["--backend", "local", "--out", str(tmp_path / "out"), "--knowledge", "none"]
    assert cli.main([*argv, "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "cannot host any config of space 'gpu-default'" in err


def test_plan_carries_the_remeasurements_stability():
    from autoconf._plan import PlanMeasured
    from autoconf._search._outputs import _metrics, _trust

    m = Measurement(
        ok=True, cost_per_hour=1.0, p99_ms=20.0, throughput_rps=99.0, stable=False,
        throughput_spread=0.12, latency_spread=0.3, unstable_reasons=["disturbed"],
    )  # fmt: skip
    shown = PlanMeasured(source="re-measured", **_metrics(m), **_trust(m))
    assert shown.stable is False and shown.throughput_spread == 0.12
    assert shown.unstable_reasons == ["disturbed"]
    assert _trust(Measurement(ok=True, cost_per_hour=1.0)) == {}  # tables: nothing to say


def test_gpu_types_match_the_names_nvidia_smi_gives():
    from stress._local import _gpu_matches

    assert _gpu_matches("T4", ["Tesla T4"])
    assert _gpu_matches("A100-40GB", ["NVIDIA A100-SXM4-40GB"])
    assert _gpu_matches("H100", ["NVIDIA H100 80GB HBM3"])
    assert not _gpu_matches("L4", ["NVIDIA L40S"]) and not _gpu_matches("T4", [])
