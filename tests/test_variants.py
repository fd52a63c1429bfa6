"""Model variants (``autoconf._variants``): FP16/INT8 files built with ONNX Runtime's real tools
and cached, the accuracy check against FP32 (top-1 agreement, relative error), a variant over
the bound left out and never measured, the CLI's bad input, and the live backend serving the
variant's file."""

from __future__ import annotations

import csv
import math

import numpy as np
import onnx
import optuna
import pytest
from _tiny import conv_relu_onnx, matmul_onnx
from onnx import TensorProto

import kops
from autoconf import _variants, cli
from autoconf._errors import UserError
from autoconf._plan import read_plan
from autoconf._space import load_space
from autoconf._types import Config


@pytest.fixture(scope="module")
def mlp(tmp_path_factory):
    """tiny_mlp (a 10-class classifier, random weights), written without torch."""
    return kops.zoo.build_tiny_mlp(tmp_path_factory.mktemp("mlp") / "tiny_mlp.onnx")


@pytest.fixture(scope="module")
def regressor(tmp_path_factory):
    """A linear regressor: ``y = x @ W`` with a single output column (not class logits)."""
    return matmul_onnx(tmp_path_factory.mktemp("reg") / "reg.onnx", 32, 1)


def _ops(path):
    return {n.op_type for n in onnx.load(str(path)).graph.node}


