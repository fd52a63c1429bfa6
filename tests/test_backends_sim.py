"""The simulated cluster: determinism, physics that must hold, OOM, calibration, ground truth."""

from __future__ import annotations

from pathlib import Path

import pytest
from _tiny import MODELS, tiny_space

from autoconf import Config, Load, Objective
from autoconf._simulator import CALIBRATION, SimModel, calibrate, simulate_configs
from autoconf.backends import get_backend
from autoconf.datasets import sim_tables

MICROBENCH = Path("/work/shared/data/falcon/operator_microbench_wide.csv")


def _cfg(**kw) -> Config:
    base = dict(batch_size=4, gpu_type="T4", replicas=1, cpu_cores=4)
    return Config(**{**base, **kw})


def test_deterministic_per_model_config_seed(tmp_path):
    space = tiny_space(tmp_path)
    load = Load(slo_p99_ms=50, target_rps=200)
    a = get_backend("sim", space).evaluate(MODELS[0], _cfg(), load)
    b = get_backend("sim", space).evaluate(MODELS[0], _cfg(), load)
    c = get_backend("sim", space, seed=1).evaluate(MODELS[0], _cfg(), load)
    assert a.ok and a.p99_ms == b.p99_ms
    assert c.p99_ms != a.p99_ms


def test_latency_load_replicas_and_gpu_behave(tmp_path):
    space = tiny_space(tmp_path)
    m = MODELS[1]
    light, heavy = Load(slo_p99_ms=100, target_rps=20), Load(slo_p99_ms=100, target_rps=400)
    res = simulate_configs(m, space, [_cfg(), _cfg(replicas=4), _cfg(gpu_type="A100-40GB")], heavy)
    one, four, a100 = res
    assert four.p99_ms < one.p99_ms  # load spread over replicas
    assert a100.p99_ms < one.p99_ms  # the faster GPU
    (quiet,) = simulate_configs(m, space, [_cfg()], light)
    assert quiet.p99_ms < one.p99_ms  # queueing grows with load
    # capacity is linear in replicas (load balancer), and positive
    assert four.capacity_rps == pytest.approx(4 * one.capacity_rps, rel=1e-9)
    assert one.capacity_rps > 0


def test_overload_is_infeasible(tmp_path):
    space = tiny_space(tmp_path)
    (m,) = simulate_configs(MODELS[1], space, [_cfg(batch_size=1, cpu_cores=1)], Load(50, 5000))
    assert m.ok and m.throughput_rps < 0.9 * 5000
    assert not Objective(50, 5000).feasible(m)


def test_offered_is_the_target_and_a_fast_config_serves_all_of_it(tmp_path):
    """The sim's stream offers exactly the target (arrivals conditioned on their count) and a
    config far from saturation serves all of it, for every seed: with a free-running Poisson
    clock some seeds' streams served 95 % of the target and failed the 98 % rule."""
    space = tiny_space(tmp_path)
    configs = [_cfg(replicas=r, batch_size=b) for r in (1, 2, 4) for b in (1, 8)]
    for seed in range(6):
        load = Load(slo_p99_ms=100, target_rps=300)
        for c, m in zip(configs, simulate_configs(MODELS[0], space, configs, load, seed)):
            assert m.offered_rps == pytest.approx(300, rel=1e-12), c.key()
            if m.capacity_rps > 1.2 * 300:
                assert m.throughput_rps == pytest.approx(m.offered_rps, rel=1e-12), c.key()
                assert Objective(100, 300).feasible(m), c.key()


def test_out_of_memory_fails(tmp_path):
    space = tiny_space(tmp_path)
    huge = SimModel("huge", flops=1e9, param_bytes=1e9, activation_bytes=2e9)
    small_batch, big_batch = simulate_configs(
        huge, space, [_cfg(batch_size=1), _cfg(batch_size=16)], Load(100, 10)
    )
    assert small_batch.ok
    assert not big_batch.ok and "out of GPU memory" in big_batch.error
    assert Objective(100, 10).value(big_batch) is None


def test_precision_sets_throughput_and_weights(tmp_path):
    """FP32 (also ``precision=None``, the model as exported) runs at the catalog's FP32 peak, FP16
    at its tensor-core peak, INT8 at its INT8 peak: on a T4 (FP32 8.1, FP16 65, INT8 130) each
    is faster than the one before; weights shrink by precision, so fewer configs run out of
    memory. A catalog entry without ``int8_tops`` (the tiny space's) runs INT8 at its FP16 peak."""
    from autoconf import load_space

    space = load_space("gpu-default")
    m = MODELS[1]
    load = Load(slo_p99_ms=1000, target_rps=20)
    default, fp32, fp16, int8 = simulate_configs(
        m,
        space,
        [_cfg(), _cfg(precision="fp32"), _cfg(precision="fp16"), _cfg(precision="int8")],
        load,
    )
    assert default.capacity_rps == fp32.capacity_rps  # latencies differ by the per-config noise
    assert default.p99_ms == pytest.approx(fp32.p99_ms, rel=0.15)
    assert fp32.capacity_rps < fp16.capacity_rps < int8.capacity_rps
    assert fp16.p99_ms < fp32.p99_ms
    tiny16, tiny8 = simulate_configs(
        m, tiny_space(tmp_path), [_cfg(precision="fp16"), _cfg(precision="int8")], load
    )
    assert tiny16.capacity_rps == tiny8.capacity_rps
    heavy = SimModel("heavy", flops=1e9, param_bytes=20e9, activation_bytes=1e6)
    oom32, ok16 = simulate_configs(
        heavy, space, [_cfg(precision="fp32"), _cfg(precision="fp16")], load
    )
    assert not oom32.ok and "needs 20.5 GB" in oom32.error and ok16.ok  # 16 GB T4


