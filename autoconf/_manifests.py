"""The final plan's Kubernetes manifests: either the serving Deployment (with its ConfigMap and
Service) and a HorizontalPodAutoscaler, or, with ``kserve``, a KServe ``InferenceService`` (and
the ConfigMap of its Triton configuration) *instead*: ``kubectl apply -f manifests/`` deploys the
model once.

The pod is the one ``stress`` deploys for a trial (:func:`stress.render_trial_manifests`), so
what was measured is what is shipped; the HPA and the InferenceService reuse its resources and
security context. Every object carries autoconf's labels (:data:`autoconf._deployment.LABELS`).
What the config does not say (where the model is stored, the namespace, the Triton image) is a
:class:`ManifestSettings`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import stress

from ._deployment import LABELS

#: The port KServe's ``kserve-tritonserver`` runtime serves HTTP on (gRPC on 9000).
KSERVE_HTTP_PORT = 8080
KSERVE_GRPC_PORT = 9000


@dataclass(frozen=True)
class ManifestSettings:
    """What a plan's manifests say beyond its config (``--model-uri``, ``--namespace``,
    ``--image``, ``--kserve``); checked by :func:`autoconf._input.manifest_settings`."""

    #: where the ONNX file is (``s3://``, ``gs://``, ``https://``, ``pvc://CLAIM/PATH``)
    model_uri: str | None = None
    namespace: str = "default"
    #: the Triton image and tag (default :data:`stress.TRITON_IMAGE`)
    image: str | None = None
    #: a KServe InferenceService instead of the Deployment, Service and HPA
    kserve: bool = False

    def options(self) -> stress.ManifestOptions:
        opts = stress.ManifestOptions(labels=LABELS, namespace=self.namespace)
        return dataclasses.replace(opts, image=self.image or opts.image, model_uri=self.model_uri)

    def missing(self, spec: stress.DeploymentSpec) -> str | None:
        """Why manifests with these settings could not start ``spec``'s model, or None."""
        if self.kserve and self.model_uri is None:
            return "a KServe InferenceService loads its model from storage"
        if stress.needs_model_uri(spec, self.options()):
            mib = spec.model_path.stat().st_size / 2**20 if spec.model_path.is_file() else 0.0
            limit = stress.MAX_EMBEDDED_MODEL_BYTES // 1024
            return f"the model ({mib:,.1f} MiB) is too big to embed in a ConfigMap ({limit} KiB)"
        return None


def render_plan_manifests(
    spec: stress.DeploymentSpec,
    *,
    image: str | None = None,
    namespace: str = "default",
    hpa_max_replicas: int | None = None,
    hpa_cpu_utilization_pct: int = 70,
    kserve: bool = False,
    name: str | None = None,
    options: stress.ManifestOptions | None = None,
    target_rps: float | None = None,
    slo_p99_ms: float | None = None,
    model_uri: str | None = None,
) -> list[dict[str, Any]]:
    """Deployable manifests for a final plan: ConfigMap, Deployment, Service, HPA
    (autoscaling/v2, from ``spec.replicas`` up to ``hpa_max_replicas``, default twice that);
    with ``kserve`` the ConfigMap (``config.pbtxt`` only) and a KServe ``InferenceService``
    serving the same model with Triton instead.

    The HPA scales on CPU utilization (the one metric every cluster has); scaling on Triton's
    queue time needs a custom-metrics adapter and is left to the operator. ``target_rps`` and
    ``slo_p99_ms``, when given, are recorded as annotations of the served object.
    """
    opts = options or stress.ManifestOptions(labels=LABELS)
    opts = dataclasses.replace(
        opts,
        image=image or opts.image,
        namespace=namespace,
        model_uri=model_uri if model_uri is not None else opts.model_uri,
    )
    name = stress.dns_name(name or f"{spec.model_name}-serving")
    notes = {LABELS.key("target-rps"): target_rps, LABELS.key("slo-p99-ms"): slo_p99_ms}
    annotations = {k: f"{v:g}" for k, v in notes.items() if v is not None}
    min_r = max(1, int(spec.replicas))
    max_r = max(min_r, int(hpa_max_replicas) if hpa_max_replicas else 2 * min_r)
    labels = opts.labels.for_spec(spec.labels)
    if kserve:
        if opts.model_uri is None:
            raise stress.StressError("a KServe InferenceService needs the model's storage URI")
        config_map = stress.render_trial_manifests(spec, name, opts)[0]  # no model: a URI
        isvc = _inference_service(spec, name, opts, labels, min_r, max_r, config_map)
        if annotations:
            isvc["metadata"]["annotations"] = annotations
        return [config_map, isvc]
    docs = stress.render_trial_manifests(spec, name, opts)
    if annotations:
        docs[1]["metadata"]["annotations"] = annotations
    docs.append(_autoscaler(name, namespace, labels, min_r, max_r, hpa_cpu_utilization_pct))
    return docs