def test_variants_are_built_with_ort_tools_and_cached(mlp, tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOCONF_CACHE_DIR", str(tmp_path / "cache"))
    fp16 = _variants.variant_file(mlp, "fp16")
    int8 = _variants.variant_file(mlp, "int8")
    assert _variants.variant_file(mlp, "fp32") == mlp and _variants.variant_file(mlp, None) == mlp
    assert fp16.parent == int8.parent and fp16.parent.parent == tmp_path / "cache" / "variants"
    # FP16 inside, FP32 at the edges (keep_io_types): request bodies do not change
    m16 = onnx.load(str(fp16))
    assert m16.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert m16.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert any(i.data_type == TensorProto.FLOAT16 for i in m16.graph.initializer)
    # dynamic INT8 (no Conv): MatMulInteger, counted by kops as matrix products
    assert {"DynamicQuantizeLinear", "MatMulInteger"} <= _ops(int8)
    prof = kops.profile(int8, {"batch": 1})
    assert not prof.unknown_ops and prof.op_types["MatMulInteger"].flops > 0
    assert prof.param_bytes < kops.profile(mlp, {"batch": 1}).param_bytes / 3
    # cached: the second call builds nothing
    stamp = int8.stat().st_mtime_ns

    def no_build(*a, **k):
        raise AssertionError("rebuilt a cached variant")

    monkeypatch.setattr(_variants, "_build_int8", no_build)
    assert _variants.variant_file(mlp, "int8") == int8 and int8.stat().st_mtime_ns == stamp


def test_conv_models_are_quantized_statically(tmp_path, monkeypatch):
    """A conv model gets static QOperator INT8 (QLinearConv), calibrated on sample inputs."""
    monkeypatch.setenv("AUTOCONF_CACHE_DIR", str(tmp_path / "cache"))
    weight = np.random.default_rng(0).standard_normal((4, 3, 3, 3))
    path = conv_relu_onnx(tmp_path / "conv.onnx", weight, ("h", "w"))
    with pytest.raises(UserError, match="--dim h=N"):
        _variants.generated_samples(path, {})
    dims = {"h": 8, "w": 8}
    samples = _variants.generated_samples(path, dims, n=16)
    assert samples["x"].shape == (16, 3, 8, 8)
    v = _variants.check_variants(path, ["int8"], max_drop=0.2, samples=samples, dims=dims)
    assert v["int8"].feasible, v["int8"].reason
    assert "QLinearConv" in _ops(v["int8"].path)
    assert v["int8"].accuracy.metric == _variants.RELATIVE_ERROR  # a 4-D output: not logits
    assert 0 < v["int8"].accuracy.drop < 0.2  # 8-bit activations of random weights: a few %


def test_accuracy_metric_fits_the_output(mlp, regressor):
    cls = _variants.check_variants(
        mlp,
        ["fp32", "fp16", "int8"],
        max_drop=1.0,
        samples=_variants.generated_samples(mlp, {}, n=64),
    )
    assert {v.accuracy.metric for v in cls.values()} == {_variants.TOP1}
    assert cls["fp32"].accuracy.drop == 0.0 and cls["int8"].accuracy.samples == 64
    # drops on top-1 agreement come in steps of one sample
    assert all(
        math.isclose(v.accuracy.drop * 64, round(v.accuracy.drop * 64)) for v in cls.values()
    )
    reg = _variants.check_variants(
        regressor, ["fp16"], max_drop=1.0, samples=_variants.generated_samples(regressor, {}, n=32)
    )
    acc = reg["fp16"].accuracy
    assert acc.metric == _variants.RELATIVE_ERROR
    assert 0 < acc.drop < 1e-2  # FP16 weights: about 2^-11 relative error each


def test_compare_by_hand():
    ref = np.array([[1.0, 2.0, 0.0], [3.0, 0.0, 1.0], [0.0, 0.0, 5.0], [1.0, 0.0, 0.0]])
    flipped = ref.copy()
    flipped[0] = [2.0, 1.0, 0.0]  # one of four top-1s changes
    assert _variants.compare(ref, flipped, _variants.TOP1) == 0.25
    y = np.array([[3.0], [4.0]])
    assert math.isclose(_variants.compare(y, y * 1.01, _variants.RELATIVE_ERROR), 0.01)
    assert _variants.compare(y, np.full_like(y, np.nan), _variants.RELATIVE_ERROR) == math.inf


def test_unbuildable_variant_is_infeasible_with_its_reason(mlp, tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOCONF_CACHE_DIR", str(tmp_path / "cache"))

    def unsupported(src, dst):  # stands in for a converter error (an op it cannot handle)
        raise RuntimeError("Unsupported op: MyCustomOp\nmore detail")

    monkeypatch.setattr(_variants, "_build_fp16", unsupported)
    v = _variants.check_variants(
        mlp, ["fp32", "fp16"], max_drop=0.01, samples=_variants.generated_samples(mlp, {}, n=8)
    )
    assert v["fp32"].feasible and not v["fp16"].feasible
    assert v["fp16"].reason == "fp16 variant cannot be built: Unsupported op: MyCustomOp"
    assert not list((tmp_path / "cache").rglob("*.onnx"))  # no half-written file left


def test_over_the_bound_is_left_out_of_the_space(mlp):
    samples = _variants.generated_samples(mlp, {}, n=256)
    v = _variants.check_variants(mlp, ["fp32", "int8"], max_drop=0.0, samples=samples)
    assert v["int8"].accuracy.drop > 0 and not v["int8"].feasible
    assert "over --max-accuracy-drop 0.00%" in v["int8"].reason
    space = _variants.with_precisions(load_space(None), ["fp32", "int8"])
    trimmed, notes = _variants.trim_space(space, v)
    assert trimmed.values("precision") == ["fp32"] and len(notes) == 1
    assert notes[0].startswith("precision int8 left out: accuracy drop")
    only = _variants.with_precisions(load_space(None), ["int8"])
    with pytest.raises(UserError, match="no precision of int8 is feasible"):
        _variants.trim_space(only, v)


def test_over_the_bound_variant_is_never_measured(mlp, tmp_path, capsys):
    """A search whose bound INT8 misses measures FP32 configs only and says why."""
    out = tmp_path / "out"
    argv = [
        "search", str(mlp), "--slo-p99", "50ms", "--backend", "sim", "--budget", "3",
        "--precisions", "fp32,int8", "--max-accuracy-drop", "0%", "--out", str(out),
        "--knowledge", "none", "--no-progress",
    ]  # fmt: skip
    assert cli.main(argv) == 0
    err = capsys.readouterr().err
    assert "precision int8 left out: accuracy drop" in err
    rows = list(csv.DictReader((out / "trials.csv").open()))
    assert rows and all(r.get("precision") in ("fp32", None) for r in rows)
    plan = read_plan(out / "plan.yaml")
    assert plan.config["precision"] == "fp32"
    assert plan.accuracy is not None and plan.accuracy.drop == 0.0
    assert plan.accuracy.metric == _variants.TOP1
    assert any("int8 left out" in n for n in plan.provenance.search_space.notes)
    # the drop is on every measured trial too (autoconf._record)
    storage = f"sqlite:///{out / 'study.db'}"
    (summary,) = optuna.get_all_study_summaries(storage)
    trials = optuna.load_study(study_name=summary.study_name, storage=storage).trials
    assert trials and all(t.user_attrs["accuracy_drop"] == 0.0 for t in trials)
    assert all(t.user_attrs["measurement"]["extra"]["accuracy"]["samples"] == 256 for t in trials)


def test_search_checks_on_the_users_sample_inputs(mlp, tmp_path, capsys):
    """``--sample-inputs`` is what the accuracy is measured on (its count is in the plan)."""
    samples = tmp_path / "samples.npz"
    rng = np.random.default_rng(3)
    np.savez(samples, input=rng.standard_normal((40, 128)).astype(np.float32))
    out = tmp_path / "out"
    argv = [
        "search", str(mlp), "--slo-p99", "50ms", "--backend", "sim", "--budget", "2",
        "--precisions", "fp16", "--max-accuracy-drop", "0.5%", "--sample-inputs", str(samples),
        "--out", str(out), "--knowledge", "none", "--no-progress",
    ]  # fmt: skip
    assert cli.main(argv) == 0, capsys.readouterr().err
    plan = read_plan(out / "plan.yaml")
    assert plan.config["precision"] == "fp16"
    assert plan.accuracy.samples == 40 and plan.accuracy.drop <= 0.005


def test_sample_inputs_file(mlp, tmp_path):
    good = tmp_path / "good.npz"
    np.savez(good, input=np.random.default_rng(0).standard_normal((5, 128)).astype(np.float32))
    assert _variants.load_samples(good, mlp)["input"].shape == (5, 128)
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, x=np.zeros((5, 128), np.float32))
    with pytest.raises(UserError, match="missing input .the model's inputs: input."):
        _variants.load_samples(wrong, mlp)
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, input=np.array([{"a": 1}], dtype=object))
    with pytest.raises(UserError, match="not a readable .npz"):
        _variants.load_samples(pickled, mlp)
    ints = tmp_path / "ints.npz"
    np.savez(ints, input=np.zeros((5, 128), np.int64))
    with pytest.raises(UserError, match="input is int64, the model takes float32"):
        _variants.load_samples(ints, mlp)
    not_npz = tmp_path / "x.npz"
    not_npz.write_text("hello")
    with pytest.raises(UserError, match="not a readable .npz"):
        _variants.load_samples(not_npz, mlp)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--precisions", "fp32,int4"], "--precisions: unknown precision 'int4'"),
        (["--precisions", ","], "--precisions: give at least one"),
        (["--max-accuracy-drop", "abc"], "--max-accuracy-drop: expected a share"),
        (["--max-accuracy-drop", "150%"], "--max-accuracy-drop: must be between"),
        (["--max-accuracy-drop=-1%"], "--max-accuracy-drop: must be between"),
        (["--sample-inputs", "nope.npz"], "--sample-inputs nope.npz: file not found"),
    ],
)
def test_cli_bad_values_exit_2_in_one_line(mlp, tmp_path, capsys, flags, message):
    argv = ["search", str(mlp), "--slo-p99", "50ms", "--backend", "sim", "--budget", "1"]
    code = cli.main([*argv, "--out", str(tmp_path / "o"), "--knowledge", "none", *flags])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1


