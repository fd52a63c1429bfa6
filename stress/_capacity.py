"""Capacity search: the highest arrival rate whose p99 meets the SLO, in a handful of steps.

Generic over :class:`Deployment` (any backend's ``open_loop``). Served latency curves are often
flat until close to saturation (a batching server), so passing steps alone say little about
where the SLO is crossed; the search measures the server's maximum rate instead:

1. the start rate measures the base latency ``b`` (p99 at light load);
2. a deliberate, short **saturation probe** far above it (64x the default start, 16x a flat
   passing step, 2x a given estimate; no early abort): an overloaded server serves its maximum
   rate ``mu``, measured as the completions per second inside the steady window. Probes repeat
   while they pass;
3. the remaining steps bisect a bracket below ``mu`` placed by the queue model
   ``p99(r) = b / (1 - r / mu)`` (:func:`_bracket`: wide, since a batching server's overload
   rate exceeds what it sustains at lighter load), each failing step aborting early once its
   p99 is certainly over the SLO; if nothing in the bracket passed, the last step goes below it.

A model fitted to passing points alone never places a probe: such points may all sit on the
flat part of the curve. The answer is the highest *measured* passing rate; :func:`upper_bound`
gives the lowest failing rate above it.

Trust: a step whose figures are not stable (:attr:`LoadResult.stable`) is measured again, at
most :data:`MAX_REMEASURES` times per search: a passing step that was unstable or disturbed, a
failing one that was disturbed (other processes on the cores, a starved generator: the failure
may be theirs), a saturation probe whose served rate wandered. What stays unstable is kept and
the :class:`CapacityResult` says so (``stable`` false, ``unstable_reasons``), as it does when
the answer is not bracketed (the lowest failure over :data:`WIDE_BRACKET` times the answer).
The load generator's lateness alone (:mod:`stress._load`: latency is timed from the scheduled
send, so a late send only adds its lag) neither repeats nor flags a pass (:func:`trusted_pass`);
a failure it alone explains (the p99 timed from the actual sends met the SLO) is repeated and,
if it stays so, makes the answer ``generator_limited``: a lower bound set by the generator.

A capacity equal to the start rate with every later step failing (the Quickstart's 50.0 req/s
on a config that serves ~1,000) came from a bracket placed by a probe measured while the machine
was quieter than during the bisection that followed: every step in it failed, each reopening
went only 0.7x lower, and the steps ran out. The reopening now goes halfway (geometrically)
down to the highest pass when the bracket sits far above it, a lower saturation rate measured
later re-places the bracket, and the disturbed steps are re-measured or flagged.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

from ._api import CapacityResult, Deployment, LoadResult, StressError
from ._load import SATURATED_CPU_SHARE
from ._stability import STABLE_SPREAD, measurement_seconds

#: First rate tried without an estimate.
DEFAULT_START_RPS = 50.0
#: A step serves its rate when it completes at least this share of it (Poisson noise).
SERVED_SHARE = 0.95
#: A step lasts long enough for this many measured requests (so that its p99 rests on at least
#: two requests beyond it), up to three times its nominal duration.
MIN_SAMPLES = 200
#: Stop bisecting once the bracket is this narrow (relative to its upper end).
RESOLUTION = 0.02
#: A saturated step cut short still measures the server's rate if it completed this many.
MIN_SATURATED_COMPLETIONS = 50
#: Model-placed probes aim this far below the predicted SLO rate, so that they pass and raise
#: the answer (the last step further: a failing last probe adds nothing to the answer).
AIM_BELOW = 0.98
AIM_BELOW_LAST = 0.95
#: The first saturation probe from the default start: 64 x 50 = 3200 req/s, above one CPU
#: replica of a small model and within one generator core (results/stress/).
FIRST_PROBE_FACTOR = 64.0
#: Later probes while steps still pass with a flat p99 (and the most any probe jumps).
PROBE_FACTOR = 16.0
#: The first probe from a given capacity estimate (``start_rps``).
ESTIMATE_PROBE_FACTOR = 2.0
#: A passing p99 below this multiple of the base latency is "flat": it bounds nothing.
FLAT_P99_RISE = 1.5
#: A probe placed from a rising p99 aims this far above the server rate the queue model infers.
PROBE_OVERSHOOT = 1.5
#: A saturation probe runs this long (at most ``duration_s``; longer for MIN_SAMPLES).
PROBE_S = 2.0
#: Once ``mu`` is known, bisection starts from this share of the queue model's SLO rate ...
FLOOR_SHARE = 0.7
#: ... and at most this share of the measured maximum rate ...
FLOOR_MU_SHARE = 0.6
#: ... and reopens this far below it when everything above failed.
FLOOR_DROP = 0.7
#: The SLO capacity lies below the measured maximum rate, up to this slack for noise.
MU_SLACK = 1.03
#: A bracket whose floor is this far above the highest pass reopens geometrically, not by
#: FLOOR_DROP (a floor placed by a measurement the later steps contradict).
FAR_FLOOR = 4.0
#: Steps measured again per search because their figures were not stable.
MAX_REMEASURES = 2
#: The answer is flagged when the lowest failing rate above it is more than this multiple.
WIDE_BRACKET = 2.0

log = logging.getLogger(__name__)


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
    if result.throughput_rps <= 0:
        return None
    if result.generator_saturated:
        # Behind its schedule, but with the in-flight cap full the server held a backlog the
        # whole time: it was the bottleneck, unless the generator had no CPU left to send.
        cpu = result.extra.get("generator_cpu_share")
        backlog = result.inflight_cap_hits and cpu is not None and cpu <= SATURATED_CPU_SHARE
        if not backlog and not _generator_ceiling(result):
            return None
    if result.throughput_rps >= SERVED_SHARE * _offered_rps(result):
        return None  # it kept up: not saturated
    if (
        result.aborted_early
        and result.throughput_rps * result.duration_s < MIN_SATURATED_COMPLETIONS
    ):
        return None
    return float(result.throughput_rps)


def _generator_ceiling(result: LoadResult) -> bool:
    """The step served what the load generator itself could drive (its own work filled its
    core; nothing else took the cores): above that rate nothing can be measured on this machine,
    so the served rate bounds the bracket as a server's maximum rate would. Without this, one
    generator process per core (which fills its core near 2,000 req/s on tiny_mlp) left the
    bracket at the 3,200 req/s probe and every bisection step failed on the generator
    (results/stress/stability.json, 2026-11-27 19:13, before this fix)."""
    kinds = _kinds(result)
    return kinds is not None and "generator" in kinds and not kinds & {"starved", "interference"}


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
    """The rate where the local queue model ``1/p99 = (1 - r/mu) / b`` meets the SLO, or ``None``.

    ``points`` are ``(rate, p99_ms, passed)`` of steps the server kept up with. With the
    server's maximum rate ``mu``, ``b`` comes from the point nearest the SLO; without it the
    model goes through the highest pass and the lowest failure above it. Passing points alone
    predict nothing (they may all lie on the flat part of the curve).
    """
    if mu is not None:
        usable = [p for p in points if p[0] < mu]
        if usable:
            r, p99, _ = min(usable, key=lambda p: abs(math.log(p[1] / slo_p99_ms)))
            b = p99 * (1.0 - r / mu)
            return mu * (1.0 - b / slo_p99_ms) if b < slo_p99_ms else None
    passes = [p for p in points if p[2]]
    fails = [p for p in points if not p[2] and p[1] > slo_p99_ms]
    if not passes or not fails:
        return None
    r1, p1, _ = max(passes, key=lambda p: p[0])
    r2, p2, _ = min(fails, key=lambda p: p[0])
    if r2 <= r1:
        return None
    slope = (1.0 / p1 - 1.0 / p2) / (r2 - r1)  # B in 1/p99 = A - B r
    if slope <= 0:
        return None  # latency not rising: no information on where it crosses the SLO
    return r2 + (1.0 / p2 - 1.0 / slo_p99_ms) / slope


def _probe_factor(
    points: list[tuple[float, float, bool]], lo: float, first: bool, estimate: bool
) -> float:
    """How far above the highest pass ``lo`` to send the next saturation probe."""
    if first and estimate:
        return ESTIMATE_PROBE_FACTOR
    b = min(p[1] for p in points if p[2])
    top = [p[1] for p in points if p[2] and p[0] == lo]
    p99 = top[0] if top else b
    if p99 >= FLAT_P99_RISE * b:
        # The queue model through (lo, p99) with base b infers the server rate: overshoot it.
        mu_guess = lo / (1.0 - b / p99)
        return min(PROBE_FACTOR, max(2.0, PROBE_OVERSHOOT * mu_guess / lo))
    return FIRST_PROBE_FACTOR if first else PROBE_FACTOR


def _bracket(
    points: list[tuple[float, float, bool]], mu: float | None, hi: float, slo_p99_ms: float
) -> tuple[float | None, float]:
    """The bracket to bisect once the server's maximum rate ``mu`` (or a pass and
    a failure served) is known.

    The queue model's SLO rate ``m`` (:func:`_predict`) is exact for a single queue, too high
    for a batching server (its overload rate, with full batches, exceeds what it sustains with
    the partial batches of lighter load: tiny_mlp served ~2900 req/s overloaded, ~2100-2300
    within a 50 ms p99), too low for a curve flat until saturation. So bisect
    ``[min(FLOOR_SHARE m, FLOOR_MU_SHARE mu), min(m / 0.8, mu)]``, reopened below if everything
    in it fails (on a loaded machine tiny_mlp sustained only ~0.6 of its overload rate).
    """
    m = _predict(points, mu, slo_p99_ms)
    if m is None:
        return None, hi  # no model yet: bisect what was measured
    low = min(FLOOR_SHARE * m, FLOOR_MU_SHARE * mu) if mu else FLOOR_SHARE * m
    return low, max(low * (1 + RESOLUTION), min(hi, m / 0.8))


def capacity_search(
    deployment: Deployment,
    slo_p99_ms: float,
    start_rps: float | None = None,
    max_steps: int = 5,
    *,
    duration_s: float | None = None,
    warmup_s: float = 1.0,
    max_error_rate: float = 0.01,
    on_step: Callable[[int, int, float, float], None] | None = None,
) -> CapacityResult:
    """Find the highest rate whose p99 meets ``slo_p99_ms`` within ``max_steps`` load steps.

    ``start_rps`` (an estimate, e.g. from the prior) replaces the default first rate.
    ``duration_s`` fixes each step's length (as before: at least that, longer for MIN_SAMPLES);
    left ``None``, a step lasts what its evidence needs (:func:`_step_seconds`).
    ``on_step(step, max_steps, rate_rps, duration_s)``, if given, is called before each load
    step (a step measured again counts as the same step): progress for a live display.
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
    floor: float | None = None  # the bracket's lower end set by the queue model (unmeasured)
    probing = False
    remeasures = 0
    for i in range(max_steps):
        step_s = _step_seconds(rate, duration_s, probing)
        # A saturation probe is never cut short, so its served rate is a measurement.
        abort = None if probing else slo_p99_ms
        while True:
            if on_step is not None:
                on_step(i + 1, max_steps, rate, step_s)
            res = deployment.open_loop(rate, step_s, warmup_s, abort_p99_ms=abort)
            steps.append(res)
            passed = step_passes(res, slo_p99_ms, max_error_rate)
            res.extra["passed"] = passed
            res.extra["probe"] = probing
            if (
                remeasures >= MAX_REMEASURES
                or (i == 0 and passed and start_rps is None)
                or not needs_remeasure(res, passed, probing, slo_p99_ms)
            ):
                # The default start step only measures the base latency: passing, disturbed or
                # not, it is a pass (a disturbance only slows the server), and it is the answer
                # only if everything above fails. Re-measuring it spent 10-15 s of every
                # disturbed search (results/stress/stability.json, 2026-11-27 18:29).
                break
            remeasures += 1
            res.extra["superseded"] = True
            log.info(
                "step at %g req/s not stable (%s): measuring it again", rate, res.unstable_reasons
            )
        saturated = None if passed else saturated_rps(res)
        if passed:
            if rate >= lo:
                lo, best = rate, res
        else:
            upper = rate
            if saturated is not None and saturated * MU_SLACK > lo:
                if mu is not None and saturated < mu / MU_SLACK:
                    floor = None  # the server serves less than the probe said: re-place it
                mu = saturated
                upper = min(rate, saturated * MU_SLACK)
            hi = upper if hi is None else min(hi, upper)
            hi = max(hi, lo * (1 + RESOLUTION))
        if saturated is None and math.isfinite(res.p99_ms) and res.p99_ms > 0:
            points.append((rate, float(res.p99_ms), passed))
        if i == max_steps - 1:
            break
        probing = False
        if hi is None:
            # Everything passed: overshoot deliberately to measure the server's maximum rate.
            factor = _probe_factor(points, lo, first=(i == 0), estimate=start_rps is not None)
            rate, probing = lo * factor, True
            continue
        if floor is None:
            floor, hi = _bracket(points, mu, hi, slo_p99_ms)
        low = max(lo, floor or 0.0)
        if (hi - low) <= RESOLUTION * hi and low > lo:
            # Everything down to the model's floor failed: reopen the bracket below it.
            floor = low = _reopen(lo, low)
        if lo == 0.0 and low == 0.0:
            # Nothing passed or served yet: just below the saturation rate, else far below.
            rate = min(0.8 * mu, hi / 1.25) if mu is not None else hi / 4.0
            continue
        if (hi - low) <= RESOLUTION * hi:
            break
        if i == max_steps - 2 and low > lo and hi < low * 1.25:
            # Last step and nothing in the bracket passed yet: secure a measured answer below it
            # rather than leave the start rate as the capacity.
            rate = _reopen(lo, low)
            continue
        # Geometric midpoint while the bracket spans more than 2x, arithmetic once narrow.
        rate = math.sqrt(low * hi) if hi > 2.0 * low else (low + hi) / 2.0
    result = CapacityResult(capacity_rps=lo, slo_p99_ms=slo_p99_ms, steps=steps, at_capacity=best)
    result.remeasured = remeasures
    result.unstable_reasons = verdict_reasons(result)
    result.stable = not result.unstable_reasons
    return result


