"""What autoconf hands to ``stress``: the one mapping of a :class:`Config` to a
:class:`stress.DeploymentSpec`, its defaults, and the labels autoconf puts on what it deploys."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import stress

from ._types import Config

#: Queue delay of the dynamic batcher when the space does not search it.
DEFAULT_MAX_QUEUE_DELAY_MS = 2.0
#: ``app.kubernetes.io/managed-by=autoconf`` and ``autoconf.io/study``, ``autoconf.io/trial``...
LABELS = stress.LabelScheme(prefix="autoconf.io", managed_by="autoconf")


def queue_delay_ms(config: Config, default: float = DEFAULT_MAX_QUEUE_DELAY_MS) -> float:
    """The config's batcher queue delay, or ``default`` where the space has no such knob."""
    return float(config.max_queue_delay_ms if config.max_queue_delay_ms is not None else default)


#: Headroom over the model's estimated memory (allocator slack, fragmentation, request buffers).
MEMORY_HEADROOM = 1.25
#: What the serving process needs besides the model (Triton or the project's server, ORT).
RUNTIME_MEMORY_MB = 768


def _profiled_batch(profile: Any) -> int:
    """The batch the profile's activations were counted at (its batch-like dim, else 1)."""
    dims = getattr(profile, "dims", None) or {}
    for name, value in dims.items():
        if "batch" in str(name).lower() or str(name).lower() in ("n", "b"):
            return max(1, int(value))
    return 1


def model_memory_mb(profile: Any, config: Config) -> int | None:
    """Memory (MiB) a replica of ``config`` requests for the model behind ``profile`` (kops'
    ``param_bytes`` and ``activation_bytes``): per model instance its weights and its activations
    at the batch size, plus one more copy of the weights (the file read while the session is
    built), times :data:`MEMORY_HEADROOM`, plus :data:`RUNTIME_MEMORY_MB`; rounded up to 64 MiB.
    None when the profile does not say (then the deployer's default holds)."""
    params = getattr(profile, "param_bytes", None)
    acts = getattr(profile, "activation_bytes", None)
    if not isinstance(params, (int, float)) or not isinstance(acts, (int, float)):
        return None
    gpu = config.gpu_type not in (None, "", "cpu")
    instances = int(config.instances_per_gpu or 1) if gpu else 1
    per_sample = float(acts) / _profiled_batch(profile)
    need = float(params) * (instances + 1) + per_sample * int(config.batch_size) * instances
    mib = need * MEMORY_HEADROOM / 2**20 + RUNTIME_MEMORY_MB
    return int(math.ceil(mib / 64) * 64)


def deployment_spec(
    config: Config,
    model_path: str | Path,
    *,
    model_name: str | None = None,
    labels: Mapping[str, str] | None = None,
    memory_mb: int | None = None,
) -> stress.DeploymentSpec:
    """``config`` of the model at ``model_path`` as a deployment. ``model_path`` is the file
    served: for a precision other than FP32, the variant's (a plan's ``model.variant_file``, a
    live backend's built variant), with ``model_name`` the original model's, so that clients'
    URLs do not change with the precision. ``model_name`` (default: the file's stem) is made safe by :func:`stress.model_name`: it reaches shells and configs;
    ``memory_mb`` (see :func:`model_memory_mb`) is each replica's memory request and limit."""
    return stress.DeploymentSpec(
        model_path=Path(model_path),
        model_name=stress.model_name(model_name or Path(model_path).stem),
        batch_size=int(config.batch_size),
        replicas=int(config.replicas),
        cpu_cores=float(config.cpu_cores),
        max_queue_delay_ms=queue_delay_ms(config),
        instances_per_gpu=int(config.instances_per_gpu or 1),
        gpu_type=config.gpu_type,
        memory_mb=memory_mb,
        labels=dict(labels or {}),
    )
