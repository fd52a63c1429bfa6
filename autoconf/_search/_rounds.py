"""Search rounds: search part of the budget, re-measure the best configs, and search on until
one holds, the budget or the space is spent, or the stopping rule says nothing better is left."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import optuna

from .._objective import Objective
from .._progress import SearchProgress
from .._record import measured_configs
from .._report import trial_records
from .._space import SearchSpace
from .._study import run_trials
from .._types import Config, Measurement
from ._remeasure import Chosen, Remeasurements, Validator, ranked


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
    while True:
        progressed = False
        if remaining > 0:
            progress.set_status(f"searching ({remaining} configs left in the budget)")
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
        unmeasured = space.size() - len(measured_configs(study))
        if (
            remaining <= 0
            or unmeasured <= 0
            or not progressed
            or (not candidates and should_stop(study))
        ):
            outcome = "unvalidated" if remeasured.rejected else "infeasible"
            return Rounds(outcome, None, new_evals, remeasured)
