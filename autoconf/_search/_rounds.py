"""Search rounds: search part of the budget, re-measure the best configs, and search on until
one holds, the budget or the space is spent, or the stopping rule says nothing better is left.
The space is spent when every config is measured or ruled out by an out-of-memory
(:mod:`autoconf._implied`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import optuna

from .. import _record as record
from .._implied import ConfigArrays, ImpliedFailures
from .._notation import short
from .._objective import Objective
from .._progress import SearchProgress
from .._report import trial_records
from .._space import SearchSpace
from .._study import run_trials
from .._types import Config, Measurement
from ._remeasure import Chosen, Remeasurements, Validator, ranked
from ._sampler import fixed_replicas


@dataclass
class Rounds:
    """How the rounds ended."""

    outcome: str  # "plan" | "infeasible" | "unvalidated"
    chosen: Chosen | None
    new_evaluations: int
    remeasured: Remeasurements


def run_rounds(
    study: optuna.Study,
    space: SearchSpace,
    objective: Objective,
    evaluators: list[Callable[[Config], Measurement]],
    validator: Validator,
    remeasured: Remeasurements,
    progress: SearchProgress,
    *,
    remaining: int,
    seed: int,
    should_stop: Callable[[optuna.Study], bool],
) -> Rounds:
    """Alternate search and re-measurement (see the module docstring)."""
    new_evals = 0
    fixed = fixed_replicas(space, objective)
    how = "" if fixed is None else f"; replicas fixed at {fixed}: no --qps"
    while True:
        progressed = False
        if remaining > 0:
            progress.set_status(f"searching ({remaining} configs left in the budget{how})")
            log = run_trials(
                study,
                space,
                objective,
                evaluators,
                remaining,
                workers=len(evaluators),
                seed=seed + new_evals,
                on_evaluation=progress.update,
                should_stop=should_stop,
            )
            remaining -= len(log.evaluations)
            new_evals += len(log.evaluations)
            progressed = bool(log.evaluations)
        records = trial_records(study, objective)
        candidates = ranked(records, objective, remeasured.rejected)
        chosen = remeasured.first_that_holds(study, candidates, validator, progress.set_status)
        if chosen is not None:
            return Rounds("plan", chosen, new_evals, remeasured)
        unmeasured = space.size() - len(settled(study, space))
        if (
            remaining <= 0
            or unmeasured <= 0
            or not progressed
            or (not candidates and should_stop(study))
        ):
            outcome = "unvalidated" if remeasured.rejected else "infeasible"
            return Rounds(outcome, None, new_evals, remeasured)


def settled(study: optuna.Study, space: SearchSpace) -> set[Config]:
    """Configs of ``space`` measured, or ruled out by an out-of-memory of the study."""
    measured = record.numbered_measurements(study)
    done = {c for _, c, _ in measured if space.contains(c)}
    implied = ImpliedFailures.of(space, measured)
    if implied:
        configs = space.configs()
        mask = implied.mask(ConfigArrays(space, configs))
        done |= {c for c, hit in zip(configs, mask) if hit}
    return done


def ruled_out_notes(study: optuna.Study, space: SearchSpace) -> list[str]:
    """One line per out-of-memory of the study: how many unmeasured configs of ``space`` it
    ruled out (for the report and the plan; those configs were never measured)."""
    measured = record.numbered_measurements(study)
    implied = ImpliedFailures.of(space, measured)
    if not implied:
        return []
    configs = space.configs()
    arrays = ConfigArrays(space, configs)
    seen = {c for _, c, _ in measured}
    suggested: dict[int, int] = {}
    for _, cause in record.inferred_trials(study):
        suggested[cause] = suggested.get(cause, 0) + 1
    out, ruled = [], set(seen)
    for oom in implied.ooms:
        new = {c for c, hit in zip(configs, oom.mask(arrays)) if hit} - ruled
        ruled |= new
        asked = suggested.get(oom.trial, 0)
        out.append(
            f"out of memory in trial #{oom.trial} ({short(oom.config)}): {len(new)} more "
            "config(s) that need at least as much memory ruled out, never measured"
            + (f" ({asked} suggestion(s) of them answered without measuring)" if asked else "")
        )
    return out
