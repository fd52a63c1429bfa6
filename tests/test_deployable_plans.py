"""Plans a user can deploy (issue 18): a 68 MB model the project never saw, searched on the
simulator, gets manifests that name its storage, sit in its namespace, embed no model and
request its memory; without a storage URI no manifest that cannot start is written; the
Kubernetes backend refuses such a model before any cluster call; ``--kserve`` replaces the
Deployment; symbolic dims other than batch/sequence are searched with ``--dim``.

Where a cluster is needed, ``tests/k8s_double.py`` (a TEST DOUBLE of the API server, not
Kubernetes) stands in: it records every request, so "no cluster call" is checked, not assumed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from _tiny import conv_relu_onnx, save_graph
from onnx import TensorProto, helper, numpy_helper

import stress
from autoconf.cli import main

sys.path.insert(0, str(Path(__file__).parent))
from k8s_double import KubeApiDouble  # noqa: E402

SEARCH = ["--backend", "sim", "--space", "gpu-default", "--budget", "3", "--knowledge", "none"]


@pytest.fixture(scope="session")
def big_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLP of ~17M FP32 parameters (~68 MB) with random weights, written with onnx.helper
    (no torch: a second, not a minute)."""
    rng = np.random.default_rng(0)
    widths = [512, 2304, 2304, 2304, 2304]
    nodes, inits, x = [], [], "x"
    for i, (a, b) in enumerate(zip(widths, widths[1:])):
        w = rng.standard_normal((a, b), dtype=np.float32)
        inits.append(numpy_helper.from_array(w, f"w{i}"))
        nodes += [
            helper.make_node("MatMul", [x, f"w{i}"], [f"h{i}"]),
            helper.make_node("Relu", [f"h{i}"], [f"r{i}"]),
        ]
        x = f"r{i}"
    graph = helper.make_graph(
        nodes,
        "unseen_mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", widths[0]])],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["batch", widths[-1]])],
        inits,
    )
    path = save_graph(graph, tmp_path_factory.mktemp("big") / "unseen_mlp.onnx")
    assert 60e6 < path.stat().st_size < 75e6
    return path


