"""stress: deploy a serving config, drive real load at it, measure, and tear it down."""

import importlib
from typing import Any

from ._api import (
    CapacityResult,
    Deployer,
    DeployError,
    Deployment,
    DeploymentSpec,
    LoadResult,
    StressError,
)
from ._capacity import capacity_search, step_passes
from ._manifests import render_plan_manifests, validate_manifests

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
    "capacity_search",
    "get_deployer",
    "render_plan_manifests",
    "validate_manifests",
    "step_passes",
    "CapacityResult",
    "DeployError",
    "Deployer",
    "Deployment",
    "DeploymentSpec",
    "LoadResult",
    "StressError",
]
