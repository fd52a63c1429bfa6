"""Kubernetes manifests, as plain dicts, for a trial deployment and its load, and their check.

A trial is a Deployment of Triton Inference Server, its Service, and a ConfigMap holding the
generated Triton model configuration (``config.pbtxt``). The model reaches the pod through an
**initContainer**: it copies ``config.pbtxt`` into an ``emptyDir`` model repository and either
downloads ``model.onnx`` from a configurable URI (``http(s)://``, with curl) or, for small
models (< ~900 KiB) and no URI, copies it from the ConfigMap's ``binaryData``. Triton then
serves ``/models`` read-only. The load runs in-cluster as Locust master/worker Jobs.

Every object carries the labels of :attr:`ManifestOptions.labels` (``managed-by`` and the
spec's study/trial under the caller's prefix), so leftovers can be found and removed by label.
The model's name reaches the init script and ``config.pbtxt`` only as checked by
:mod:`stress._names` (and quoted in the script). The pod spec's parts
(:func:`resource_requirements`, :func:`container_security_context`, :func:`object_meta`) are
public so that callers can render further objects (a serving plan's HPA, ...) the same way.
:func:`validate_manifests` checks documents against the real Kubernetes schemas offline with
``kubernetes-validate`` in strict mode.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ._api import DeploymentSpec
from ._errors import StressError
from ._labels import COMPONENT_KEY, LabelScheme
from ._names import check_model_name, shell_quote

TRITON_IMAGE = "nvcr.io/nvidia/tritonserver:24.08-py3"
FETCH_IMAGE = "curlimages/curl:8.10.1"
#: KServe's storage initializer: downloads ``s3://`` and ``gs://`` URIs (credentials from the
#: pod's service account or environment, as in KServe).
STORAGE_INITIALIZER_IMAGE = "kserve/storage-initializer:v0.14.1"
_STORAGE_INITIALIZER = "/storage-initializer/scripts/initializer-entrypoint"
#: Where a model may be fetched from (``ManifestOptions.model_uri``).
MODEL_URI_SCHEMES = ("s3", "gs", "https", "http", "pvc")
LOCUST_IMAGE = "locustio/locust:2.47.0"
#: The Kubernetes version whose schemas :func:`validate_manifests` checks against.
KUBERNETES_VERSION = "1.30"

#: Every emptyDir has a size limit (a pod filling its node's disk is evicted, not the node).
TMP_SIZE_LIMIT = "1Gi"
#: The model repository's limit when the model file is not here to be measured.
DEFAULT_REPOSITORY_LIMIT = "16Gi"

HTTP_PORT = 8000
GRPC_PORT = 8001
METRICS_PORT = 8002
LOCUST_MASTER_PORT = 5557

#: Search-space GPU names -> values of the node label (``nvidia.com/gpu.product``, set by
#: NVIDIA's GPU feature discovery). SXM/PCIe variants differ per cloud: override with
#: ``ManifestOptions(gpu_product_labels={...})`` to match your nodes (``kubectl get nodes
#: -L nvidia.com/gpu.product``). A name missing here is used verbatim.
GPU_PRODUCT_LABELS: dict[str, str] = {
    "T4": "Tesla-T4",
    "V100": "Tesla-V100-SXM2-16GB",
    "K80": "Tesla-K80",
    "M60": "Tesla-M60",
    "L4": "NVIDIA-L4",
    "A10G": "NVIDIA-A10G",
    "A100-40GB": "NVIDIA-A100-SXM4-40GB",
    "A100-80GB": "NVIDIA-A100-SXM4-80GB",
    "H100": "NVIDIA-H100-80GB-HBM3",
}

#: A ConfigMap holds at most 1 MiB; leave room for config.pbtxt and metadata.
MAX_EMBEDDED_MODEL_BYTES = 900 * 1024
_RUN_AS_USER = 1000  # the triton-server and locust users of the official images


@dataclass
class ManifestOptions:
    """What a cluster needs that a :class:`DeploymentSpec` does not say."""

    namespace: str = "default"
    image: str = TRITON_IMAGE
    fetch_image: str = FETCH_IMAGE
    locust_image: str = LOCUST_IMAGE
    storage_initializer_image: str = STORAGE_INITIALIZER_IMAGE
    #: Where the ONNX file is (see :func:`check_model_uri`): ``s3://``, ``gs://``, ``http(s)://``
    #: or ``pvc://CLAIM/PATH``, a file or a folder holding ``model.onnx``; ``None`` embeds small
    #: models in the ConfigMap.
    model_uri: str | None = None
    gpu_label: str = "nvidia.com/gpu.product"
    gpu_product_labels: dict[str, str] = field(default_factory=dict)
    default_memory_mb: int = 2048
    service_account: str | None = None
    image_pull_secrets: list[str] = field(default_factory=list)
    #: The labels on every object (managed-by and the study/trial keys' prefix).
    labels: LabelScheme = field(default_factory=LabelScheme)

    def gpu_label_value(self, gpu_type: str) -> str:
        return {**GPU_PRODUCT_LABELS, **self.gpu_product_labels}.get(gpu_type, gpu_type)


@dataclass(frozen=True)
class TritonModelSettings:
    """What Triton's model configuration says for one spec: the dynamic batcher (max batch size,
    max queue delay), the instance group (count, kind) and ONNX Runtime's intra-op threads.

    The one place these values are derived: the manifests' ``config.pbtxt`` and the local
    ``triton`` runtime (:mod:`stress._triton`) both read them from here.
    """

    max_batch_size: int
    max_queue_delay_us: int
    instance_count: int
    kind: str
    intra_op_threads: int


def triton_model_settings(spec: DeploymentSpec) -> TritonModelSettings:
    """The Triton model settings of ``spec`` (see :class:`TritonModelSettings`)."""
    return TritonModelSettings(
        max_batch_size=int(spec.batch_size),
        max_queue_delay_us=int(round(spec.max_queue_delay_ms * 1000)),
        instance_count=max(1, spec.instances_per_gpu) if spec.uses_gpu else 1,
        kind="KIND_GPU" if spec.uses_gpu else "KIND_CPU",
        intra_op_threads=max(1, int(round(spec.cpu_cores))),
    )


def triton_model_config(spec: DeploymentSpec) -> str:
    """The Triton model configuration (``config.pbtxt``) for ``spec``."""
    name = check_model_name(spec.model_name)  # no quote or newline can reach the file
    s = triton_model_settings(spec)
    return (
        f'name: "{name}"\n'
        'platform: "onnxruntime_onnx"\n'
        f"max_batch_size: {s.max_batch_size}\n"
        f"dynamic_batching {{\n  max_queue_delay_microseconds: {s.max_queue_delay_us}\n}}\n"
        f"instance_group [\n  {{\n    count: {s.instance_count}\n    kind: {s.kind}\n  }}\n]\n"
        "parameters {\n"
        '  key: "intra_op_thread_count"\n'
        f'  value: {{ string_value: "{s.intra_op_threads}" }}\n'
        "}\n"
    )


def _cpu_quantity(cores: float) -> str:
    return str(int(cores)) if float(cores).is_integer() else f"{int(round(cores * 1000))}m"


def resource_requirements(spec: DeploymentSpec, opts: ManifestOptions) -> dict[str, Any]:
    """Requests = limits (guaranteed QoS): the spec's cores and memory, one GPU if it uses one."""
    amounts = {
        "cpu": _cpu_quantity(spec.cpu_cores),
        "memory": f"{spec.memory_mb or opts.default_memory_mb}Mi",
    }
    if spec.uses_gpu:
        amounts["nvidia.com/gpu"] = "1"
    return {"requests": dict(amounts), "limits": dict(amounts)}