def test_parse_drop():
    assert _variants.parse_drop("1%") == 0.01 and _variants.parse_drop("0.005") == 0.005
    assert _variants.parse_drop(" 0% ") == 0.0


def test_live_backend_serves_the_variant_file(mlp, tmp_path, monkeypatch):
    """The deployment of an INT8 config names the INT8 file; FP32 the model itself."""
    from autoconf.backends import get_backend

    monkeypatch.setenv("AUTOCONF_CACHE_DIR", str(tmp_path / "cache"))
    profile = kops.profile(mlp, {"batch": 1})
    space = _variants.with_precisions(load_space(None), ["fp32", "int8"])
    with get_backend("local", space) as backend:
        c = Config(batch_size=1, gpu_type="cpu", precision="int8")
        spec = backend.spec_for(profile, c, 1)
        assert spec.model_path == _variants.variant_file(mlp, "int8")
        assert spec.model_name == "tiny_mlp"
        assert backend.spec_for(profile, Config(1, "cpu", precision="fp32"), 2).model_path == mlp
        backend.model_variants = {"int8": tmp_path / "checked.onnx"}  # what the search checked
        assert backend.spec_for(profile, c, 3).model_path == tmp_path / "checked.onnx"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_done_when_int8_measured_live_and_named_in_the_plan(mlp, tmp_path, capsys):
    """The issue's done-when: ``--precisions fp32,int8 --max-accuracy-drop 1% --budget 6`` on
    the local backend measures INT8 configs and the plan names its precision and accuracy drop.
    A small space (2 batch sizes x 2 precisions, 1 replica of 1 core) and a modest ``--qps``
    keep it short on a busy machine; the budget covers the whole space, so INT8 is measured
    whatever the sampler picks first."""
    space = tmp_path / "space.yaml"
    space.write_text(
        "name: tiny-variants\n"
        "dimensions: {batch_size: [4, 8], gpu_type: [cpu], replicas: [1], cpu_cores: [1],\n"
        "             max_queue_delay_ms: [2]}\n"
        "gpus: {cpu: {fp16_tflops: 0, fp32_tflops: 0, memory_gb: 0, bandwidth_gbps: 0,\n"
        "             price_per_hour: 0}}\n"
        "pricing: {cpu_core_per_hour: 0.0447}\n"
    )
    out = tmp_path / "out"
    argv = [
        "search", str(mlp), "--slo-p99", "200ms", "--qps", "30", "--space", str(space),
        "--precisions", "fp32,int8", "--max-accuracy-drop", "1%", "--budget", "6",
        "--duration", "2s", "--out", str(out), "--knowledge", "none", "--no-progress",
        "--backend-option", "oversubscribe=true",
    ]  # fmt: skip
    code = cli.main(argv)
    assert code == 0, capsys.readouterr().err
    rows = list(csv.DictReader((out / "trials.csv").open()))
    int8 = [r for r in rows if r.get("precision") == "int8" and r["ok"] == "True"]
    assert int8 and all(float(r["throughput_rps"]) > 0 for r in int8)
    plan = read_plan(out / "plan.yaml")
    assert plan.config["precision"] in ("fp32", "int8")
    assert plan.accuracy is not None and plan.accuracy.metric == _variants.TOP1
    assert 0.0 <= plan.accuracy.drop <= 0.01
    if plan.config["precision"] == "fp32":
        assert plan.accuracy.drop == 0.0


def test_variants_with_a_model_uri_on_kubernetes_are_refused(mlp):
    """The cluster would load the FP32 file from the URI: refused before anything is built."""
    from autoconf._search._options import SearchOptions
    from autoconf._search._precision import prepare_variants

    opts = SearchOptions(
        model_path=mlp,
        slo_p99_ms=50,
        backend="kubernetes",
        backend_options={"model_uri": "s3://bucket/tiny_mlp.onnx"},
        precisions=["fp32", "int8"],
    )
    with pytest.raises(UserError, match="--precisions with --model-uri"):
        prepare_variants(opts, mlp, load_space(None))
    opts.precisions = ["fp32"]
    space, variants, notes = prepare_variants(opts, mlp, load_space(None))
    assert space.values("precision") == ["fp32"] and not notes
