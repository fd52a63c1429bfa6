"""Every manifest the project renders, validated against the real Kubernetes schemas offline
(kubernetes-validate, strict mode: unknown fields are errors). KServe's InferenceService has
no schema there: it is validated, as strictly, against KServe's own CRD schema, vendored under
stress/schemas (see its README)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from autoconf._manifests import render_plan_manifests
from stress import (
    DeploymentSpec,
    LabelScheme,
    ManifestOptions,
    StressError,
    render_load_manifests,
    render_trial_manifests,
    triton_model_config,
    validate_manifests,
)
from stress._manifests import LoadJobSpec

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def model(relu_model: Path) -> Path:
    return relu_model


def _spec(model: Path, **kw) -> DeploymentSpec:
    base = dict(batch_size=8, replicas=2, cpu_cores=1.5, labels={"study": "s 1", "trial": "7"})
    return DeploymentSpec(model, **{**base, **kw})


def _pods(docs):
    for d in docs:
        if d["kind"] in ("Deployment", "Job"):
            yield d["spec"]["template"]["spec"]


@pytest.mark.parametrize("gpu", [None, "A100-80GB"])
def test_trial_and_load_manifests_are_valid_and_hardened(model: Path, gpu) -> None:
    spec = _spec(model, gpu_type=gpu)
    opts = ManifestOptions(namespace="ns", labels=LabelScheme("team.example", "tool"))
    docs = render_trial_manifests(spec, "ac-s-7", opts)
    docs += render_load_manifests(
        spec, "ac-s-7-l1", LoadJobSpec("http://ac-s-7:8000", 5, 1, workers=3, env={"A": "1"}), opts
    )
    validate_manifests(docs)
    assert [d["kind"] for d in docs] == [
        "ConfigMap", "Deployment", "Service", "ConfigMap", "Service", "Job", "Job"
    ]  # fmt: skip
    for d in docs:
        labels = d["metadata"]["labels"]
        assert labels["app.kubernetes.io/managed-by"] == "tool"  # the caller's scheme
        assert labels["team.example/study"] == "s-1" and labels["team.example/trial"] == "7"
    default = render_trial_manifests(spec, "x")[0]["metadata"]["labels"]
    assert default["app.kubernetes.io/managed-by"] == "stress" and "stress.io/study" in default
    for pod in _pods(docs):
        assert pod["securityContext"]["runAsNonRoot"] is True
        for c in pod.get("initContainers", []) + pod["containers"]:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"] == {"drop": ["ALL"]}
            assert sc["readOnlyRootFilesystem"] is True
            assert c["resources"]["requests"] == c["resources"]["limits"]
    triton = docs[1]["spec"]["template"]["spec"]["containers"][0]
    assert triton["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert triton["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert triton["resources"]["limits"]["cpu"] == "1500m"
    pod = docs[1]["spec"]["template"]["spec"]
    if gpu:
        assert triton["resources"]["limits"]["nvidia.com/gpu"] == "1"
        assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
    else:
        assert "nvidia.com/gpu" not in triton["resources"]["limits"]
        assert "nodeSelector" not in pod
    worker = docs[-1]["spec"]
    assert worker["parallelism"] == worker["completions"] == 3
    assert worker["completionMode"] == "Indexed"


def test_triton_config_reflects_the_spec(model: Path) -> None:
    text = triton_model_config(_spec(model, gpu_type="T4", instances_per_gpu=2, batch_size=16))
    assert "max_batch_size: 16" in text
    assert "max_queue_delay_microseconds: 2000" in text
    assert "count: 2" in text and "kind: KIND_GPU" in text
    assert "kind: KIND_CPU" in triton_model_config(_spec(model))


def test_gpu_label_and_product_table_are_overridable(model: Path) -> None:
    opts = ManifestOptions(gpu_label="cloud.example/accel", gpu_product_labels={"T4": "t4-pcie"})
    pod = render_trial_manifests(_spec(model, gpu_type="T4"), "x", opts)[1]["spec"]["template"]
    assert pod["spec"]["nodeSelector"] == {"cloud.example/accel": "t4-pcie"}


def test_model_is_embedded_when_small_and_fetched_from_uri_otherwise(model: Path) -> None:
    cm, dep, _ = render_trial_manifests(_spec(model), "x")
    assert "model.onnx" in cm["binaryData"]
    assert (
        "cp /config/model.onnx"
        in dep["spec"]["template"]["spec"]["initContainers"][0]["command"][2]
    )
    opts = ManifestOptions(model_uri="https://models.example/tiny.onnx")
    cm, dep, _ = render_trial_manifests(_spec(model), "x", opts)
    init = dep["spec"]["template"]["spec"]["initContainers"][0]
    assert "binaryData" not in cm
    assert {"name": "MODEL_URI", "value": "https://models.example/tiny.onnx"} in init["env"]
    validate_manifests([cm, dep])


@pytest.mark.parametrize("gpu", ["cpu", "H100"])
def test_plan_manifests_with_hpa_are_valid(model: Path, gpu: str) -> None:
    docs = render_plan_manifests(
        _spec(model, gpu_type=gpu, replicas=3),
        image="nvcr.io/nvidia/tritonserver:24.08-py3",
        namespace="prod",
        hpa_max_replicas=9,
        target_rps=120.0,
        slo_p99_ms=50.0,
    )
    validate_manifests(docs)
    kinds = [d["kind"] for d in docs]
    assert kinds == ["ConfigMap", "Deployment", "Service", "HorizontalPodAutoscaler"]
    hpa = docs[3]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 9)
    assert all(d["metadata"]["namespace"] == "prod" for d in docs)
    assert docs[1]["metadata"]["annotations"]["autoconf.io/slo-p99-ms"] == "50"
    assert all(d["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "autoconf" for d in docs)


@pytest.mark.parametrize("gpu", ["cpu", "H100"])
def test_kserve_replaces_the_deployment_and_carries_the_plan(model: Path, gpu: str) -> None:
    """An InferenceService *instead of* the Deployment, Service and HPA (one deployment of the
    model): Triton runtime, storage URI, resources, GPU node selector, config.pbtxt mounted."""
    docs = render_plan_manifests(
        _spec(model, gpu_type=gpu, replicas=3, batch_size=16),
        namespace="prod",
        kserve=True,
        model_uri="gs://models/tiny",
        slo_p99_ms=50.0,
    )
    validate_manifests(docs)
    assert [d["kind"] for d in docs] == ["ConfigMap", "InferenceService"]
    cm, isvc = docs
    assert "binaryData" not in cm and "max_batch_size: 16" in cm["data"]["config.pbtxt"]
    pred = isvc["spec"]["predictor"]
    assert pred["model"]["runtime"] == "kserve-tritonserver"
    assert pred["model"]["storageUri"] == "gs://models/tiny"
    assert pred["model"]["resources"]["limits"]["cpu"]
    assert {"name": "triton-config", "configMap": {"name": cm["metadata"]["name"]}} in pred[
        "volumes"
    ]
    assert "/config/config.pbtxt" in pred["model"]["command"][2]
    assert ("nodeSelector" in pred) == (gpu != "cpu")
    with pytest.raises(StressError, match="storage URI"):
        render_plan_manifests(_spec(model), kserve=True)


def test_invalid_documents_are_rejected_with_one_line(model: Path) -> None:
    docs = render_plan_manifests(_spec(model))
    bad = yaml.safe_load(yaml.safe_dump(docs[1]))
    bad["spec"]["template"]["spec"]["containers"][0]["resourcez"] = {}
    with pytest.raises(StressError, match="invalid Deployment .*resourcez"):
        validate_manifests([bad])
    isvc = render_plan_manifests(_spec(model), kserve=True, model_uri="s3://b/m.onnx")[-1]
    bad_isvc = yaml.safe_load(yaml.safe_dump(isvc))
    bad_isvc["spec"]["predictor"]["model"]["securityContext"]["runAsUserr"] = 1
    with pytest.raises(StressError, match="InferenceService .*securityContext"):
        validate_manifests([bad_isvc])
    bad_isvc = yaml.safe_load(yaml.safe_dump(isvc))
    bad_isvc["spec"]["predictor"]["modell"] = bad_isvc["spec"]["predictor"].pop("model")
    with pytest.raises(StressError, match="InferenceService .*modell"):
        validate_manifests([bad_isvc])  # the CRD's fields, strictly: not only its kind
    for where, key, value in [
        (("spec", "predictor", "model"), "storageUrl", "s3://b/m.onnx"),  # a typo of storageUri
        (("spec", "predictor"), "minReplicas", "three"),  # a wrong type
        (("metadata",), "labelz", {}),  # ObjectMeta, strictly
    ]:
        bad_isvc = yaml.safe_load(yaml.safe_dump(isvc))
        node = bad_isvc
        for part in where:
            node = node[part]
        node[key] = value
        with pytest.raises(StressError, match="invalid InferenceService"):
            validate_manifests([bad_isvc])


def test_the_inference_service_schema_is_kserves_crd() -> None:
    """The vendored schema is KServe's CRD (its source and commit named, its licence beside it),
    not a hand-written subset: fields autoconf never writes are there too."""
    import json

    from stress._kserve import INFERENCE_SERVICE_SCHEMA, load_schema

    raw = json.loads(INFERENCE_SERVICE_SCHEMA.read_text())
    assert "github.com/kserve/kserve/blob/" in raw["$comment"]
    licence = (INFERENCE_SERVICE_SCHEMA.parent / "LICENSE-kserve.txt").read_text()
    assert "Apache License" in licence and "Version 2.0" in licence
    predictor = load_schema()["properties"]["spec"]["properties"]["predictor"]
    assert {"model", "triton", "onnx", "workerSpec", "batcher", "logger"} <= set(
        predictor["properties"]
    )
    assert predictor["additionalProperties"] is False
    with pytest.raises(StressError, match="no schema"):
        validate_manifests([{"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {}}])


@pytest.mark.parametrize(
    ("uri", "image"),
    [
        ("s3://bucket/models/m.onnx", "kserve/storage-initializer"),
        ("gs://bucket/m", "kserve/storage-initializer"),
        ("https://m.example/m.onnx?sig=a&exp=1", "curlimages/curl"),
        ("pvc://model-store/team/m", "curlimages/curl"),
    ],
)
def test_every_model_uri_scheme_reaches_the_pod(model: Path, uri: str, image: str) -> None:
    cm, dep, _ = render_trial_manifests(_spec(model), "x", ManifestOptions(model_uri=uri))
    validate_manifests([cm, dep])
    pod = dep["spec"]["template"]["spec"]
    init = pod["initContainers"][0]
    assert init["image"].startswith(image) and "binaryData" not in cm
    claims = [v["persistentVolumeClaim"] for v in pod["volumes"] if "persistentVolumeClaim" in v]
    assert claims == ([{"claimName": "model-store", "readOnly": True}] if "pvc" in uri else [])
    if "pvc" in uri:
        assert "/mnt/model-source/team/m" in init["command"][2]


@pytest.mark.parametrize(
    "uri", ["ftp://h/m.onnx", "s3://", "s3://b/m onnx", "pvc://Bad_Claim/m", "s3://k:s@b/m"]
)
def test_bad_model_uris_are_refused(uri: str) -> None:
    from stress import check_model_uri

    with pytest.raises(StressError, match="model URI"):
        check_model_uri(uri)


def test_example_rbac_is_valid() -> None:
    docs = list(yaml.safe_load_all((ROOT / "examples/kubernetes/rbac.yaml").read_text()))
    assert {d["kind"] for d in docs} == {"ServiceAccount", "Role", "RoleBinding"}
    validate_manifests(docs)
    rules = {
        (g, r): set(rule["verbs"])
        for rule in docs[1]["rules"]
        for g in rule["apiGroups"]
        for r in rule["resources"]
    }
    for key in [("", "configmaps"), ("", "services"), ("apps", "deployments"), ("batch", "jobs")]:
        assert {"create", "get", "list", "delete"} <= rules[key]
    assert "get" in rules[("", "pods/log")]
