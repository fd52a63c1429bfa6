"""Re-measurement of the best configs at the target load, on their full deployment, before a
plan is written: a config is chosen only when it holds again."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import optuna

from .. import _record as record
from .._objective import Objective
from .._report import TrialRecord
from .._types import Config, Load, Measurement

#: How many of the best feasible configs are re-measured per round before searching on.
VALIDATIONS_PER_ROUND = 3
#: Without ``--qps`` the plan is validated at this fraction of the measured capacity.
CAPACITY_HEADROOM = 0.9


class Validator:
    """Re-measures candidates at the target load on their full deployment."""

    def __init__(self, backend: Any, profile: Any, objective: Objective, duration_s: float):
        self.backend = backend
        self.profile = profile
        self.objective = objective
        self.duration_s = duration_s

    def target_for(self, m: Measurement) -> float | None:
        if self.objective.target_rps is not None:
            return self.objective.target_rps
        rps = m.capacity_rps or m.throughput_rps
        return None if not rps else rps * CAPACITY_HEADROOM

    def __call__(self, config: Config, searched: Measurement) -> tuple[bool, Measurement, float]:
        target = self.target_for(searched)
        if target is None:
            return False, searched, 0.0
        load = Load(
            slo_p99_ms=self.objective.slo_p99_ms, target_rps=target, duration_s=self.duration_s
        )
        m = self.backend.evaluate(self.profile, config, load)
        holds = Objective(self.objective.slo_p99_ms, target).feasible(m)
        return holds, m, target


@dataclass
class Chosen:
    """The config a plan is written for, its re-measurement and the rate it held at."""

    record: TrialRecord
    validation: Measurement
    target_rps: float


@dataclass
class Remeasurements:
    """Every re-measurement of a study (stored on it, so a resumed search keeps them)."""

    rejected: set[str] = field(default_factory=set)
    validations: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def of(cls, study: optuna.Study) -> Remeasurements:
        return cls(record.rejected_of(study), record.validations_of(study))

    def first_that_holds(
        self,
        study: optuna.Study,
        candidates: list[TrialRecord],
        validator: Validator,
        on_status: Any,
    ) -> Chosen | None:
        """Re-measure ``candidates`` best first until one holds; the others are rejected."""
        for rec in candidates[:VALIDATIONS_PER_ROUND]:
            on_status(f"re-measuring the best config {rec.config.key()}")
            holds, m, rps = validator(rec.config, rec.measurement)
            self.validations.append(record.validation_entry(rec.config, rps, holds, m))
            record.set_validations(study, self.validations)
            if holds:
                return Chosen(rec, m, rps)
            self.rejected.add(rec.config.key())
            record.set_rejected(study, self.rejected)
        return None


def ranked(
    records: list[TrialRecord], objective: Objective, rejected: set[str]
) -> list[TrialRecord]:
    """Feasible configs not rejected, best first (ties: lower p99)."""
    feasible = [r for r in records if r.value is not None and r.config.key() not in rejected]
    sign = 1.0 if objective.direction == "minimize" else -1.0
    return sorted(feasible, key=lambda r: (sign * r.value, r.measurement.p99_ms or 0.0))