@pytest.fixture(scope="session")
def conv_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A conv model whose dynamic dims are ``batch, 3, height, width`` (no default for the
    last two: kops cannot guess an image size)."""
    path = tmp_path_factory.mktemp("conv") / "conv_hw.onnx"
    return conv_relu_onnx(path, np.full((8, 3, 3, 3), 0.01), ("height", "width"))


def _docs(out: Path) -> list[dict]:
    return [yaml.safe_load(p.read_text()) for p in sorted((out / "manifests").glob("*.yaml"))]


def _mib(quantity: str) -> float:
    assert quantity.endswith("Mi"), quantity
    return float(quantity[:-2])


def test_stored_model_gets_deployable_manifests(big_model: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    argv = ["search", str(big_model), "--slo-p99", "50ms", *SEARCH, "--out", str(out)]
    argv += ["--no-progress", "--model-uri", "s3://bucket/m", "--namespace", "ml-serving"]
    assert main(argv) == 0, capsys.readouterr().err
    docs = _docs(out)
    assert [d["kind"] for d in docs] == [
        "ConfigMap",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
    ]
    stress.validate_manifests(docs)  # kubernetes-validate, strict, offline
    assert all(d["metadata"]["namespace"] == "ml-serving" for d in docs)
    assert "binaryData" not in docs[0]  # no model embedded
    pod = docs[1]["spec"]["template"]["spec"]
    env = {e["name"]: e["value"] for e in pod["initContainers"][0]["env"]}
    assert env["MODEL_URI"] == "s3://bucket/m"
    memory = pod["containers"][0]["resources"]["requests"]["memory"]
    assert _mib(memory) * 2**20 >= big_model.stat().st_size
    assert pod["containers"][0]["resources"]["limits"]["memory"] == memory
    plan = yaml.safe_load((out / "plan.yaml").read_text())
    assert plan["model"]["uri"] == "s3://bucket/m" and plan["model"]["precision"] == "fp32"
    prov = plan["provenance"]
    assert prov["stress_test_duration_s"] == 10.0 and "search_duration_s" not in prov
    assert prov["search_wall_s"] > 0
    assert prov["basis"].startswith("simulated") and "computed at FP32" in prov["basis"]
    assert plan["measured"]["source"].startswith("simulated")
    assert "re-measured" not in plan["measured"]["source"]
    # one trial numbering: the plan's trial is the CSV's and the report's
    number = int(plan["predicted"]["source"].rsplit("#", 1)[1])
    csv_numbers = [line.split(",")[0] for line in (out / "trials.csv").read_text().splitlines()]
    assert str(number) in csv_numbers[1:]
    report = (out / "report.html").read_text()
    assert f"<td>{number}</td>" in report
    assert "simulated p99" in report and "re-measured p99" not in report


def test_without_uri_the_plan_is_written_and_the_render_command_said(
    big_model: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "out"
    argv = ["search", str(big_model), "--slo-p99", "50ms", *SEARCH, "--out", str(out)]
    assert main([*argv, "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert (out / "plan.yaml").is_file()
    assert not list((out / "manifests").glob("*.yaml")) if (out / "manifests").exists() else True
    hints = [line for line in err.splitlines() if "autoconf manifests" in line]
    assert len(hints) == 1 and "--model-uri" in hints[0] and "too big" in hints[0]
    # rendered later, without searching again: KServe instead of the Deployment
    plan = str(out / "plan.yaml")
    argv = ["manifests", plan, "--model-uri", "pvc://models/unseen", "--kserve"]
    assert main([*argv, "--namespace", "ml-serving"]) == 0
    docs = _docs(out)
    assert [d["kind"] for d in docs] == ["ConfigMap", "InferenceService"]
    stress.validate_manifests(docs)  # against the InferenceService CRD's schema
    model = docs[1]["spec"]["predictor"]["model"]
    assert model["storageUri"] == "pvc://models/unseen"
    assert model["runtime"] == "kserve-tritonserver"
    assert _mib(model["resources"]["requests"]["memory"]) * 2**20 >= big_model.stat().st_size
    assert "max_batch_size:" in docs[0]["data"]["config.pbtxt"]
    # and back to a Deployment: the InferenceService does not stay beside it
    assert main(["manifests", plan, "--model-uri", "https://m.example/unseen.onnx"]) == 0
    assert "InferenceService" not in {d["kind"] for d in _docs(out)}


@pytest.mark.parametrize(
    ("args", "wrong"),
    [
        (["--model-uri", "ftp://h/m.onnx"], "--model-uri"),
        (["--model-uri", "s3://b/m", "--namespace", "ML_serving"], "--namespace"),
        (["--model-uri", "s3://b/m", "--image", "triton server"], "--image"),
    ],
)
def test_bad_manifest_flags_are_one_line(
    big_model: Path, tmp_path: Path, capsys, args: list[str], wrong: str
) -> None:
    argv = ["search", str(big_model), "--slo-p99", "50ms", *SEARCH, "--out", str(tmp_path)]
    assert main([*argv, *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and wrong in err


def test_kubernetes_backend_refuses_a_big_model_without_uri_before_any_cluster_call(
    big_model: Path, tmp_path: Path, capsys
) -> None:
    with KubeApiDouble([]) as double:
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(
            "apiVersion: v1\nkind: Config\n"
            f"clusters: [{{name: c, cluster: {{server: '{double.url}'}}}}]\n"
            "users: [{name: u, user: {token: t}}]\n"
            "contexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n"
        )
        argv = ["search", str(big_model), "--slo-p99", "50ms", "--backend", "kubernetes"]
        argv += ["--backend-option", f"kubeconfig={kubeconfig}", "--out", str(tmp_path / "o")]
        assert main([*argv, "--knowledge", "none", "--no-progress"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "--model-uri" in err
        argv = ["stress", str(big_model), "--backend", "kubernetes", "--config", "batch_size=1"]
        assert main([*argv, "--rate", "1", "--backend-option", f"kubeconfig={kubeconfig}"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "model_uri" in err
        assert double.requests == []


def test_the_kubernetes_trials_get_the_uri_and_the_models_memory(big_model: Path) -> None:
    """The Kubernetes backend's trial pod: the model from its URI, memory from kops."""
    from kubernetes import client

    import kops
    from autoconf._space import load_space
    from autoconf.backends._kubernetes import KubernetesBackend

    space = load_space("gpu-default")
    with KubeApiDouble([]) as double:
        api = client.ApiClient(client.Configuration(host=double.url))
        backend = KubernetesBackend(space, model_uri="gs://b/m.onnx", api_client=api)
        profile = kops.profile(big_model)
        config = next(c for c in space.configs() if c.gpu_type != "cpu")
        spec = backend.spec_for(profile, config, trial=1)
    assert spec.memory_mb * 2**20 >= big_model.stat().st_size
    cm, dep, _ = stress.render_trial_manifests(spec, "t", backend.deployer.manifest_options)
    stress.validate_manifests([cm, dep])
    init = dep["spec"]["template"]["spec"]["initContainers"][0]
    assert {"name": "MODEL_URI", "value": "gs://b/m.onnx"} in init["env"]
    assert "binaryData" not in cm


