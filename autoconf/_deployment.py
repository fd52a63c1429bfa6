"""What autoconf hands to ``stress``: the one mapping of a :class:`Config` to a
:class:`stress.DeploymentSpec`, its defaults, and the labels autoconf puts on what it deploys."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import stress

from ._types import Config

#: Queue delay of the dynamic batcher when the space does not search it.
DEFAULT_MAX_QUEUE_DELAY_MS = 2.0
#: ``app.kubernetes.io/managed-by=autoconf`` and ``autoconf.io/study``, ``autoconf.io/trial``...
LABELS = stress.LabelScheme(prefix="autoconf.io", managed_by="autoconf")


def queue_delay_ms(config: Config, default: float = DEFAULT_MAX_QUEUE_DELAY_MS) -> float:
    """The config's batcher queue delay, or ``default`` where the space has no such knob."""
    return float(config.max_queue_delay_ms if config.max_queue_delay_ms is not None else default)


def deployment_spec(
    config: Config,
    model_path: str | Path,
    *,
    model_name: str | None = None,
    labels: Mapping[str, str] | None = None,
) -> stress.DeploymentSpec:
    """``config`` of the model at ``model_path`` as a deployment. ``model_name`` (default: the
    file's stem) is made safe by :func:`stress.model_name`: it reaches shells and configs."""
    return stress.DeploymentSpec(
        model_path=Path(model_path),
        model_name=stress.model_name(model_name or Path(model_path).stem),
        batch_size=int(config.batch_size),
        replicas=int(config.replicas),
        cpu_cores=float(config.cpu_cores),
        max_queue_delay_ms=queue_delay_ms(config),
        instances_per_gpu=int(config.instances_per_gpu or 1),
        gpu_type=config.gpu_type,
        labels=dict(labels or {}),
    )
