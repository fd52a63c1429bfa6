"""Capacity search: the highest arrival rate whose p99 meets the SLO, in a handful of steps.

Generic over :class:`Deployment` (any backend's ``open_loop``). A ramp doubling the rate
narrows the capacity only to a factor of 2 in five steps, so every step's measurement places
the next probe:

- a step that fails because the server is **saturated** (it served clearly less than it was
  offered) still measured the server's maximum rate ``mu``: the SLO capacity lies below it;
- a step that was served (passing, or failing on p99 alone) gives a point ``(rate, p99)`` of
  the latency curve, whose headroom to the SLO says how far the capacity is.

The curve is modelled locally as a single queue, ``p99(r) = b / (1 - r / mu)`` (``1 / p99``
linear in the rate), fitted to the points that matter most: the two bracketing the SLO, else
``mu`` and the point nearest the SLO, else the two highest-rate points. The next probe goes
just below the predicted SLO rate, always inside the bracket ``(highest pass, lowest fail)``;
without a prediction the ramp multiplies the rate (by 8 while p99 is under a quarter of the
SLO or into the last step but one, else by 4, and by 2 from a given start estimate) and the
bracket is bisected. Each step aborts
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
#: A saturated step cut short still measures the server's rate if it completed this many.
MIN_SATURATED_COMPLETIONS = 50
#: Probes aim this far below the predicted SLO rate, so that they pass and raise the answer
#: (the last step further: a failing last probe adds nothing to the answer).
AIM_BELOW = 0.98
AIM_BELOW_LAST = 0.95
#: Two passing steps predict the SLO rate only when p99 clearly rose between them (noise).
MIN_P99_RISE = 1.2
#: Without an estimate, the ramp multiplies the rate by 8 while p99 is under this share of the
#: SLO, else by 4 (by 2 from a given start estimate).
FAST_RAMP_P99_SHARE = 0.25
#: A model-guided ramp jumps at most this factor in one step.
MAX_JUMP = 16.0


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
    """The rate the Poisson process actually offered in the window (else the nominal rate)."""
    return float(result.extra.get("offered_rps") or result.target_rps)


def saturated_rps(result: LoadResult) -> float | None:
    """The server's maximum rate measured by a step it could not keep up with, else ``None``.

    An overloaded server serves its maximum rate; that is only a measurement of the server when
    the generator was not the bottleneck, and, for a step cut short, when it completed enough.
    """
    if result.generator_saturated or result.throughput_rps <= 0:
        return None
    if result.throughput_rps >= SERVED_SHARE * _offered_rps(result):
        return None  # it kept up: not saturated
    if (
        result.aborted_early
        and result.throughput_rps * result.duration_s < MIN_SATURATED_COMPLETIONS
    ):
        return None
    return float(result.throughput_rps)


def upper_bound(result: CapacityResult) -> float | None:
    """The lowest failing rate above the capacity found (``None`` if no step failed there):
    the true SLO capacity lies in ``[capacity_rps, upper_bound)``."""
    fails = [
        s.target_rps
        for s in result.steps
        if not s.extra.get("passed") and s.target_rps > result.capacity_rps
    ]
    return min(fails) if fails else None


def _predict(
    points: list[tuple[float, float, bool]], mu: float | None, slo_p99_ms: float
) -> float | None:
    """The rate where the local queue model ``1/p99 = (1 - r/mu) / b`` meets the SLO.

    ``points`` are ``(rate, p99_ms, passed)`` of steps the server kept up with.
    """
    inv_slo = 1.0 / slo_p99_ms
    passes = [p for p in points if p[2]]
    fails = [p for p in points if not p[2] and p[1] > slo_p99_ms]
    pair = None
    if passes and fails:
        below = max(passes, key=lambda p: p[0])
        above = min(fails, key=lambda p: p[0])
        if above[0] > below[0]:
            pair = (below, above)
    if pair is None and mu is not None:
        usable = [p for p in points if p[0] < mu]
        if usable:
            r, p99, _ = min(usable, key=lambda p: abs(math.log(p[1] / slo_p99_ms)))
            b = p99 * (1.0 - r / mu)
            return mu * (1.0 - b / slo_p99_ms) if b < slo_p99_ms else None
    if pair is None and len(passes) >= 2:
        top = sorted(passes, key=lambda p: p[0])[-2:]
        if top[1][0] > top[0][0] and top[1][1] >= MIN_P99_RISE * top[0][1]:
            pair = (top[0], top[1])
    if pair is None:
        return None
    (r1, p1, _), (r2, p2, _) = pair
    slope = (1.0 / p1 - 1.0 / p2) / (r2 - r1)  # B in 1/p99 = A - B r
    if slope <= 0:
        return None  # latency not rising: no information on where it crosses the SLO
    return r2 + (1.0 / p2 - inv_slo) / slope


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
    mu: float | None = None
    best: LoadResult | None = None
    steps: list[LoadResult] = []
    points: list[tuple[float, float, bool]] = []
    for i in range(max_steps):
        step_s = max(duration_s, min(MIN_SAMPLES / rate, 3.0 * duration_s))
        res = deployment.open_loop(rate, step_s, warmup_s, abort_p99_ms=slo_p99_ms)
        steps.append(res)
        passed = step_passes(res, slo_p99_ms, max_error_rate)
        res.extra["passed"] = passed
        saturated = None if passed else saturated_rps(res)
        if passed:
            lo, best = rate, res
        else:
            upper = rate
            if saturated is not None:
                # The SLO capacity lies below the server's maximum rate (2 % for noise).
                mu = saturated
                upper = min(rate, saturated * 1.02)
            hi = max(lo * (1 + RESOLUTION), upper) if hi is None else min(hi, max(upper, lo))
        if saturated is None and math.isfinite(res.p99_ms) and res.p99_ms > 0:
            points.append((rate, float(res.p99_ms), passed))
        if i == max_steps - 1:
            break
        guess = _predict(points, mu, slo_p99_ms)
        aim = AIM_BELOW_LAST if i == max_steps - 2 else AIM_BELOW
        if hi is None:
            # Ramp fast while the latency headroom is wide (or when the next step is the last
            # but one: a failure there still leaves a step to place the answer), gently from a
            # given estimate.
            if start_rps is not None:
                ramp = 2.0
            elif res.p99_ms < FAST_RAMP_P99_SHARE * slo_p99_ms or i + 1 == max_steps - 2:
                ramp = 8.0
            else:
                ramp = 4.0
            if guess is not None and guess > rate * 1.05:
                rate = min(guess * aim, rate * MAX_JUMP)
                rate = max(rate, lo * (1 + RESOLUTION / 2))
            else:
                rate *= ramp
        elif lo == 0.0:
            # Nothing passed yet: just below the saturation rate (or the prediction), else far.
            if guess is not None and 0 < guess < hi:
                rate = guess * aim
            elif mu is not None:
                rate = min(0.8 * mu, hi / 1.25)
            else:
                rate = hi / 4.0
        else:
            if (hi - lo) <= RESOLUTION * hi:
                break
            if guess is not None and guess < hi:
                rate = guess * aim
                if rate < lo * (1 + RESOLUTION / 2):
                    # The answer is already at (or past) the prediction: test just above it.
                    rate = min(lo * (1 + RESOLUTION), (lo + hi) / 2.0)
            else:
                # Geometric midpoint while the bracket spans more than 2x (a ramp overshoot),
                # arithmetic once it is narrow.
                rate = math.sqrt(lo * hi) if hi > 2.0 * lo else (lo + hi) / 2.0
    return CapacityResult(capacity_rps=lo, slo_p99_ms=slo_p99_ms, steps=steps, at_capacity=best)