def test_precision_on_gpus_without_int8_tensor_cores_and_on_cpus(tmp_path):
    """A V100 has no INT8 tensor cores (DP4A, 62.8 TOP/s < FP16's 125): INT8 is slower than
    FP16 there. A CPU gets no FP16 speed-up and CPU_INT8_SPEEDUP for INT8."""
    from autoconf import load_space
    from autoconf._simulator import CPU_INT8_SPEEDUP

    gpus = load_space("gpu-default")
    m = SimModel("big", flops=5e10, param_bytes=1e8, activation_bytes=1e6, cpu_ms_per_sample=0.01)
    load = Load(slo_p99_ms=None, target_rps=1)
    fp16, int8 = simulate_configs(
        m, gpus, [_cfg(gpu_type="V100", precision=p) for p in ("fp16", "int8")], load
    )
    assert int8.capacity_rps < fp16.capacity_rps
    cpu = load_space("cpu-local")
    fp32, fp16, int8 = simulate_configs(
        m,
        cpu,
        [_cfg(gpu_type="cpu", batch_size=1, precision=p) for p in ("fp32", "fp16", "int8")],
        load,
    )
    assert fp16.capacity_rps == pytest.approx(fp32.capacity_rps)
    assert int8.capacity_rps == pytest.approx(CPU_INT8_SPEEDUP * fp32.capacity_rps, rel=0.05)


@pytest.mark.skipif(not MICROBENCH.is_file(), reason="shared micro-benchmark CSV not present")
def test_shipped_calibration_matches_the_microbenchmark():
    assert calibrate(MICROBENCH) == CALIBRATION


def test_scalar_path_matches_the_vectorised_one(tmp_path, monkeypatch):
    from autoconf import _simulator as _sim

    space = tiny_space(tmp_path)
    configs = space.configs()[:12]
    load = Load(slo_p99_ms=40, target_rps=150)
    vector = simulate_configs(MODELS[0], space, configs, load)
    monkeypatch.setattr(_sim, "SCALAR_MAX_CONFIGS", 100)
    scalar = simulate_configs(MODELS[0], space, configs, load)
    for v, s in zip(vector, scalar):
        assert v.p99_ms == pytest.approx(s.p99_ms, rel=1e-6)
        assert v.capacity_rps == pytest.approx(s.capacity_rps, rel=1e-6)


def test_ground_truth_tables_are_non_trivial(tmp_path):
    space = tiny_space(tmp_path)
    # the first model's objective is chosen by the sim, the second one's given (60 ms / 300 rps:
    # at FP16 throughput, before SIM_VERSION 4, it was 20 ms / 3,000 rps, which FP32 cannot serve)
    given = [None, Objective(slo_p99_ms=60.0, target_rps=300.0)]
    tables = sim_tables(MODELS, space, objectives=given, cache_dir=tmp_path / "cache")
    assert tables[1].objective == given[1]
    for t in tables:
        assert len(t.results) == space.size()
        feasible = [c for c, m in t.results.items() if t.objective.feasible(m)]
        assert 0 < len(feasible) < space.size()
        assert t.objective.slo_p99_ms and t.objective.target_rps
    again = sim_tables(
        MODELS, space, objectives=given, cache_dir=tmp_path / "cache"
    )  # from the cache
    c = next(iter(tables[0].results))
    assert again[0].results[c].p99_ms == pytest.approx(tables[0].results[c].p99_ms)
    assert again[0].objective == tables[0].objective


def test_sim_dir_profiles_onnx_models_with_kops(tmp_path):
    """sim:DIR end to end on one tiny generated model (exported with torch at test time)."""
    import kops
    from autoconf.datasets import onnx_dir_tables

    models = tmp_path / "models"
    models.mkdir()
    kops.zoo.build("tiny_mlp", models / "mlp.onnx")
    (table,) = onnx_dir_tables(models, space=tiny_space(tmp_path), cache_dir=None)
    assert table.name == "mlp" and len(table.results) == 36
    assert table.features is not None and len(table.features) == len(kops.FEATURE_NAMES)
    assert any(table.objective.feasible(m) for m in table.results.values())


def test_zoo_models_builds_only_what_is_asked(monkeypatch):
    """A subset of the zoo exports only its generated models (a copy needs its base), in zoo
    order; an unknown name is refused in one line."""
    from autoconf import UserError
    from autoconf.datasets import _zoo

    built: list[str] = []
    real = _zoo.zoo_profile
    monkeypatch.setattr(
        _zoo, "zoo_profile", lambda name, *a, **k: built.append(name) or real(name, *a, **k)
    )
    models = _zoo.zoo_models(["tiny_mlp@l", "lstm@l~p", "tiny_mlp@s"])
    assert [m.name for m in models] == ["tiny_mlp@s", "tiny_mlp@l", "lstm@l~p"]
    assert built == ["lstm@l", "tiny_mlp@s", "tiny_mlp@l"]
    with pytest.raises(UserError, match="unknown zoo model"):
        _zoo.zoo_models(["tiny_mlp@xl"])