def _step_seconds(rate: float, duration_s: float | None, probe: bool) -> float:
    """A step's length: sized by requests (``duration_s`` None), else by ``duration_s``.

    By requests: :data:`STABLE_WINDOWS` windows of the stability rule and MIN_SAMPLES arrivals
    (:func:`stress._stability.measurement_seconds`): 4 s at 50 req/s, 1.5 s at 1,500 req/s.
    A fixed 5 s per step (what ``--duration 10`` gave) held 7,500 requests at 1,500 req/s
    where the rule compares three windows of 750; the rule still adds windows until stable.
    """
    if duration_s is None:
        return measurement_seconds(rate, MIN_SAMPLES)
    if probe:
        return max(min(duration_s, PROBE_S), min(MIN_SAMPLES / rate, 3.0 * duration_s))
    return max(duration_s, min(MIN_SAMPLES / rate, 3.0 * duration_s))


def _reopen(lo: float, low: float) -> float:
    """The next floor when everything down to ``low`` failed: FLOOR_DROP below it, or halfway
    (geometrically) down to the highest pass ``lo`` when the floor sits far above it."""
    if lo > 0 and low > FAR_FLOOR * lo:
        return math.sqrt(lo * low)
    return max(lo, FLOOR_DROP * low)


def needs_remeasure(
    result: LoadResult, passed: bool, probe: bool, slo_p99_ms: float | None = None
) -> bool:
    """Whether a step's verdict rests on figures that were not stable (see the module doc).

    A saturation probe overloads on purpose: its latency grows for as long as it runs and a
    generator asked for more than it can send is late, so only what makes its *served rate*
    doubtful repeats it: that rate wandering over the windows, or other processes on the cores.
    (Repeating probes for their late sends spent both of a search's re-measurements on them.)
    """
    if result.stable or result.extra.get("oversubscribed"):
        return False
    if probe:
        return bool(result.extra.get("interfered")) or result.throughput_spread > STABLE_SPREAD
    if passed:
        # Latency is timed from the scheduled send: lateness only adds to it, so a step that
        # passed despite it passed (see trusted_pass).
        return not trusted_pass(result)
    # A failure is a failure unless something else may have caused it.
    if slo_p99_ms is None:
        return bool(result.extra.get("disturbed"))
    reason, generator_limited = _bound_verdict(result, slo_p99_ms)
    return reason is not None or generator_limited


