"""What ``stress`` offers: deploy a spec, drive load at it, measure, tear it down.

``stress`` knows nothing of searches: it takes a :class:`DeploymentSpec` and returns
:class:`LoadResult`/:class:`CapacityResult`. A :class:`Deployer` (local processes, Kubernetes)
makes a :class:`Deployment`; every deployment is a context manager whose exit tears down
everything it created, on success, error and Ctrl-C alike.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ._errors import DeployError, StressError  # noqa: F401 (re-exported, as before)
from ._names import check_model_name


@dataclass(frozen=True)
class DeploymentSpec:
    """One candidate deployment of one model.

    ``gpu_type`` ``None`` or ``"cpu"`` means CPU-only. ``labels`` (study, trial) go on every
    object a deployment creates, so leftovers can be found and removed. ``model_name`` must
    be a safe name (:func:`stress.model_name` makes one from a file name): it reaches a shell
    script, a Triton configuration and object names.
    """

    model_path: Path
    model_name: str = "model"
    batch_size: int = 1
    replicas: int = 1
    cpu_cores: float = 1.0
    max_queue_delay_ms: float = 2.0
    instances_per_gpu: int = 1
    gpu_type: str | None = None
    memory_mb: int | None = None
    labels: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_model_name(self.model_name)

    @property
    def uses_gpu(self) -> bool:
        return self.gpu_type not in (None, "cpu")


@dataclass
class LoadResult:
    """One open-loop measurement at a fixed Poisson arrival rate.

    Latencies are exact (not Locust's rounded percentiles) and timed from each request's
    *scheduled* send time, so queueing in the generator counts (no coordinated omission).

    ``stable`` says whether the figures can be trusted (:mod:`stress._stability`): the last
    windows agreed (``throughput_spread``/``latency_spread``, max/min - 1 over the last 3), the
    step ran to its end, at most 1 % of requests left late (``late_send_share``), the generator
    had CPU to spare (``generator_cpu_headroom``, a share of a core) and nothing else took the
    measured cores (``interference``); ``unstable_reasons`` says what failed, one line each.
    ``windows`` are the per-window figures (``WindowStats.to_dict``).
    """

    target_rps: float
    duration_s: float
    sent: int
    completed: int
    errors: int
    throughput_rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    error_rate: float
    inflight_cap_hits: int = 0
    generator_saturated: bool = False
    generator_processes: int = 1
    aborted_early: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    stable: bool = True
    throughput_spread: float = 0.0
    latency_spread: float = 0.0
    windows: list[dict[str, Any]] = field(default_factory=list)
    late_send_share: float = 0.0
    generator_cpu_headroom: float | None = None
    unstable_reasons: list[str] = field(default_factory=list)
    interference: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data (non-finite numbers as ``None``), ``extra`` included."""
        from dataclasses import asdict

        return _json_safe(asdict(self))


@dataclass
class CapacityResult:
    """The highest arrival rate whose p99 met the SLO, and the steps that found it.

    ``stable`` is false, with ``unstable_reasons``, when the answer rests on a step that stayed
    unstable or disturbed after re-measuring, or when the search could not bracket it.
    """

    capacity_rps: float
    slo_p99_ms: float
    steps: list[LoadResult]
    at_capacity: LoadResult | None
    stable: bool = True
    unstable_reasons: list[str] = field(default_factory=list)
    remeasured: int = 0
    #: The lowest failing step above the answer failed only by the load generator's lateness:
    #: the server may serve more than this machine's generator can show (a lower bound).
    generator_limited: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data: the figures, the verdict and every step's ``LoadResult.to_dict``."""
        return _json_safe(
            {
                "capacity_rps": self.capacity_rps,
                "slo_p99_ms": self.slo_p99_ms,
                "stable": self.stable,
                "unstable_reasons": list(self.unstable_reasons),
                "remeasured": self.remeasured,
                "generator_limited": self.generator_limited,
                "at_capacity": self.at_capacity.to_dict() if self.at_capacity else None,
                "steps": [s.to_dict() for s in self.steps],
            }
        )


def _json_safe(obj: Any) -> Any:
    """NaN/inf -> None, tuples -> lists, so the data is valid JSON."""
    if isinstance(obj, float):
        return obj if obj == obj and obj not in (float("inf"), float("-inf")) else None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


class Deployment(abc.ABC):
    """A live deployment. Tear-down is idempotent and runs on context exit."""

    def __init__(self, spec: DeploymentSpec) -> None:
        self.spec = spec

    @abc.abstractmethod
    def open_loop(
        self,
        rate_rps: float,
        duration_s: float,
        warmup_s: float = 1.0,
        abort_p99_ms: float | None = None,
    ) -> LoadResult:
        """Drive Poisson arrivals at ``rate_rps`` for ``duration_s`` and measure.

        With ``abort_p99_ms`` the step may stop early once that p99 is clearly exceeded.
        Raises :class:`DeployError` if the deployment dies under test.
        """

    @abc.abstractmethod
    def teardown(self) -> None:
        """Remove everything this deployment created; safe to call twice."""

    def __enter__(self) -> Deployment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.teardown()


class Deployer(abc.ABC):
    """Makes deployments of one kind (``local``, ``kubernetes``)."""

    name: ClassVar[str]

    @abc.abstractmethod
    def deploy(self, spec: DeploymentSpec) -> Deployment:
        """Bring ``spec`` up and wait until it is ready; raise :class:`DeployError` if it is not
        ready in time, tearing down whatever was started."""

    def refusal(self, spec: DeploymentSpec) -> str | None:
        """Why this deployer cannot host ``spec`` honestly (one line), found without deploying
        anything; ``None`` when it may try. The base deployer refuses nothing."""
        return None

    @abc.abstractmethod
    def cleanup(self, study: str | None = None) -> list[str]:
        """Remove what deployments of this deployer (of ``study``, else all) left behind, e.g.
        after a crash; return a description of each thing removed."""
