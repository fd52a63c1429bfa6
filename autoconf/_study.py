"""The ask/tell loop shared by ``autoconf search`` and ``autoconf bench``.

An Optuna study holds every trial (so storage, resume and parallel workers come from Optuna).
Each trial's params are a :class:`Config`; its value is the objective, its user attrs hold the
whole :class:`Measurement` and a ``violation`` (0 when feasible) that constrained samplers read.
A config already measured is never measured again: a repeated suggestion is told the stored
result and does not count as an evaluation.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

import optuna
from optuna.distributions import CategoricalDistribution
from optuna.trial import FrozenTrial, TrialState

from ._objective import Objective
from ._space import SearchSpace
from ._types import Config, Measurement

#: After this many repeated suggestions in a row the loop measures a random unmeasured config
#: instead (counted as an evaluation), so a converged sampler cannot stall a search.
MAX_REPEATS_IN_A_ROW = 20
#: Violation told for a failed deployment (finite: samplers fit models on it).
FAILED_VIOLATION = 10.0


def distributions(space: SearchSpace) -> dict[str, CategoricalDistribution]:
    """One categorical distribution per dimension, in the space's order."""
    return {d: CategoricalDistribution(space.values(d)) for d in space.dimension_names}


def config_of(trial: FrozenTrial | optuna.trial.Trial) -> Config:
    return Config.from_dict(dict(trial.params))


def violation_of(trial: FrozenTrial) -> list[float]:
    """Optuna ``constraints_func``: feasible when every value is <= 0."""
    return [float(trial.user_attrs.get("violation", FAILED_VIOLATION))]


def value_for_sampler(objective: Objective, m: Measurement) -> float:
    """The number told to Optuna: the objective where defined, else a finite stand-in.

    Infeasible trials still carry a value (their cost, or their rps per dollar, 0 when unknown)
    so that samplers can fit on them; the ``violation`` attr marks them infeasible.
    """
    value = objective.value(m)
    if value is not None:
        return float(value)
    if objective.direction == "minimize":
        return float(m.cost_per_hour)
    return float(m.rps_per_cost or 0.0) if m.ok else 0.0


def tell(
    study: optuna.Study,
    trial: optuna.trial.Trial,
    objective: Objective,
    m: Measurement,
    **attrs: object,
) -> None:
    """Store a finished measurement on its trial and complete it."""
    violation = objective.violation(m)
    trial.set_user_attr("measurement", m.to_dict())
    trial.set_user_attr("violation", min(violation, FAILED_VIOLATION))
    trial.set_user_attr("feasible", violation == 0.0)
    for key, value in attrs.items():
        trial.set_user_attr(key, value)
    study.tell(trial, value_for_sampler(objective, m))


def measured_configs(study: optuna.Study) -> dict[Config, Measurement]:
    """Every config with a stored measurement, from the study's finished trials (for resume)."""
    out: dict[Config, Measurement] = {}
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if "measurement" in t.user_attrs and not t.user_attrs.get("repeat"):
            out.setdefault(config_of(t), Measurement(**t.user_attrs["measurement"]))
    return out


@dataclass
class Evaluation:
    """One counted evaluation: the n-th distinct config measured."""

    index: int
    config: Config
    measurement: Measurement
    value: float | None


@dataclass
class SearchLog:
    evaluations: list[Evaluation] = field(default_factory=list)
    repeats: int = 0

    def record(
        self,
        study: optuna.Study,
        trial: optuna.trial.Trial,
        objective: Objective,
        config: Config,
        m: Measurement,
        on_evaluation: Callable[[Evaluation], None] | None,
    ) -> None:
        """Store a finished measurement in the study (before anything else happens), count it
        as the next evaluation and report it."""
        tell(study, trial, objective, m)
        e = Evaluation(len(self.evaluations) + 1, config, m, objective.value(m))
        self.evaluations.append(e)
        if on_evaluation is not None:
            on_evaluation(e)

    def best(self, objective: Objective) -> Evaluation | None:
        best = None
        for e in self.evaluations:
            if e.value is not None and (best is None or objective.better(e.value, best.value)):
                best = e
        return best


