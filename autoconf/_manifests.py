"""The final plan's Kubernetes manifests: the serving Deployment (with its ConfigMap and
Service), a HorizontalPodAutoscaler and, on request, a KServe ``InferenceService``.

The pod is the one ``stress`` deploys for a trial (:func:`stress.render_trial_manifests`), so
what was measured is what is shipped; the HPA and the InferenceService reuse its resources and
security context. Every object carries autoconf's labels (:data:`autoconf._deployment.LABELS`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import stress

from ._deployment import LABELS


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
) -> list[dict[str, Any]]:
    """Deployable manifests for a final plan: ConfigMap, Deployment, Service, HPA
    (autoscaling/v2, from ``spec.replicas`` up to ``hpa_max_replicas``, default twice that),
    and with ``kserve`` a KServe ``InferenceService`` serving the same model with Triton.

    The HPA scales on CPU utilization (the one metric every cluster has); scaling on Triton's
    queue time needs a custom-metrics adapter and is left to the operator. ``target_rps`` and
    ``slo_p99_ms``, when given, are recorded as annotations of the Deployment.
    """
    opts = options or stress.ManifestOptions(labels=LABELS)
    opts = dataclasses.replace(opts, image=image or opts.image, namespace=namespace)
    name = stress.dns_name(name or f"{spec.model_name}-serving")
    docs = stress.render_trial_manifests(spec, name, opts)
    notes = {LABELS.key("target-rps"): target_rps, LABELS.key("slo-p99-ms"): slo_p99_ms}
    annotations = {k: f"{v:g}" for k, v in notes.items() if v is not None}
    if annotations:
        docs[1]["metadata"]["annotations"] = annotations
    min_r = max(1, int(spec.replicas))
    max_r = max(min_r, int(hpa_max_replicas) if hpa_max_replicas else 2 * min_r)
    labels = opts.labels.for_spec(spec.labels)
    docs.append(_autoscaler(name, namespace, labels, min_r, max_r, hpa_cpu_utilization_pct))
    if kserve:
        docs.append(_inference_service(spec, name, opts, labels, min_r, max_r))
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


def _inference_service(
    spec: stress.DeploymentSpec,
    name: str,
    opts: stress.ManifestOptions,
    labels: dict[str, str],
    min_r: int,
    max_r: int,
) -> dict[str, Any]:
    tag = opts.image.rsplit(":", 1)[-1] if ":" in opts.image else "latest"
    model_name = stress.check_model_name(spec.model_name)
    predictor: dict[str, Any] = {
        "minReplicas": min_r,
        "maxReplicas": max_r,
        "model": {
            "modelFormat": {"name": "onnx"},
            "runtime": "kserve-tritonserver",
            "runtimeVersion": tag,
            "storageUri": opts.model_uri or f"pvc://models/{model_name}",
            "resources": stress.resource_requirements(spec, opts),
            "securityContext": stress.container_security_context(),
        },
    }
    if spec.uses_gpu:
        predictor["nodeSelector"] = {opts.gpu_label: opts.gpu_label_value(str(spec.gpu_type))}
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": stress.object_meta(f"{name}-kserve", opts.namespace, labels),
        "spec": {"predictor": predictor},
    }
