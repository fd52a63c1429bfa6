"""How far a measurement's figure may be from the truth: its relative sd, for the search's models.

A table or the simulator answers exactly (``stable`` unknown: 0). A live measurement the
stability rule accepted (:mod:`stress._stability`) is known up to its windows' spread: the last
three windows' throughput range is ~1.69 sd of one window, and the step's figure is their mean
(sd / sqrt(3)); never below :data:`STABLE_FLOOR_SD`. One the rule did not accept, even after
measuring it again, is known only roughly: :data:`UNSTABLE_SD`, what fresh deployments of one
config spread by on a loaded 2-core machine (CV 24-45 %, ``results/stress/fidelity.md``).

The live backend also uses it to decide whether an unstable measurement is worth a fresh
deployment (:func:`could_beat`): not when even its optimistic value (+2 sd) is below the
pessimistic value (-2 sd) of the best measured so far, since then no outcome of the repeat can
change which config wins.

The ``meta`` sampler adds this noise to its surrogate (in the score's units) and its stopping
rule discounts an incumbent that may not be what it seems, so that a few noisy measurements
cannot make it 95 % confident.
"""

from __future__ import annotations

import math

from ._types import Measurement

#: Least relative sd of a stable live measurement.
STABLE_FLOOR_SD = 0.02
#: Relative sd of a measurement left unstable.
UNSTABLE_SD = 0.3
#: Expected range of three normal draws, in sds (the rule compares three windows).
_RANGE_OF_3_SD = 1.693


def relative_sd(m: Measurement) -> float:
    """The relative sd of ``m``'s throughput/capacity (0.0 for an exact answer)."""
    if m.stable is None or not m.ok:
        return 0.0
    if m.stable is False:
        return UNSTABLE_SD
    spread = m.throughput_spread
    if spread is None or not math.isfinite(spread):
        return UNSTABLE_SD
    return max(STABLE_FLOOR_SD, spread / (_RANGE_OF_3_SD * math.sqrt(3.0)))


#: How many sds make a value optimistic or pessimistic (two-sided ~95 %).
BOUND_SDS = 2.0


def could_beat(m: Measurement, best_rps_per_cost: float | None) -> bool:
    """Whether ``m``'s capacity per dollar, at its optimistic bound, beats ``best_rps_per_cost``
    (a pessimistic incumbent, :func:`best_floor`); True when there is nothing to compare."""
    value = m.rps_per_cost
    if best_rps_per_cost is None or value is None or m.capacity_rps is None or value <= 0:
        return True  # nothing to compare, or nothing passed: no bound on what it may serve
    return value * (1.0 + BOUND_SDS * relative_sd(m)) > best_rps_per_cost


def best_floor(m: Measurement, best_rps_per_cost: float | None) -> float | None:
    """The incumbent's pessimistic capacity per dollar once ``m`` is measured."""
    value = m.rps_per_cost
    if not m.ok or value is None or m.capacity_rps is None or value <= 0:
        return best_rps_per_cost
    floor = value * max(0.0, 1.0 - BOUND_SDS * relative_sd(m))
    return floor if best_rps_per_cost is None else max(best_rps_per_cost, floor)
