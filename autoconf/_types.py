"""Plain data that flows through a search: a config, a load, a measurement, a model's table."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from ._objective import Objective
    from ._space import SearchSpace


#: The model variants a space may search: the exported FP32 model, an FP16 conversion, INT8.
PRECISIONS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class Config:
    """One point of a search space: how a model is deployed.

    ``gpu_type`` is a catalog name (``"cpu"`` for CPU-only serving). The optional knobs are
    ``None`` where a space does not search them; ``gpu_mem_gb``/``gpu_share_pct`` exist for
    spaces with fractional GPUs (the Falcon tables). ``precision`` names the model variant
    served (one of :data:`PRECISIONS`); ``None`` is the model as exported, FP32.
    """

    batch_size: int
    gpu_type: str
    replicas: int = 1
    cpu_cores: float = 1.0
    instances_per_gpu: int | None = None
    max_queue_delay_ms: float | None = None
    gpu_mem_gb: float | None = None
    gpu_share_pct: int | None = None
    precision: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The set fields only, in declaration order (what plans and trial params hold)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Config:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - names
        if unknown:
            raise ValueError(f"unknown config field(s): {', '.join(sorted(unknown))}")
        return cls(**values)

    def key(self) -> str:
        """A stable, readable identity, e.g. ``batch_size=8,gpu_type=T4,replicas=2,cpu_cores=2``."""
        return ",".join(f"{k}={_fmt(v)}" for k, v in self.to_dict().items())


def _fmt(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@dataclass(frozen=True)
class Load:
    """What a backend is asked to measure.

    With ``target_rps`` the config is driven at that arrival rate; without it the backend finds
    the highest rate whose p99 meets ``slo_p99_ms`` (the capacity).
    """

    slo_p99_ms: float | None = None
    target_rps: float | None = None
    duration_s: float = 10.0


@dataclass
class Measurement:
    """What one evaluation of one config observed.

    ``ok`` is False when the deployment failed (OOM, crash, timeout): such a measurement is
    infeasible, never a score. ``rps_per_cost`` is throughput per dollar-hour unless a table
    gives it pre-normalised (the Falcon tables' ``norm.(rps/budget)``). ``throughput_rps`` is
    what was served, ``offered_rps`` what the generator offered (the objective needs both).

    Trust (live backends, :mod:`stress._stability`): ``stable`` is ``None`` where unknown (tables,
    the simulator, studies stored before it existed: taken as exact), else whether the figures
    can be trusted; for a capacity search it is the search's verdict. ``throughput_spread`` and
    ``latency_spread`` (max/min - 1 over the last windows), ``late_send_share`` and
    ``generator_cpu_headroom`` (a share of a core) are the measured step's; ``unstable_reasons``
    say why it is not stable, one line each. ``attempts`` counts fresh deployments measured
    (an unstable measurement is repeated, see :class:`autoconf.backends.LiveBackend`).
    """

    ok: bool
    cost_per_hour: float
    throughput_rps: float | None = None
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    error_rate: float = 0.0
    capacity_rps: float | None = None
    wall_s: float = 0.0
    error: str | None = None
    normalized_rps_per_cost: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    #: The arrival rate the load generator actually offered (requests scheduled / window);
    #: ``None`` where unknown (tables, older measurements).
    offered_rps: float | None = None
    stable: bool | None = None
    throughput_spread: float | None = None
    latency_spread: float | None = None
    late_send_share: float | None = None
    generator_cpu_headroom: float | None = None
    unstable_reasons: list[str] = field(default_factory=list)
    attempts: int = 1

    @property
    def rps_per_cost(self) -> float | None:
        if self.normalized_rps_per_cost is not None:
            return self.normalized_rps_per_cost
        rps = self.capacity_rps if self.capacity_rps is not None else self.throughput_rps
        if rps is None or not self.cost_per_hour:
            return None
        return rps / self.cost_per_hour

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        return {k: v for k, v in out.items() if not (isinstance(v, float) and math.isnan(v))}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Measurement:
        """A stored measurement; fields it lacks (older studies) take their defaults."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})

    @property
    def trusted(self) -> bool:
        """Not known to be unstable (``stable`` True, or unknown: tables and the simulator)."""
        return self.stable is not False

    @classmethod
    def failed(cls, error: str, cost_per_hour: float, wall_s: float = 0.0) -> Measurement:
        return cls(
            ok=False, cost_per_hour=cost_per_hour, error=error, wall_s=wall_s, error_rate=1.0
        )


@dataclass
class ModelTable:
    """Every measured config of one model: a benchmark's ground truth or a knowledge-base slice.

    ``features`` is the model's kops feature vector, ``None`` for tables without a model file
    (the Falcon tables).
    """

    name: str
    space: SearchSpace
    objective: Objective
    results: dict[Config, Measurement]
    features: np.ndarray | None = None
