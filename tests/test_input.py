"""Bad input ends as one line naming the option or field, exit 2, before any work (issue 15,
items 6-10): space files, limits on every number, the sweep's tracebacks, a plan's
``backend_options``, symbolic dims in ``stress``, ``--resume`` without a study."""

from __future__ import annotations

import inspect

import onnx
import pytest
import yaml
from onnx import TensorProto, helper

import autoconf
import autoconf._input as inp
from autoconf import cli


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    import kops.zoo

    return kops.zoo.build("tiny_mlp", tmp_path_factory.mktemp("m") / "tiny_mlp.onnx")


def _relu_model(path, shape):
    """A one-Relu model whose input has ``shape`` (ints, names, or "" for an unnamed dim)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    if "" in shape:
        dim = m.graph.input[0].type.tensor_type.shape.dim[shape.index("")]
        dim.ClearField("dim_param")
    onnx.save(m, path)
    return path


def _run(argv, capsys) -> tuple[int, str]:
    rc = cli.main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return rc, err


def _space(tmp_path, **dims) -> str:
    space = {
        "name": "t",
        "dimensions": {
            "batch_size": [1],
            "gpu_type": ["cpu"],
            "replicas": [1],
            "cpu_cores": [1],
            **dims,
        },
        "gpus": {
            "cpu": {
                "fp16_tflops": 0,
                "fp32_tflops": 0,
                "memory_gb": 0,
                "bandwidth_gbps": 0,
                "price_per_hour": 0,
            }
        },
        "pricing": {"cpu_core_per_hour": 0.05},
    }
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(space))
    return str(path)


# -- item 6: space files ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "values, field",
    [
        ([1, "x", None, 2.5], "batch_size[1]"),
        ([1, 2.5], "whole number"),
        ([0], "batch_size[0]"),
        ([-4], "batch_size[0]"),
        ({"min": 1, "max": 1_000_000_000}, "at most"),
        ({"min": 1, "max": float("inf")}, "batch_size"),
    ],
)
def test_a_bad_space_fails_when_read_naming_file_and_field(tmp_path, values, field):
    path = _space(tmp_path, batch_size=values)
    with pytest.raises(autoconf.UserError) as err:
        autoconf.load_space(path)
    assert str(path) in str(err.value) and field in str(err.value)


def test_a_bad_space_exits_2_before_the_search(model, tmp_path, capsys):
    space = _space(tmp_path, batch_size=[1, "x", None, 2.5])
    argv = ["search", str(model), "--slo-p99", "50ms", "--backend", "sim", "--space", space]
    rc, err = _run(
        argv + ["--budget", "2", "--out", str(tmp_path / "o"), "--knowledge", "none"], capsys
    )
    assert rc == 2 and "batch_size" in err


# -- items 7, 8 and 10: limits and one-line errors ----------------------------------------------

_STRESS = ["stress", "MODEL", "--config", "batch_size=1,replicas=1,cpu_cores=1"]


@pytest.mark.parametrize(
    "extra, named",
    [
        (["--rate", "inf"], "--rate"),
        (["--rate", "nan"], "--rate"),
        (["--rate", "1e9"], "--rate"),
        (["--rate", "100", "--duration", "1e12s"], "--duration"),
        (["--rate", "5000", "--duration", "20000s"], "requests"),
        (["--rate", "1", "--backend-option", "nosuch=1"], "nosuch"),
        (["--rate", "1", "--backend-option", "ready_timeout_s=abc"], "ready_timeout_s"),
        (["--rate", "1", "--backend-option", "request_timeout_s=.inf"], "request_timeout_s"),
        (["--capacity", "--slo-p99", "50ms", "--start-rps", "inf"], "--start-rps"),
        (["--capacity", "--slo-p99", "50ms", "--max-steps", "100000"], "--max-steps"),
    ],
)
def test_stress_refuses_unbounded_or_unknown_input(model, capsys, extra, named):
    argv = [str(model) if a == "MODEL" else a for a in _STRESS] + extra
    rc, err = _run(argv, capsys)
    assert rc == 2 and named in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "field", ["cpu_cores=inf", "cpu_cores=nan", "replicas=1e9", "batch_size=2.5"]
)
def test_stress_refuses_a_config_field_out_of_bounds(model, capsys, field):
    rc, err = _run(["stress", str(model), "--config", field, "--rate", "1"], capsys)
    assert rc == 2 and "--config " + field.split("=")[0] in err


def test_stress_refuses_an_unnamed_symbolic_dim_as_search_and_kops_do(tmp_path, capsys):
    path = _relu_model(tmp_path / "m.onnx", [1, ""])
    argv = ["stress", str(path), "--config", "batch_size=1,replicas=1,cpu_cores=1", "--rate", "1"]
    rc, err = _run(argv, capsys)
    assert rc == 2 and "symbolic dimension" in err
    rc, err = _run(["kops", str(path)], capsys)
    assert rc == 2 and "symbolic dimension" in err


def test_stress_refuses_a_request_of_gigabytes(tmp_path, capsys):
    path = _relu_model(tmp_path / "big.onnx", [1, 2_000_000_000])
    argv = ["stress", str(path), "--config", "batch_size=1,replicas=1,cpu_cores=1", "--rate", "1"]
    rc, err = _run(argv, capsys)
    assert rc == 2 and "MiB" in err


def _search(model, out, *extra):
    return ["search", str(model), "--slo-p99", "50ms", "--backend", "sim", "--space",
            "gpu-default", "--budget", "2", "--knowledge", "none", "--no-progress",
            "--out", str(out), *extra]  # fmt: skip


@pytest.mark.parametrize(
    "extra, named",
    [
        (["--qps", "inf"], "--qps"),
        (["--qps", "1e9"], "--qps"),
        (["--budget", "1000000000"], "--budget"),
        (["--parallel", "100000"], "--parallel"),
        (["--backend-option", "seed=abc"], "seed"),
        (["--backend-option", "nosuch=1"], "nosuch"),
    ],
)
def test_search_refuses_unbounded_or_unknown_input(model, tmp_path, capsys, extra, named):
    rc, err = _run(_search(model, tmp_path / "o", *extra), capsys)
    assert rc == 2 and named in err


def test_search_local_backend_option_of_the_wrong_type(model, tmp_path, capsys):
    argv = _search(model, tmp_path / "o", "--backend-option", "ready_timeout_s=abc")
    argv[argv.index("sim")] = "local"
    rc, err = _run(argv, capsys)
    assert rc == 2 and "ready_timeout_s" in err


@pytest.mark.parametrize("where", ["file", "under_file", "proc"])
def test_search_out_that_cannot_be_written_is_one_line(model, tmp_path, capsys, where):
    afile = tmp_path / "afile"
    afile.write_text("x")
    out = {"file": afile, "under_file": afile / "sub", "proc": "/proc/autoconf-out"}[where]
    rc, err = _run(_search(model, out), capsys)
    assert rc == 2 and "--out" in err


def test_resume_without_a_study_is_refused(model, tmp_path, capsys):
    rc, err = _run(_search(model, tmp_path / "fresh", "--resume"), capsys)
    assert rc == 2 and "--resume" in err
    assert not (tmp_path / "fresh" / "plan.yaml").exists()


# -- items 8 and 9: validate and prior --------------------------------------------------------


@pytest.fixture(scope="module")
def sim_plan(model, tmp_path_factory):
    out = tmp_path_factory.mktemp("plan")
    argv = _search(model, out, "--qps", "50", "--backend-option", "seed=3")
    assert cli.main(argv) == 0
    return out / "plan.yaml"


def _edited(plan_path, tmp_path, **options):
    plan = yaml.safe_load(plan_path.read_text())
    plan["backend_options"] = options
    plan["model"]["path"] = str(plan_path.parent / plan["model"]["path"])
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(plan))
    return path


def test_a_plan_keeps_its_own_backend_options(sim_plan):
    assert yaml.safe_load(sim_plan.read_text())["backend_options"] == {"seed": 3}


@pytest.mark.parametrize(
    "options, named",
    [
        ({"host": "0.0.0.0"}, "host"),
        ({"kubeconfig": "/tmp/evil"}, "kubeconfig"),
        ({"seed": "abc"}, "seed"),
        ({"seed": -1}, "seed"),
        ({"seed": None}, "seed"),
        ({"nosuch": 1}, "nosuch"),
    ],
)
def test_validate_refuses_a_plan_with_bad_or_unsafe_backend_options(
    sim_plan, tmp_path, capsys, options, named
):
    rc, err = _run(["validate", str(_edited(sim_plan, tmp_path, **options))], capsys)
    assert rc == 2 and "backend_options" in err and named in err


def test_plan_safe_drops_where_servers_listen():
    assert inp.plan_safe({"host": "0.0.0.0", "seed": 1, "dims": {"a": 1}}) == {"seed": 1}


def test_validate_junit_into_a_directory_fails_before_measuring(sim_plan, tmp_path, capsys):
    rc, err = _run(["validate", str(sim_plan), "--junit", str(tmp_path)], capsys)
    assert rc == 2 and "--junit" in err


def test_prior_train_out_a_directory_fails_before_training(tmp_path, capsys):
    rc, err = _run(["prior", "train", "--from", "nosuch:thing", "--out", str(tmp_path)], capsys)
    assert rc == 2 and "--out" in err


# -- the layer itself ---------------------------------------------------------------------------


def test_every_backend_and_deployer_declares_its_options():
    """A backend or deployer without a schema would take any option unchecked."""
    import stress
    from autoconf.backends import BACKENDS

    assert set(inp.BACKEND_OPTIONS) == set(BACKENDS)
    assert set(inp.DEPLOYER_OPTIONS) == set(stress.DEPLOYERS)


@pytest.mark.parametrize("name", ["local", "kubernetes"])
def test_deployer_schemas_name_only_real_parameters(name):
    import importlib

    import stress

    module, cls = stress.DEPLOYERS[name].split(":")
    params = inspect.signature(getattr(importlib.import_module(module), cls)).parameters
    assert set(inp.DEPLOYER_OPTIONS[name].model_fields) <= set(params)


@pytest.mark.parametrize("bad", [float("inf"), float("nan"), -1, 0, 1e12, "x", None, True])
def test_number_refuses_what_is_not_a_finite_bounded_number(bad):
    with pytest.raises(autoconf.UserError, match="--x"):
        inp.number(bad, "--x", maximum=1e6)