def test_conv_model_is_searched_at_its_named_dims(
    conv_model: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    out = tmp_path / "out"
    argv = ["search", str(conv_model), "--slo-p99", "50ms", *SEARCH, "--out", str(out)]
    argv += ["--no-progress", "--dim", "height=224", "--dim", "width=224"]
    assert main(argv) == 0, capsys.readouterr().err
    plan = yaml.safe_load((out / "plan.yaml").read_text())
    assert plan["model"]["dims"] == {"batch": 1, "height": 224, "width": 224}
    assert plan["provenance"]["kops_profile"]["dims"]["height"] == 224
    # validate measures the same shapes: the plan's dims, unless --dim says otherwise
    from autoconf import _search

    seen: list[dict] = []
    real = _search.profile_model
    monkeypatch.setattr(
        _search, "profile_model", lambda path, dims=None: seen.append(dims) or real(path, dims)
    )
    main(["validate", str(out / "plan.yaml")])
    assert seen == [{"batch": 1, "height": 224, "width": 224}]


def test_a_study_resumes_only_at_the_dims_it_was_measured_at(
    conv_model: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "out"
    argv = ["search", str(conv_model), "--slo-p99", "50ms", *SEARCH, "--out", str(out)]
    argv += ["--no-progress", "--dim", "height=224"]
    assert main([*argv, "--dim", "width=224"]) == 0, capsys.readouterr().err
    capsys.readouterr()
    assert main([*argv, "--dim", "width=320", "--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "width=224" in err and "width=320" in err
    assert main([*argv, "--dim", "width=224", "--resume"]) == 0


@pytest.mark.parametrize("command", ["search", "kops", "stress"])
def test_a_mistyped_dim_is_exit_2_listing_the_models_dims(
    conv_model: Path, tmp_path: Path, capsys, command: str
) -> None:
    argv = {
        "search": ["search", str(conv_model), "--slo-p99", "50ms", *SEARCH],
        "kops": ["kops", str(conv_model)],
        "stress": ["stress", str(conv_model), "--config", "batch_size=1", "--rate", "1"],
    }[command]
    if command == "search":
        argv += ["--out", str(tmp_path / "o"), "--no-progress"]
    assert main([*argv, "--dim", "heigth=224", "--dim", "width=224"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "heigth" in err and "batch, height, width" in err


def test_a_dim_without_default_must_be_given(conv_model: Path, tmp_path: Path, capsys) -> None:
    argv = ["search", str(conv_model), "--slo-p99", "50ms", *SEARCH, "--out", str(tmp_path)]
    assert main([*argv, "--no-progress", "--dim", "height=224"]) == 2
    assert "width" in capsys.readouterr().err


@pytest.mark.parametrize("backend", ["local", "kubernetes"])
def test_live_backends_send_requests_at_the_searched_dims(
    conv_model: Path, tmp_path: Path, monkeypatch, backend: str
) -> None:
    """The deployer's ``dims`` option carries the resolved dims (both deployers take it)."""
    from autoconf import backends
    from autoconf._search import SearchOptions, run_search

    seen: list[dict] = []

    class Stop(Exception):
        pass

    def get_backend(name, space, **options):
        seen.append(options)
        raise Stop

    monkeypatch.setattr(backends, "get_backend", get_backend)
    opts = SearchOptions(
        model_path=conv_model,
        slo_p99_ms=50.0,
        backend=backend,
        out_dir=tmp_path,
        dims={"height": 64, "width": 48},
        knowledge="none",
        progress=False,
    )
    with pytest.raises(Stop):
        run_search(opts)
    assert seen[0]["dims"] == {"batch": 1, "height": 64, "width": 48}
