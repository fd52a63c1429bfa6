"""The search objective: what makes one config better than another.

With a target load, a config is feasible when it serves that load with p99 <= SLO and
(almost) no errors; the cheapest feasible config wins. Without a target load, the config with
the most requests/s per dollar-hour under the SLO wins: a figure per replica, since each
replica adds its capacity and its price alike, so without a target load the replica count is not
searched (:func:`autoconf._search._sampler.searched_space`). A failed measurement is infeasible,
never a zero that could win a minimisation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ._types import Measurement

#: A load counts as served when the throughput is this close to what was offered, and what was
#: offered this close to the target (generator rounding); without a known offered rate, when
#: the throughput is this close to the target.
THROUGHPUT_TOLERANCE = 0.98
#: Error rate above which a measurement is infeasible.
MAX_ERROR_RATE = 0.01


@dataclass(frozen=True)
class Objective:
    slo_p99_ms: float | None = None
    target_rps: float | None = None

    @property
    def direction(self) -> Literal["minimize", "maximize"]:
        """``"minimize"`` (cost at a target load) or ``"maximize"`` (rps per dollar)."""
        return "minimize" if self.target_rps is not None else "maximize"

    @property
    def replicas_matter(self) -> bool:
        """Whether the replica count changes the objective: only at a target load (cost is
        paid per replica; requests/s per dollar-hour is the same at any count)."""
        return self.target_rps is not None

    @property
    def constrained(self) -> bool:
        """Whether feasibility depends on more than the deployment working (a SLO or a load)."""
        return self.slo_p99_ms is not None or self.target_rps is not None

    def violation(self, m: Measurement) -> float:
        """How far ``m`` is from feasible, 0.0 when feasible (Optuna's constraint convention: <= 0)."""
        if not m.ok or m.error_rate > MAX_ERROR_RATE:
            return float("inf")
        worst = 0.0
        if self.slo_p99_ms is not None:
            if m.p99_ms is None and m.normalized_rps_per_cost is None:
                return float("inf")
            if m.p99_ms is not None:
                worst = max(worst, m.p99_ms / self.slo_p99_ms - 1.0)
        if self.target_rps is not None:
            served = m.throughput_rps or 0.0
            if m.offered_rps is None:
                worst = max(worst, 1.0 - served / (self.target_rps * THROUGHPUT_TOLERANCE))
            else:
                # The server kept up with what it was offered, and that was the target load (a
                # generator that could not produce the load never passes).
                offered = max(m.offered_rps, 0.0)
                kept_up = served / offered if offered > 0 else 0.0
                worst = max(
                    worst,
                    1.0 - kept_up / THROUGHPUT_TOLERANCE,
                    1.0 - offered / (self.target_rps * THROUGHPUT_TOLERANCE),
                )
        return max(worst, 0.0)

    def feasible(self, m: Measurement) -> bool:
        return self.violation(m) == 0.0

    def value(self, m: Measurement) -> float | None:
        """The objective value of a feasible measurement, ``None`` when infeasible."""
        if not self.feasible(m):
            return None
        if self.direction == "minimize":
            return m.cost_per_hour
        return m.rps_per_cost

    def better(self, a: float, b: float) -> bool:
        """True when objective value ``a`` is strictly better than ``b``."""
        return a < b if self.direction == "minimize" else a > b

    def within(self, value: float, optimum: float, fraction: float) -> bool:
        """True when ``value`` is within ``fraction`` (0.01 = 1%) of ``optimum``."""
        if self.direction == "minimize":
            return value <= optimum * (1.0 + fraction) + 1e-12
        return value >= optimum * (1.0 - fraction) - 1e-12
