"""Re-measurement of the best configs at the target load, on their full deployment, before a
plan is written: a config is chosen only when it holds again."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import optuna

from .. import _record as record
from .._objective import Objective
from .._report import TrialRecord, trial_records
from .._types import Config, Load, Measurement

#: How many of the best feasible configs are re-measured per round before searching on.
VALIDATIONS_PER_ROUND = 3
#: Objective values this close (a fraction) are a tie between processes sharing a study: the
#: plan another process settled on first is kept.
AGREE_WITHIN = 0.02
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
        """Re-measure ``candidates`` best first until one holds; the others are rejected.

        Re-measurements stored by another process on the same study count as ours: a config
        that held there is chosen without measuring it again, one rejected there is skipped (so
        processes sharing a study write the same plan)."""
        tried = 0
        for rec in candidates:
            if tried >= VALIDATIONS_PER_ROUND:
                break
            self.refresh(study)
            key = rec.config.key()
            if key in self.rejected:
                continue
            target = validator.target_for(rec.measurement)
            held = self.held(rec.config, target)
            if held is not None:
                return Chosen(rec, held, float(target or 0.0))
            tried += 1
            on_status(f"re-measuring the best config {key}")
            holds, m, rps = validator(rec.config, rec.measurement)
            self.refresh(study)
            self.validations.append(record.validation_entry(rec.config, rps, holds, m))
            record.set_validations(study, self.validations)
            if holds:
                return self.better_held(study, validator, rec) or Chosen(rec, m, rps)
            self.rejected.add(key)
            record.set_rejected(study, self.rejected)
        return None

    def refresh(self, study: optuna.Study) -> None:
        """Add what other processes stored on the study since we last read it."""
        stored = record.validations_of(study)
        seen = {_entry_key(v) for v in stored}
        self.validations = stored + [v for v in self.validations if _entry_key(v) not in seen]
        self.rejected |= record.rejected_of(study)

    def better_held(
        self, study: optuna.Study, validator: Validator, ours: TrialRecord
    ) -> Chosen | None:
        """The study's plan when another process sharing it settled on one first: the earliest
        stored re-measurement that held for a config as good as ``ours`` (within
        :data:`AGREE_WITHIN`, on every trial stored now). None when ours is that config, or
        none is as good: processes that re-measured at the same time then write the same plan,
        and a resumed search that found a clearly better config still picks it."""
        self.refresh(study)
        objective = validator.objective
        records = {r.config: r for r in trial_records(study, objective)}
        for v in self.validations:
            rec = records.get(Config.from_dict(v.get("config", {})))
            if not v.get("holds") or rec is None or rec.value is None:
                continue
            if rec.config == ours.config:
                return None
            if rec.config.key() in self.rejected or ours.value is None:
                continue
            if not objective.within(rec.value, ours.value, AGREE_WITHIN):
                continue
            target = validator.target_for(rec.measurement)
            held = self.held(rec.config, target)
            if held is not None:
                return Chosen(rec, held, float(target or 0.0))
        return None

    def held(self, config: Config, target_rps: float | None) -> Measurement | None:
        """The stored re-measurement of ``config`` that held at ``target_rps``, if any."""
        if target_rps is None:
            return None
        for v in self.validations:
            if (
                v.get("holds")
                and v.get("config") == config.to_dict()
                and abs(float(v.get("target_rps") or 0.0) - target_rps) <= 1e-6 * target_rps
                and isinstance(v.get("measurement"), dict)
            ):
                return Measurement(**v["measurement"])
        return None


def _entry_key(v: dict[str, Any]) -> tuple:
    return (json.dumps(v.get("config"), sort_keys=True), v.get("target_rps"), v.get("holds"))


def ranked(
    records: list[TrialRecord], objective: Objective, rejected: set[str]
) -> list[TrialRecord]:
    """Feasible configs not rejected, best first (ties: lower p99)."""
    feasible = [r for r in records if r.value is not None and r.config.key() not in rejected]
    sign = 1.0 if objective.direction == "minimize" else -1.0

    def key(r: TrialRecord) -> tuple[float, float]:
        assert r.value is not None  # feasible records only
        return (sign * r.value, r.measurement.p99_ms or 0.0)

    return sorted(feasible, key=key)
