"""Capacity search: the highest arrival rate whose p99 meets the SLO, in a handful of steps.

Generic over :class:`Deployment` (any backend's ``open_loop``). A ramp multiplies the rate
while steps pass (by 4 while p99 is under half the SLO, else by 2, and by 2 from a given
start estimate); the first failing step bounds the capacity from above, tightened to the
throughput it achieved when it ran its full length (an overloaded server serves its maximum
rate, and the SLO capacity lies below it); bisection then
narrows [pass, fail] (geometric midpoints while it spans more than 2x). Each step aborts
early once its p99 is certainly over the SLO, so failing steps are cheap. The answer is the
highest *measured* passing rate; :func:`upper_bound` gives the lowest failing rate above it.
"""

from __future__ import annotations

import math

from ._api import CapacityResult, Deployment, LoadResult, StressError

#: First rate tried without an estimate.
DEFAULT_START_RPS = 50.0
#: A step serves its rate when it completes at least this share of it (Poisson noise).
SERVED_SHARE = 0.95
#: A step lasts long enough for this many measured requests (so that its p99 rests on at least
#: two requests beyond it), up to three times its nominal duration.
MIN_SAMPLES = 200
#: Stop bisecting once the bracket is this narrow (relative to its upper end).
RESOLUTION = 0.05


def step_passes(result: LoadResult, slo_p99_ms: float, max_error_rate: float = 0.01) -> bool:
    """A step meets the SLO: p99 within it, errors rare, and the offered rate actually served."""
    return (
        not result.aborted_early
        and result.completed > 0
        and result.p99_ms <= slo_p99_ms
        and result.error_rate <= max_error_rate
        and result.throughput_rps >= SERVED_SHARE * _offered_rps(result)
    )


def _offered_rps(result: LoadResult) -> float:
    """The rate the Poisson process actually offered in the window (else the nominal rate):
    a short step offers fewer or more than nominal by chance, which is no fault of the server."""
    return float(result.extra.get("offered_rps") or result.target_rps)


def upper_bound(result: CapacityResult) -> float | None:
    """The lowest failing rate above the capacity found (``None`` if no step failed there):
    the true SLO capacity lies in ``[capacity_rps, upper_bound)``."""
    fails = [
        s.target_rps
        for s in result.steps
        if not s.extra.get("passed") and s.target_rps > result.capacity_rps
    ]
    return min(fails) if fails else None


def capacity_search(
    deployment: Deployment,
    slo_p99_ms: float,
    start_rps: float | None = None,
    max_steps: int = 5,
    *,
    duration_s: float = 5.0,
    warmup_s: float = 1.0,
    max_error_rate: float = 0.01,
) -> CapacityResult:
    """Find the highest rate whose p99 meets ``slo_p99_ms`` within ``max_steps`` load steps.

    ``start_rps`` (an estimate, e.g. from the prior) replaces the default first rate.
    ``capacity_rps`` is 0.0 when not even the lowest rate tried met the SLO.
    """
    if slo_p99_ms <= 0 or max_steps < 1:
        raise StressError("the SLO must be positive and max_steps >= 1")
    rate = float(start_rps or DEFAULT_START_RPS)
    if rate <= 0:
        raise StressError("start_rps must be positive")
    lo, hi = 0.0, None
    best: LoadResult | None = None
    steps: list[LoadResult] = []
    for _ in range(max_steps):
        step_s = max(duration_s, min(MIN_SAMPLES / rate, 3.0 * duration_s))
        res = deployment.open_loop(rate, step_s, warmup_s, abort_p99_ms=slo_p99_ms)
        steps.append(res)
        passed = step_passes(res, slo_p99_ms, max_error_rate)
        res.extra["passed"] = passed
        if passed:
            lo, best = rate, res
        else:
            upper = rate
            # An overloaded step serves the server's maximum rate: a bound, unless the generator
            # was the bottleneck or the step was cut short (its window is then too short).
            if not res.generator_saturated and not res.aborted_early and res.throughput_rps > 0:
                upper = min(rate, res.throughput_rps * 1.02)
            hi = max(lo * (1 + RESOLUTION), upper) if hi is None else min(hi, max(upper, lo))
        if hi is None:
            # A given estimate is trusted to be near: ramp gently from it.
            fast = start_rps is None and res.p99_ms < 0.5 * slo_p99_ms
            rate *= 4.0 if fast else 2.0
        elif lo == 0.0:
            rate = hi / 4.0
        else:
            if (hi - lo) <= RESOLUTION * hi:
                break
            # Geometric midpoint while the bracket spans more than 2x (a ramp overshoot),
            # arithmetic once it is narrow.
            rate = math.sqrt(lo * hi) if hi > 2.0 * lo else (lo + hi) / 2.0
    return CapacityResult(capacity_rps=lo, slo_p99_ms=slo_p99_ms, steps=steps, at_capacity=best)