def container_security_context() -> dict[str, Any]:
    """Non-root, no privilege escalation, read-only root, no capabilities, default seccomp."""
    return {
        "runAsNonRoot": True,
        "runAsUser": _RUN_AS_USER,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def pod_security_context() -> dict[str, Any]:
    """Non-root user and group, default seccomp (every pod's)."""
    return {
        "runAsNonRoot": True,
        "runAsUser": _RUN_AS_USER,
        "runAsGroup": _RUN_AS_USER,
        "fsGroup": _RUN_AS_USER,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def object_meta(
    name: str, namespace: str, labels: Mapping[str, str], **extra: Any
) -> dict[str, Any]:
    """An object's ``metadata``."""
    return {"name": name, "namespace": namespace, "labels": dict(labels), **extra}


_URI_PATH = re.compile(r"^[A-Za-z0-9._~/@%+=:,&-]*$")
_CLAIM = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


def check_model_uri(uri: str) -> str:
    """``uri`` when it is a model location the pods can fetch (one of
    :data:`MODEL_URI_SCHEMES`, with a host or claim and no character a shell or YAML would
    read); else :class:`StressError` naming what is wrong."""
    parts = urlsplit(str(uri))
    scheme = parts.scheme.lower()
    if scheme not in MODEL_URI_SCHEMES:
        known = ", ".join(f"{s}://" for s in MODEL_URI_SCHEMES)
        raise StressError(f"model URI {uri!r}: scheme must be one of {known}")
    if not parts.netloc or not _URI_PATH.match(parts.path + parts.query):
        raise StressError(f"model URI {uri!r}: expected {scheme}://HOST/PATH with no spaces")
    if parts.username or parts.password:
        raise StressError(f"model URI of {parts.hostname}: no credentials in it (use a secret)")
    if (parts.query or parts.fragment) and scheme not in ("http", "https"):
        raise StressError(f"model URI {uri!r}: no query or fragment in a {scheme}:// URI")
    if scheme == "pvc":
        if not _CLAIM.match(parts.netloc):
            raise StressError(f"model URI {uri!r}: {parts.netloc!r} is not a claim name")
        if ".." in parts.path.split("/"):
            raise StressError(f"model URI {uri!r}: no '..' in the path")
    return str(uri)


def _pvc(uri: str) -> tuple[str, str]:
    """``pvc://claim/path/in/it`` -> ``("claim", "path/in/it")``."""
    parts = urlsplit(uri)
    return parts.netloc, parts.path.strip("/")


def needs_model_uri(spec: DeploymentSpec, opts: ManifestOptions) -> bool:
    """Whether the pod cannot get the model: no URI and the model too big (or absent) to
    embed in the ConfigMap (see :data:`MAX_EMBEDDED_MODEL_BYTES`)."""
    return opts.model_uri is None and not _embeddable(spec, opts)


def _embeddable(spec: DeploymentSpec, opts: ManifestOptions) -> bool:
    path = Path(spec.model_path)
    return (
        opts.model_uri is None
        and path.is_file()
        and path.stat().st_size <= MAX_EMBEDDED_MODEL_BYTES
    )


def model_config_map(
    name: str, spec: DeploymentSpec, opts: ManifestOptions, labels: Mapping[str, str]
) -> dict[str, Any]:
    """ConfigMap with ``config.pbtxt`` (and ``model.onnx`` when small enough to embed)."""
    doc: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": object_meta(name, opts.namespace, labels),
        "data": {"config.pbtxt": triton_model_config(spec)},
    }
    if _embeddable(spec, opts):
        raw = Path(spec.model_path).read_bytes()
        doc["binaryData"] = {"model.onnx": base64.b64encode(raw).decode("ascii")}
    return doc


def repository_size_limit(spec: DeploymentSpec) -> str:
    """The model repository emptyDir's ``sizeLimit``: the model file and a quarter more, plus
    64 MiB for ``config.pbtxt`` and the runtime's files (at least 128Mi)."""
    try:
        size = Path(spec.model_path).stat().st_size
    except OSError:
        return DEFAULT_REPOSITORY_LIMIT
    mib = -(-size * 5 // 4 // 2**20) + 64
    return f"{max(128, mib)}Mi"


def _get_model(spec: DeploymentSpec, opts: ManifestOptions, version_dir: str) -> tuple[str, str]:
    """The init script's step that puts ``model.onnx`` into ``version_dir``, and its image."""
    onnx_path = shell_quote(f"{version_dir}/model.onnx")
    uri = opts.model_uri
    if uri is None:
        if _embeddable(spec, opts):
            return f"cp /config/model.onnx {onnx_path}", opts.fetch_image
        return (
            'echo "the model is too big to embed in a ConfigMap: upload it and set the '
            'model_uri option (s3://, gs://, https:// or pvc://)" >&2; exit 1',
            opts.fetch_image,
        )
    scheme = urlsplit(check_model_uri(uri)).scheme.lower()
    if scheme in ("http", "https"):
        return f'curl -fsSL --retry 3 -o {onnx_path} "$MODEL_URI"', opts.fetch_image
    if scheme == "pvc":
        src = shell_quote(f"/mnt/model-source/{_pvc(uri)[1]}".rstrip("/"))
        return (
            f'src={src}; if [ -d "$src" ]; then src="$src/model.onnx"; fi; cp "$src" {onnx_path}',
            opts.fetch_image,
        )
    # s3:// and gs://: KServe's storage initializer downloads a file or a folder
    vdir = shell_quote(version_dir)
    return (
        f'{_STORAGE_INITIALIZER} "$MODEL_URI" {vdir}; if [ ! -f {onnx_path} ]; then '
        f"f=$(ls {vdir}/*.onnx 2>/dev/null | head -n 1); "
        '[ -n "$f" ] || { echo "no .onnx file at $MODEL_URI" >&2; exit 1; }; '
        f'mv "$f" {onnx_path}; fi',
        opts.storage_initializer_image,
    )


def _fetch_container(spec: DeploymentSpec, opts: ManifestOptions) -> dict[str, Any]:
    model_dir = f"/models/{check_model_name(spec.model_name)}"
    get_model, image = _get_model(spec, opts, f"{model_dir}/1")
    env: list[dict[str, Any]] = [{"name": "HOME", "value": "/tmp"}]
    if opts.model_uri is not None:
        env.append({"name": "MODEL_URI", "value": opts.model_uri})
    script = (
        f"set -e; mkdir -p {shell_quote(model_dir + '/1')}; "
        f"cp /config/config.pbtxt {shell_quote(model_dir + '/config.pbtxt')}; " + get_model
    )
    mounts = [
        {"name": "model-repository", "mountPath": "/models"},
        {"name": "model-config", "mountPath": "/config", "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    if opts.model_uri is not None and opts.model_uri.lower().startswith("pvc://"):
        mounts.append({"name": "model-source", "mountPath": "/mnt/model-source", "readOnly": True})
    fetch_mb = "512Mi" if image == opts.storage_initializer_image else "256Mi"
    return {
        "name": "fetch-model",
        "image": image,
        "command": ["sh", "-c", script],
        "env": env,
        "resources": {  # KServe's storage initializer (Python, cloud SDKs) needs more
            "requests": {"cpu": "250m", "memory": fetch_mb},
            "limits": {"cpu": "250m", "memory": fetch_mb},
        },
        "securityContext": container_security_context(),
        "volumeMounts": mounts,
    }


def _probe(path: str, period_s: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period_s,
        "timeoutSeconds": 2,
        "failureThreshold": failures,
    }


def _pod_spec(spec: DeploymentSpec, opts: ManifestOptions, config_map: str) -> dict[str, Any]:
    triton = {
        "name": "triton",
        "image": opts.image,
        "args": [
            "tritonserver",
            "--model-repository=/models",
            "--model-control-mode=none",
            f"--http-port={HTTP_PORT}",
            f"--grpc-port={GRPC_PORT}",
            f"--metrics-port={METRICS_PORT}",
        ],
        "ports": [
            {"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"},
            {"name": "grpc", "containerPort": GRPC_PORT, "protocol": "TCP"},
            {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"},
        ],
        "resources": resource_requirements(spec, opts),
        "securityContext": container_security_context(),
        "readinessProbe": _probe("/v2/health/ready", 2, 3),
        "livenessProbe": _probe("/v2/health/live", 10, 3),
        "startupProbe": _probe("/v2/health/live", 2, 150),
        "volumeMounts": [
            {"name": "model-repository", "mountPath": "/models", "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "dshm", "mountPath": "/dev/shm"},
        ],
    }
    pod: dict[str, Any] = {
        "securityContext": pod_security_context(),
        "automountServiceAccountToken": False,
        "initContainers": [_fetch_container(spec, opts)],
        "containers": [triton],
        "volumes": [
            {"name": "model-repository", "emptyDir": {"sizeLimit": repository_size_limit(spec)}},
            {"name": "model-config", "configMap": {"name": config_map}},
            {"name": "tmp", "emptyDir": {"sizeLimit": TMP_SIZE_LIMIT}},
            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "256Mi"}},
        ],
    }
    if opts.model_uri is not None and opts.model_uri.lower().startswith("pvc://"):
        claim = {"claimName": _pvc(opts.model_uri)[0], "readOnly": True}
        pod["volumes"].append({"name": "model-source", "persistentVolumeClaim": claim})
    if spec.uses_gpu:
        pod["nodeSelector"] = {opts.gpu_label: opts.gpu_label_value(str(spec.gpu_type))}
        pod["tolerations"] = [
            {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
        ]
    if opts.service_account:
        pod["serviceAccountName"] = opts.service_account
    if opts.image_pull_secrets:
        pod["imagePullSecrets"] = [{"name": s} for s in opts.image_pull_secrets]
    return pod


def render_trial_manifests(
    spec: DeploymentSpec,
    name: str,
    opts: ManifestOptions | None = None,
    extra_labels: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """ConfigMap, Deployment and Service of one trial named ``name`` (a DNS label)."""
    opts = opts or ManifestOptions()
    labels = {**opts.labels.for_spec(spec.labels), **(extra_labels or {})}
    selector = {"app.kubernetes.io/name": "triton", "app.kubernetes.io/instance": name}
    pod_labels = {**labels, **selector, COMPONENT_KEY: "server"}
    config_map = f"{name}-model"
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": object_meta(name, opts.namespace, {**labels, **selector}),
        "spec": {
            "replicas": int(spec.replicas),
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": _pod_spec(spec, opts, config_map),
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": object_meta(name, opts.namespace, {**labels, **selector}),
        "spec": {
            "type": "ClusterIP",
            "selector": selector,
            "ports": [
                {"name": "http", "port": HTTP_PORT, "targetPort": "http", "protocol": "TCP"},
                {"name": "grpc", "port": GRPC_PORT, "targetPort": "grpc", "protocol": "TCP"},
                {
                    "name": "metrics",
                    "port": METRICS_PORT,
                    "targetPort": "metrics",
                    "protocol": "TCP",
                },
            ],
        },
    }
    return [model_config_map(config_map, spec, opts, labels), deployment, service]


@dataclass(frozen=True)
class LoadJobSpec:
    """One in-cluster load run: what the Locust master/worker Jobs are given."""

    target_url: str
    duration_s: float
    warmup_s: float
    workers: int = 1
    #: filename -> source text, mounted at /locust in every Locust pod (the locustfile and
    #: any module it imports).
    files: Mapping[str, str] = field(default_factory=dict)
    locustfile: str = "locustfile.py"
    #: Environment of every Locust container (the load configuration).
    env: Mapping[str, str] = field(default_factory=dict)


def _load_job(
    name: str,
    role: str,
    sel: Mapping[str, str],
    args: list[str],
    count: int,
    load: LoadJobSpec,
    opts: ManifestOptions,
    labels: Mapping[str, str],
) -> dict[str, Any]:
    """The Locust ``role`` (master/worker) Job of run ``name``: ``count`` pods running ``args``."""
    run_time_s = _run_time_s(load)
    container: dict[str, Any] = {
        "name": "locust",
        "image": opts.locust_image,
        "args": args,
        "env": [{"name": k, "value": v} for k, v in load.env.items()],
        "resources": {
            "requests": {"cpu": "1", "memory": "512Mi"},
            "limits": {"cpu": "1", "memory": "512Mi"},
        },
        "securityContext": container_security_context(),
        "volumeMounts": [
            {"name": "locustfile", "mountPath": "/locust", "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    if role == "master":
        container["ports"] = [
            {"name": "master", "containerPort": LOCUST_MASTER_PORT, "protocol": "TCP"}
        ]
    job_spec: dict[str, Any] = {
        "parallelism": count,
        "completions": count,
        "backoffLimit": 0,
        "activeDeadlineSeconds": run_time_s + 300,
        "ttlSecondsAfterFinished": 3600,
        "template": {
            "metadata": {"labels": {**labels, **sel}},
            "spec": {
                "restartPolicy": "Never",
                "automountServiceAccountToken": False,
                "securityContext": pod_security_context(),
                "containers": [container],
                "volumes": [
                    {"name": "locustfile", "configMap": {"name": f"{name}-locust"}},
                    {"name": "tmp", "emptyDir": {"sizeLimit": TMP_SIZE_LIMIT}},
                ],
            },
        },
    }
    if role == "worker":
        job_spec["completionMode"] = "Indexed"
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": object_meta(f"{name}-{role}", opts.namespace, {**labels, **sel}),
        "spec": job_spec,
    }


def _run_time_s(load: LoadJobSpec) -> int:
    """How long the master runs: warm-up, the measured step and 30 s to spare."""
    return int(load.warmup_s + load.duration_s + 0.999) + 30


def render_load_manifests(
    spec: DeploymentSpec,
    name: str,
    load: LoadJobSpec,
    opts: ManifestOptions | None = None,
    extra_labels: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """ConfigMap (locustfile), master Service, and the master and worker Jobs of one run.

    The master starts one user per worker; the worker Job is ``Indexed`` so each worker
    knows its index (``JOB_COMPLETION_INDEX``). Workers reach the master through the
    ``{name}-master`` Service.
    """
    opts = opts or ManifestOptions()
    labels = {**opts.labels.for_spec(spec.labels), **(extra_labels or {}), COMPONENT_KEY: "load"}
    master_sel = {
        "app.kubernetes.io/name": "locust",
        "app.kubernetes.io/instance": f"{name}-master",
    }
    worker_sel = {
        "app.kubernetes.io/name": "locust",
        "app.kubernetes.io/instance": f"{name}-worker",
    }
    run_time_s = _run_time_s(load)
    common = ["-f", f"/locust/{load.locustfile}", "--host", load.target_url]
    workers = int(load.workers)

    master_args = [
        *common,
        "--master",
        "--headless",
        f"--expect-workers={workers}",
        f"--users={workers}",
        f"--spawn-rate={workers}",
        f"--run-time={run_time_s}s",
        "--only-summary",
    ]
    worker_args = [*common, "--worker", f"--master-host={name}-master"]
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": object_meta(f"{name}-locust", opts.namespace, labels),
            "data": dict(load.files),
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": object_meta(f"{name}-master", opts.namespace, labels),
            "spec": {
                "type": "ClusterIP",
                "selector": master_sel,
                "ports": [
                    {
                        "name": "master",
                        "port": LOCUST_MASTER_PORT,
                        "targetPort": "master",
                        "protocol": "TCP",
                    }
                ],
            },
        },
        _load_job(name, "master", master_sel, master_args, 1, load, opts, labels),
        _load_job(name, "worker", worker_sel, worker_args, workers, load, opts, labels),
    ]


# --------------------------------------------------------------------------- validation


def _definitions() -> dict[str, Any]:
    import kubernetes_validate.utils as kvu

    version = [
        v for v in kvu.all_versions() if kvu.major_minor(v) <= kvu.major_minor(KUBERNETES_VERSION)
    ][-1]
    return kvu.schema_contents(
        f"kubernetes-json-schema/v{version}-local-strict/_definitions.json", KUBERNETES_VERSION
    )


def _validate_inference_service(doc: Mapping[str, Any]) -> None:
    """KServe's CRD has no schema in kubernetes-validate: validate against its own
    openAPIV3Schema, vendored (:mod:`stress._kserve`), strictly (unknown fields are errors), with
    ``metadata`` checked as a core ObjectMeta of the strict Kubernetes schemas."""
    import jsonschema
    from referencing import Registry, Resource

    from ._kserve import load_schema

    registry = Resource.from_contents(_definitions()) @ Registry()
    name = doc.get("metadata", {}).get("name", "?")
    try:
        jsonschema.Draft202012Validator(load_schema(), registry=registry).validate(dict(doc))
    except jsonschema.ValidationError as exc:
        path = ".".join(str(p) for p in exc.path)
        raise StressError(f"invalid InferenceService {name}: {path}: {exc.message}") from None
    model = doc["spec"]["predictor"].get("model") or {}
    if not model.get("storageUri"):
        raise StressError(f"invalid InferenceService {name}: spec.predictor.model.storageUri unset")


def validate_manifests(
    docs: Iterable[Mapping[str, Any]], version: str = KUBERNETES_VERSION
) -> None:
    """Validate every document against the Kubernetes ``version`` schemas, strictly (unknown
    fields are errors), offline; KServe InferenceServices against their CRD's own schema (see
    :func:`_validate_inference_service`). Raises :class:`StressError` naming the document."""
    import kubernetes_validate

    for doc in docs:
        if doc.get("kind") == "InferenceService":
            _validate_inference_service(doc)
            continue
        kind, name = doc.get("kind", "?"), doc.get("metadata", {}).get("name", "?")
        try:
            kubernetes_validate.validate(dict(doc), version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            raise StressError(f"invalid {kind} {name}: {path}: {exc.message}") from None
        except kubernetes_validate.SchemaNotFoundError:
            raise StressError(f"no schema for {kind} ({doc.get('apiVersion')})") from None
