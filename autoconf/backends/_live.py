"""Live backends: measure a config by deploying it through a ``stress`` deployer.

:class:`LiveBackend` turns (profile, config, load) into a :class:`stress.DeploymentSpec`,
deploys it, runs one measurement and tears it down:

- with ``load.target_rps``: open-loop Poisson load at that rate for ``load.duration_s``;
- otherwise: a capacity search under ``load.slo_p99_ms`` (ramp + bisection, at most
  ``max_steps`` steps of ``capacity_step_s`` each), reported as ``capacity_rps``.

A deployment that fails (not ready, crash, OOM, never scheduled) is a
``Measurement.failed(...)``: infeasible, never a score. Subclasses name their deployer.

A config's ``precision`` picks the file deployed: the model itself for FP32, else its variant
(:mod:`autoconf._variants`): the one the search built and checked (``model_variants``), or one
built here and cached (``autoconf validate`` of a plan). A variant that cannot be built is a
failed measurement with the reason, never deployed.

A measurement that is not stable (:mod:`stress._stability`; for a capacity search, its
verdict) is measured again on a fresh deployment, at most ``unstable_retries`` times; what stays
unstable is returned flagged (``stable`` false, ``unstable_reasons``), never silently: the
search widens its uncertainty (:mod:`autoconf._noise`) and the report shows it.
"""

from __future__ import annotations

import itertools
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import stress

from .._deployment import deployment_spec, model_memory_mb
from .._errors import UserError
from .._noise import best_floor, could_beat
from .._space import SearchSpace
from .._types import Config, Load, Measurement
from .._variants import VariantError, canonical, variant_file
from ._base import Backend

if TYPE_CHECKING:
    from kops import ModelProfile

log = logging.getLogger(__name__)


