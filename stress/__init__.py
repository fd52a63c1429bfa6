"""stress: deploy a serving config, drive real load at it, measure, and tear it down."""

from ._api import (
    CapacityResult,
    Deployer,
    DeployError,
    Deployment,
    DeploymentSpec,
    LoadResult,
    StressError,
)

__all__ = [
    "CapacityResult",
    "DeployError",
    "Deployer",
    "Deployment",
    "DeploymentSpec",
    "LoadResult",
    "StressError",
]