def _autoscaler(
    name: str, namespace: str, labels: dict[str, str], min_r: int, max_r: int, cpu_pct: int
) -> dict[str, Any]:
    """An autoscaling/v2 HPA of Deployment ``name`` on CPU utilization."""
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": stress.object_meta(name, namespace, labels),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": min_r,
            "maxReplicas": max_r,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": int(cpu_pct)},
                    },
                }
            ],
        },
    }


def _kserve_command(model_name: str, served_file: str) -> list[str]:
    """Triton under KServe: KServe's storage initializer puts the model under /mnt/models; this
    lays out a Triton repository with the plan's ``config.pbtxt`` (the batcher, the instance
    group) from the ConfigMap and the downloaded ``.onnx`` (``served_file`` by name where the
    storage holds it, e.g. a variant stored beside the FP32 model; else the first ``.onnx``),
    then runs Triton on KServe's ports."""
    repo = f"/tmp/repository/{model_name}"
    name = stress.shell_quote(served_file)
    script = (
        f"set -e; mkdir -p {repo}/1; cp /config/config.pbtxt {repo}/config.pbtxt; "
        f"f=$(find /mnt/models -name {name} | head -n 1); "
        "[ -n \"$f\" ] || f=$(find /mnt/models -name '*.onnx' | head -n 1); "
        '[ -n "$f" ] || { echo "no .onnx file under the storage URI" >&2; exit 1; }; '
        f'ln -s "$f" {repo}/1/model.onnx; '
        "exec tritonserver --model-repository=/tmp/repository --model-control-mode=none "
        f"--http-port={KSERVE_HTTP_PORT} --grpc-port={KSERVE_GRPC_PORT} "
        "--allow-http=true --allow-grpc=true"
    )
    return ["sh", "-c", script]


def _inference_service(
    spec: stress.DeploymentSpec,
    name: str,
    opts: stress.ManifestOptions,
    labels: dict[str, str],
    min_r: int,
    max_r: int,
    config_map: dict[str, Any],
) -> dict[str, Any]:
    """The InferenceService: KServe's Triton runtime on the storage URI, the trial pod's
    resources and security, the GPU node selector, and ``config.pbtxt`` from ``config_map``."""
    tag = opts.image.rsplit(":", 1)[-1] if ":" in opts.image.rsplit("/", 1)[-1] else "latest"
    model_name = stress.check_model_name(spec.model_name)
    predictor: dict[str, Any] = {
        "minReplicas": min_r,
        "maxReplicas": max_r,
        "securityContext": stress.pod_security_context(),
        "automountServiceAccountToken": False,
        "model": {
            "modelFormat": {"name": "onnx"},
            "runtime": "kserve-tritonserver",
            "runtimeVersion": tag,
            "protocolVersion": "v2",
            "storageUri": opts.model_uri,
            "command": _kserve_command(model_name, spec.model_path.name),
            "resources": stress.resource_requirements(spec, opts),
            "securityContext": stress.container_security_context(),
            "volumeMounts": [
                {"name": "triton-config", "mountPath": "/config", "readOnly": True},
                {"name": "tmp", "mountPath": "/tmp"},
            ],
        },
        "volumes": [
            {"name": "triton-config", "configMap": {"name": config_map["metadata"]["name"]}},
            {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
        ],
    }
    if spec.uses_gpu:
        predictor["nodeSelector"] = {opts.gpu_label: opts.gpu_label_value(str(spec.gpu_type))}
        predictor["tolerations"] = [
            {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
        ]
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": stress.object_meta(name, opts.namespace, labels),
        "spec": {"predictor": predictor},
    }