def _kinds(result: LoadResult) -> set[str] | None:
    """The kinds of ``result``'s unstable reasons (``None`` when its backend gives none)."""
    kinds = result.extra.get("reason_kinds")
    return None if kinds is None else set(kinds)


def trusted_pass(result: LoadResult) -> bool:
    """A passing step is trusted when it is stable, or when all that kept it from being stable
    is the load generator's lateness: latency is timed from each request's scheduled send, so a
    late generator only adds its lag (and burstier arrivals) to the figures, and a step that
    met the SLO despite that meets it without."""
    kinds = _kinds(result)
    return result.stable or (kinds is not None and kinds <= _GENERATOR_ONLY)


#: Reasons that are the load generator's own lateness (not starvation, not other processes).
_GENERATOR_ONLY = {"late", "generator"}


def _bound_verdict(bound: LoadResult, slo_p99_ms: float) -> tuple[str | None, bool]:
    """Whether the lowest failing step above the answer can be trusted to fail: a reason when
    it cannot, and whether it failed only by the generator's lateness (generator-limited)."""
    if not bound.extra.get("disturbed"):
        return None, False
    kinds = _kinds(bound)
    if kinds is not None and not (kinds - _GENERATOR_ONLY - {"aborted", "windows"}):
        # Only the generator was late: the failure stands if the p99 timed from the actual
        # sends (without the generator's lag) fails too; else the generator set the bound.
        p99_send = bound.extra.get("p99_from_send_ms")
        if p99_send is not None and p99_send > slo_p99_ms:
            return None, False
        return None, True
    return (
        f"the lowest failing step ({bound.target_rps:,.1f} req/s) was disturbed: "
        + "; ".join(bound.unstable_reasons)
    ), False