def run_trials(
    study: optuna.Study,
    space: SearchSpace,
    objective: Objective,
    evaluate: Callable[[Config], Measurement],
    budget: int,
    *,
    seed: int = 0,
    on_evaluation: Callable[[Evaluation], None] | None = None,
    should_stop: Callable[[optuna.Study], bool] | None = None,
) -> SearchLog:
    """Ask, evaluate and tell until ``budget`` distinct configs are measured (or a stop).

    Configs measured in earlier runs of the same study are reused, never re-measured.
    """
    dists = distributions(space)
    measured = measured_configs(study)
    log = SearchLog()
    rng = random.Random(seed)
    repeats_in_a_row = 0
    total = space.size()
    while len(log.evaluations) < budget and len(measured) < total:
        trial = study.ask(fixed_distributions=dists)
        config = config_of(trial)
        if config in measured:
            repeats_in_a_row += 1
            log.repeats += 1
            if repeats_in_a_row < MAX_REPEATS_IN_A_ROW:
                tell(study, trial, objective, measured[config], repeat=True)
                continue
            study.tell(trial, state=TrialState.FAIL)
            config = rng.choice([c for c in space.configs() if c not in measured])
            study.enqueue_trial(config.to_dict(), skip_if_exists=False)
            trial = study.ask(fixed_distributions=dists)
        repeats_in_a_row = 0
        m = evaluate(config)
        measured[config] = m
        log.record(study, trial, objective, config, m, on_evaluation)
        if should_stop is not None and should_stop(study):
            break
    return log


def _worker_id() -> str:
    import os
    import socket
    import threading

    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


def fail_stale_trials(study: optuna.Study) -> int:
    """Mark RUNNING trials left by a dead process of this host as FAIL (for ``--resume``).

    Trials of live processes or other hosts (a shared team store) are left alone. Returns how
    many were failed.
    """
    import os
    import socket

    host = socket.gethostname()
    failed = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = str(t.user_attrs.get("worker", ""))
        parts = worker.split(":")
        if len(parts) < 2 or parts[0] != host:
            continue
        pid = int(parts[1])
        alive = True
        if pid != os.getpid():
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                alive = False
            except PermissionError:
                alive = True
        else:
            alive = False  # this process has not started a worker yet: the trial is orphaned
        if not alive:
            study.tell(t.number, state=TrialState.FAIL)
            failed += 1
    return failed