class LiveBackend(Backend):
    """A backend that measures real deployments made by the stress deployer ``deployer_name``.

    Options: ``study`` (label on everything deployed), ``warmup_s`` (unmeasured warm-up per
    step), ``max_steps`` and ``capacity_step_s`` (the capacity search), ``start_rps`` (first
    rate of a capacity search, e.g. from the prior), ``unstable_retries`` (fresh deployments
    tried again while a measurement is unstable, default 1); every other option goes to the
    deployer.
    """

    deployer_name: ClassVar[str]
    #: The file of each precision the search checked (``autoconf._variants``); one not here is
    #: built (and cached) when first deployed.
    model_variants: dict[str, Path]
    #: Whether each deployment requests the model's memory (:func:`model_memory_mb`): where it
    #: is a container's request and limit (Kubernetes), not a local address-space limit.
    sizes_memory: ClassVar[bool] = False

    def __init__(
        self,
        space: SearchSpace,
        *,
        study: str = "autoconf",
        warmup_s: float = 1.0,
        max_steps: int = 5,
        capacity_step_s: float | None = None,
        start_rps: float | None = None,
        unstable_retries: int = 1,
        **deployer_options: Any,
    ) -> None:
        super().__init__(space, **deployer_options)
        self.study = study
        self.warmup_s = float(warmup_s)
        self.max_steps = int(max_steps)
        self.capacity_step_s = capacity_step_s
        self.start_rps = start_rps
        self.unstable_retries = max(0, int(unstable_retries))
        try:
            self.deployer = stress.get_deployer(self.deployer_name, **deployer_options)
        except TypeError as exc:
            raise UserError(f"backend {self.name!r}: bad option: {exc}") from None
        self._trials = itertools.count(1)
        self.model_variants = {}
        self._dims = dict(deployer_options.get("dims") or {})
        # The best capacity per dollar measured so far, pessimistically (capacity searches).
        self._best_rps_per_cost: float | None = None

    def spec_for(self, profile: ModelProfile, config: Config, trial: int) -> stress.DeploymentSpec:
        """The deployment of ``config`` for the model behind ``profile`` (the file of its
        precision; :class:`autoconf._variants.VariantError` when that cannot be built)."""
        precision = canonical(config.precision)
        path = self.model_variants.get(precision)
        if path is None:
            path = variant_file(profile.path, precision, self._dims)
        return deployment_spec(
            config,
            path,
            model_name=str(getattr(profile, "name", "") or "model"),
            labels={"study": self.study, "trial": str(trial)},
            memory_mb=model_memory_mb(profile, config) if self.sizes_memory else None,
        )

    def feasible_space(self) -> tuple[SearchSpace, list[str]]:
        """The space without the configs the deployer refuses to host (see
        :func:`autoconf._feasible.trim_space`)."""
        from .._feasible import trim_space

        def refusal(config: Config) -> str | None:
            spec = deployment_spec(config, Path("model.onnx"))
            return self.deployer.refusal(spec)

        return trim_space(self.space, refusal, self.name)

    def evaluate(self, profile: ModelProfile, config: Config, load: Load) -> Measurement:
        """One measurement; an unstable one is repeated on a fresh deployment (bounded), unless
        even its optimistic value cannot beat the best measured so far
        (:func:`autoconf._noise.could_beat`): then repeating it cannot change the plan."""
        m = self._evaluate_once(profile, config, load)
        attempts = 1
        while (
            m.ok
            and m.stable is False
            and attempts <= self.unstable_retries
            and could_beat(m, self._best_rps_per_cost)
        ):
            log.info("%s: not stable (%s): measuring it again", config.key(), m.unstable_reasons)
            again = self._evaluate_once(profile, config, load)
            attempts += 1
            if not again.ok:
                break
            m = again
        m.attempts = attempts
        if load is not None and load.target_rps is None:
            self._best_rps_per_cost = best_floor(m, self._best_rps_per_cost)
        return m

    def _evaluate_once(self, profile: ModelProfile, config: Config, load: Load) -> Measurement:
        cost = self.space.cost_per_hour(config)  # UserError for a GPU type outside the catalog
        if load.target_rps is None and load.slo_p99_ms is None:
            raise UserError("a live measurement needs a target rate or a p99 SLO")
        started = time.monotonic()
        try:
            spec = self.spec_for(profile, config, next(self._trials))
        except VariantError as exc:
            return Measurement.failed(str(exc), cost, wall_s=time.monotonic() - started)
        try:
            with self.deployer.deploy(spec) as dep:
                if load.target_rps is not None:
                    if self.on_step is not None:
                        self.on_step(1, 1, load.target_rps, load.duration_s)
                    r = dep.open_loop(load.target_rps, load.duration_s, self.warmup_s)
                    return _measurement(r, cost, time.monotonic() - started)
                assert load.slo_p99_ms is not None  # checked above: no target load, an SLO
                # Steps sized by the requests they need unless capacity_step_s fixes them.
                step_s = self.capacity_step_s
                cap = stress.capacity_search(
                    dep,
                    float(load.slo_p99_ms),
                    start_rps=self.start_rps,
                    max_steps=self.max_steps,
                    duration_s=step_s,
                    warmup_s=self.warmup_s,
                    on_step=self.on_step,
                )
        except stress.DeployError as exc:
            return Measurement.failed(str(exc), cost, wall_s=time.monotonic() - started)
        return _capacity_measurement(cap, cost, time.monotonic() - started)


def _capacity_measurement(cap: stress.CapacityResult, cost: float, wall_s: float) -> Measurement:
    """A capacity search as a measurement: the step at capacity's figures (else the gentlest
    step, whose p99 shows how far off it was), the search's verdict, and every step."""
    final = [s for s in cap.steps if not s.extra.get("superseded")] or cap.steps
    shown = cap.at_capacity or min(final, key=lambda s: s.target_rps)
    m = _measurement(shown, cost, wall_s)
    m.capacity_rps = cap.capacity_rps
    m.stable = bool(cap.stable)
    m.unstable_reasons = list(cap.unstable_reasons)
    m.extra["remeasured_steps"] = cap.remeasured
    m.extra["generator_limited"] = cap.generator_limited
    m.extra["capacity_steps"] = [
        {
            "rate_rps": s.target_rps,
            "p99_ms": _finite(s.p99_ms),
            "passed": s.extra.get("passed"),
            "stable": s.stable,
            "superseded": bool(s.extra.get("superseded")),
        }
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
        stable=bool(r.stable),
        throughput_spread=_finite(r.throughput_spread),
        latency_spread=_finite(r.latency_spread),
        late_send_share=_finite(r.late_send_share),
        generator_cpu_headroom=(
            None if r.generator_cpu_headroom is None else _finite(r.generator_cpu_headroom)
        ),
        unstable_reasons=list(r.unstable_reasons),
        extra={
            "target_rps": r.target_rps,
            "generator_saturated": r.generator_saturated,
            "inflight_cap_hits": r.inflight_cap_hits,
            "generator_processes": r.generator_processes,
        },
    )
