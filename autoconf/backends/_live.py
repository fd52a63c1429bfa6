"""Live backends: measure a config by deploying it through a ``stress`` deployer.

:class:`LiveBackend` turns (profile, config, load) into a :class:`stress.DeploymentSpec`,
deploys it, runs one measurement and tears it down:

- with ``load.target_rps``: open-loop Poisson load at that rate for ``load.duration_s``;
- otherwise: a capacity search under ``load.slo_p99_ms`` (ramp + bisection, at most
  ``max_steps`` steps of ``capacity_step_s`` each), reported as ``capacity_rps``.

A deployment that fails (not ready, crash, OOM, never scheduled) is a
``Measurement.failed(...)``: infeasible, never a score. Subclasses name their deployer.
"""

from __future__ import annotations

import itertools
import time
from typing import TYPE_CHECKING, Any, ClassVar

import stress

from .._deployment import deployment_spec
from .._errors import UserError
from .._space import SearchSpace
from .._types import Config, Load, Measurement
from ._base import Backend

if TYPE_CHECKING:
    from kops import ModelProfile


class LiveBackend(Backend):
    """A backend that measures real deployments made by the stress deployer ``deployer_name``.

    Options: ``study`` (label on everything deployed), ``warmup_s`` (unmeasured warm-up per
    step), ``max_steps`` and ``capacity_step_s`` (the capacity search), ``start_rps`` (first
    rate of a capacity search, e.g. from the prior); every other option goes to the deployer.
    """

    deployer_name: ClassVar[str]

    def __init__(
        self,
        space: SearchSpace,
        *,
        study: str = "autoconf",
        warmup_s: float = 1.0,
        max_steps: int = 5,
        capacity_step_s: float | None = None,
        start_rps: float | None = None,
        **deployer_options: Any,
    ) -> None:
        super().__init__(space, **deployer_options)
        self.study = study
        self.warmup_s = float(warmup_s)
        self.max_steps = int(max_steps)
        self.capacity_step_s = capacity_step_s
        self.start_rps = start_rps
        try:
            self.deployer = stress.get_deployer(self.deployer_name, **deployer_options)
        except TypeError as exc:
            raise UserError(f"backend {self.name!r}: bad option: {exc}") from None
        self._trials = itertools.count(1)

    def spec_for(self, profile: ModelProfile, config: Config, trial: int) -> stress.DeploymentSpec:
        """The deployment of ``config`` for the model behind ``profile``."""
        return deployment_spec(
            config,
            profile.path,
            model_name=str(getattr(profile, "name", "") or "model"),
            labels={"study": self.study, "trial": str(trial)},
        )

    def evaluate(self, profile: ModelProfile, config: Config, load: Load) -> Measurement:
        cost = self.space.cost_per_hour(config)  # UserError for a GPU type outside the catalog
        if load.target_rps is None and load.slo_p99_ms is None:
            raise UserError("a live measurement needs a target rate or a p99 SLO")
        spec = self.spec_for(profile, config, next(self._trials))
        started = time.monotonic()
        try:
            with self.deployer.deploy(spec) as dep:
                if load.target_rps is not None:
                    r = dep.open_loop(load.target_rps, load.duration_s, self.warmup_s)
                    return _measurement(r, cost, time.monotonic() - started)
                step_s = self.capacity_step_s or max(2.0, load.duration_s / 2.0)
                cap = stress.capacity_search(
                    dep,
                    float(load.slo_p99_ms),
                    start_rps=self.start_rps,
                    max_steps=self.max_steps,
                    duration_s=step_s,
                    warmup_s=self.warmup_s,
                )
        except stress.DeployError as exc:
            return Measurement.failed(str(exc), cost, wall_s=time.monotonic() - started)
        # No step met the SLO: report the gentlest step, whose p99 shows how far off it was.
        shown = cap.at_capacity or min(cap.steps, key=lambda s: s.target_rps)
        m = _measurement(shown, cost, time.monotonic() - started)
        m.capacity_rps = cap.capacity_rps
        m.extra["capacity_steps"] = [
            {"rate_rps": s.target_rps, "p99_ms": _finite(s.p99_ms), "passed": s.extra.get("passed")}
            for s in cap.steps
        ]
        return m


def _finite(x: float) -> float | None:
    return x if x == x and x not in (float("inf"), float("-inf")) else None


def _measurement(r: stress.LoadResult, cost: float, wall_s: float) -> Measurement:
    return Measurement(
        ok=True,
        cost_per_hour=cost,
        throughput_rps=r.throughput_rps,
        offered_rps=r.sent / r.duration_s if r.duration_s > 0 else None,
        p50_ms=_finite(r.p50_ms),
        p95_ms=_finite(r.p95_ms),
        p99_ms=_finite(r.p99_ms),
        error_rate=r.error_rate,
        wall_s=wall_s,
        extra={
            "target_rps": r.target_rps,
            "generator_saturated": r.generator_saturated,
            "inflight_cap_hits": r.inflight_cap_hits,
            "generator_processes": r.generator_processes,
        },
    )