def run_trials_parallel(
    study: optuna.Study,
    space: SearchSpace,
    objective: Objective,
    evaluate: Callable[[Config], Measurement] | list[Callable[[Config], Measurement]],
    budget: int,
    *,
    workers: int = 1,
    seed: int = 0,
    on_evaluation: Callable[[Evaluation], None] | None = None,
    should_stop: Callable[[optuna.Study], bool] | None = None,
    stop_event: object | None = None,
) -> SearchLog:
    """:func:`run_trials` with ``workers`` threads sharing one study and one sampler.

    ``evaluate`` is one callable, or one per worker (a backend each). Under one lock a worker
    asks a trial and claims its config; a config already measured is told its stored result
    (a repeat), a config another worker (thread, or process on the same storage) is measuring
    is never measured concurrently: the trial is failed and another is asked. A trial whose
    evaluation raises (Ctrl-C) is failed, so the study keeps only finished measurements.
    ``stop_event`` (a ``threading.Event``) ends every worker after its current evaluation.
    """
    import threading

    evaluators = evaluate if isinstance(evaluate, list) else [evaluate] * workers
    if len(evaluators) < workers:
        raise ValueError("need one evaluate callable per worker")
    dists = distributions(space)
    lock = threading.Lock()
    stop = stop_event if stop_event is not None else threading.Event()
    log = SearchLog()
    rng = random.Random(seed)
    total = space.size()
    measured = measured_configs(study)
    in_flight: set[Config] = set()
    state = {"collisions": 0, "repeats_in_a_row": 0, "claimed": 0}
    errors: list[BaseException] = []

    def claimed_elsewhere() -> set[Config]:
        """Configs other workers (any process on this storage) have claimed and not finished."""
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        return {config_of(t) for t in running if t.user_attrs.get("claim")}

    def rival(number: int, config: Config) -> Measurement | bool:
        """After writing our claim: a stored measurement of ``config``, or True when another
        trial holds a claim on it (then both may back off; never both measure), else False."""
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.COMPLETE)):
            if t.number == number or len(t.params) != len(dists) or config_of(t) != config:
                continue
            if t.state == TrialState.COMPLETE:
                if "measurement" in t.user_attrs and not t.user_attrs.get("repeat"):
                    return Measurement(**t.user_attrs["measurement"])
            elif t.user_attrs.get("claim"):
                return True
        return False

    def claim(worker: str) -> tuple[optuna.trial.Trial, Config] | None:
        """Ask until a config nobody measured or is measuring comes up (under the lock).

        Across processes a claim is written before the storage is read back (write, then read):
        of two workers racing for one config at least one sees the other and backs off.
        """
        while True:
            if stop.is_set() or state["claimed"] >= budget:
                return None
            measured.update(measured_configs(study))  # other processes on the same storage
            if len(measured) + len(in_flight) >= total:
                return None
            trial = study.ask(fixed_distributions=dists)
            config = config_of(trial)
            try:
                trial.set_user_attr("worker", worker)
                taken = config in in_flight
                if config not in measured and not taken:
                    trial.set_user_attr("claim", config.key())
                    found = rival(trial.number, config)
                    if isinstance(found, Measurement):
                        measured[config] = found
                    taken = found is True
            except optuna.exceptions.UpdateFinishedTrialError:
                continue  # another process popped the same enqueued trial (SQLite) and owns it
            if config in measured or taken:
                state["repeats_in_a_row"] += 1
                if config in measured:
                    log.repeats += 1
                else:
                    state["collisions"] += 1
                if state["repeats_in_a_row"] < MAX_REPEATS_IN_A_ROW:
                    if config in measured:
                        tell(study, trial, objective, measured[config], repeat=True)
                    else:
                        study.tell(trial, state=TrialState.FAIL)
                    continue
                # stalled: the sampler keeps suggesting taken configs; measure a free one
                study.tell(trial, state=TrialState.FAIL)
                busy = in_flight | claimed_elsewhere()
                free = [c for c in space.configs() if c not in measured and c not in busy]
                if not free:
                    return None
                state["repeats_in_a_row"] = 0
                study.enqueue_trial(rng.choice(free).to_dict(), skip_if_exists=False)
                continue
            state["repeats_in_a_row"] = 0
            state["claimed"] += 1
            in_flight.add(config)
            return trial, config

    def work(evaluate_one: Callable[[Config], Measurement]) -> None:
        worker = _worker_id()
        while True:
            with lock:
                claimed = claim(worker)
            if claimed is None:
                return
            trial, config = claimed
            try:
                m = evaluate_one(config)
            except BaseException as exc:
                with lock:
                    in_flight.discard(config)
                    study.tell(trial, state=TrialState.FAIL)
                    stop.set()
                    errors.append(exc)
                return
            with lock:
                in_flight.discard(config)
                measured[config] = m
                log.record(study, trial, objective, config, m, on_evaluation)
                if should_stop is not None and should_stop(study):
                    stop.set()

    if workers == 1:
        work(evaluators[0])
    else:
        threads = [
            threading.Thread(target=work, args=(evaluators[i],), daemon=True)
            for i in range(workers)
        ]
        for t in threads:
            t.start()
        try:
            for t in threads:
                while t.is_alive():
                    t.join(timeout=0.2)
        except KeyboardInterrupt:
            stop.set()
            raise
    if errors:
        raise errors[0]
    return log