def verdict_reasons(result: CapacityResult) -> list[str]:
    """Why the capacity found cannot be trusted as is (empty when it can); sets
    ``result.generator_limited`` when the bound above it is the generator's."""
    reasons = []
    top = result.at_capacity
    if top is not None and not trusted_pass(top):
        reasons.append(
            f"the step at capacity ({top.target_rps:,.1f} req/s) was not stable: "
            + "; ".join(top.unstable_reasons)
        )
    final = [s for s in result.steps if not s.extra.get("superseded")]
    above = [s for s in final if not s.extra.get("passed") and s.target_rps > result.capacity_rps]
    if above:
        bound = min(above, key=lambda s: s.target_rps)
        reason, result.generator_limited = _bound_verdict(bound, result.slo_p99_ms)
        if reason:
            reasons.append(reason)
        # A saturated step bounds the capacity by the rate it served, not the rate offered.
        top_rps = min(min(s.target_rps, (saturated_rps(s) or math.inf) * MU_SLACK) for s in above)
        if result.capacity_rps > 0 and top_rps > WIDE_BRACKET * result.capacity_rps:
            reasons.append(
                f"not bracketed: the SLO failed only above {top_rps:,.1f} req/s, over "
                f"{WIDE_BRACKET:g}x the capacity found ({result.capacity_rps:,.1f})"
            )
    return reasons
