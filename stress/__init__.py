"""stress: deploy a serving config, drive real load at it, measure, and tear it down."""

import importlib
from typing import Any

from ._api import (
    CapacityResult,
    Deployer,
    Deployment,
    DeploymentSpec,
    LoadResult,
)
from ._capacity import capacity_search, step_passes, upper_bound
from ._errors import DeployError, StressError
from ._labels import LabelScheme
from ._manifests import (
    MAX_EMBEDDED_MODEL_BYTES,
    MODEL_URI_SCHEMES,
    TRITON_IMAGE,
    ManifestOptions,
    check_model_uri,
    container_security_context,
    needs_model_uri,
    object_meta,
    pod_security_context,
    render_load_manifests,
    render_trial_manifests,
    resource_requirements,
    triton_model_config,
    validate_manifests,
)
from ._names import check_model_name, dns_name, label_value, model_name, shell_quote

#: name -> "module:Class" of each deployer, imported on first use (the Kubernetes client is heavy).
DEPLOYERS: dict[str, str] = {
    "local": "stress._local:LocalDeployer",
    "kubernetes": "stress._kubernetes:KubernetesDeployer",
}


def get_deployer(name: str, **options: Any) -> Deployer:
    """Construct the deployer registered as ``name`` with its ``options``."""
    try:
        target = DEPLOYERS[name]
    except KeyError:
        raise StressError(f"unknown deployer {name!r} (known: {', '.join(DEPLOYERS)})") from None
    module, cls = target.split(":")
    try:
        factory = getattr(importlib.import_module(module), cls)
    except (ImportError, AttributeError) as exc:
        raise StressError(f"deployer {name!r} is not available: {exc}") from None
    return factory(**options)


__all__ = [
    "DEPLOYERS",
    "MAX_EMBEDDED_MODEL_BYTES",
    "MODEL_URI_SCHEMES",
    "TRITON_IMAGE",
    "capacity_search",
    "check_model_name",
    "check_model_uri",
    "container_security_context",
    "dns_name",
    "get_deployer",
    "label_value",
    "model_name",
    "needs_model_uri",
    "object_meta",
    "pod_security_context",
    "render_load_manifests",
    "render_trial_manifests",
    "resource_requirements",
    "shell_quote",
    "step_passes",
    "triton_model_config",
    "upper_bound",
    "validate_manifests",
    "CapacityResult",
    "DeployError",
    "Deployer",
    "Deployment",
    "DeploymentSpec",
    "LabelScheme",
    "LoadResult",
    "ManifestOptions",
    "StressError",
]
