"""The one ask/tell loop, run by ``autoconf search`` and ``autoconf bench`` alike.

An Optuna study holds every trial (so storage, resume and parallel workers come from Optuna);
what a trial stores is the trial record (:mod:`autoconf._record`). ``workers`` threads share the
study and its sampler; one worker is the serial case (the benchmark's). A config already
measured is never measured again: a repeated suggestion is told the stored result and does not
count as an evaluation. Nor is a config that an out-of-memory measured earlier rules out
(:mod:`autoconf._implied`, read from the study's measurements, so also after ``--resume``): such
a suggestion is completed unmeasured, marked as inferred from that trial
(:func:`autoconf._record.tell_inferred`), and the sampler asked again. This holds for every
sampler: the rule is a fact about memory, not a belief of one surrogate.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import optuna
from optuna.trial import TrialState

from . import _record as record
from ._implied import ConfigArrays, ImpliedFailures, OutOfMemory
from ._objective import Objective
from ._record import config_of, distributions
from ._space import SearchSpace
from ._types import Config, Measurement

logger = logging.getLogger(__name__)

#: After this many repeated suggestions in a row the loop measures a random unmeasured config
#: instead (counted as an evaluation), so a converged sampler cannot stall a search.
MAX_REPEATS_IN_A_ROW = 20

Evaluate = Callable[[Config], Measurement]


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
    #: suggestions of a config an earlier out-of-memory rules out (completed unmeasured)
    implied: int = 0
    #: suggestions of a config another worker was measuring (parallel runs only)
    collisions: int = 0

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
        record.tell(study, trial, objective, m)
        e = Evaluation(len(self.evaluations) + 1, config, m, objective.value(m))
        self.evaluations.append(e)
        if on_evaluation is not None:
            on_evaluation(e)

    def best(self, objective: Objective) -> Evaluation | None:
        best = None
        for e in self.evaluations:
            if e.value is None:
                continue
            if best is None or best.value is None or objective.better(e.value, best.value):
                best = e
        return best


def worker_id() -> str:
    """This thread's name on a shared storage: host, process and thread."""
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


def fail_stale_trials(study: optuna.Study) -> int:
    """Mark RUNNING trials left by a dead process of this host as FAIL (for ``--resume``).

    Trials of live processes or other hosts (a shared team store) are left alone. Returns how
    many were failed.
    """
    host = socket.gethostname()
    failed = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        parts = record.worker_of(t).split(":")
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
    if failed:
        logger.info("failed %d trial(s) left running by a dead process", failed)
    return failed


class _Loop:
    """The state the workers of one :func:`run_trials` share (always used under ``lock``)."""

    def __init__(
        self,
        study: optuna.Study,
        space: SearchSpace,
        objective: Objective,
        budget: int,
        seed: int,
        on_evaluation: Callable[[Evaluation], None] | None,
        should_stop: Callable[[optuna.Study], bool] | None,
        stop: threading.Event,
    ) -> None:
        self.study, self.space, self.objective = study, space, objective
        self.budget = budget
        self.on_evaluation, self.should_stop = on_evaluation, should_stop
        self.stop = stop
        self.dists = distributions(space)
        self.lock = threading.Lock()
        self.log = SearchLog()
        self.rng = random.Random(seed)
        self.total = space.size()
        self.measured: dict[Config, Measurement] = {}
        self.implied = ImpliedFailures(space)
        #: configs of the space the out-of-memories rule out (recomputed when one is added)
        self.implied_configs: set[Config] = set()
        self._space_configs: list[Config] | None = None
        self._space_arrays: ConfigArrays | None = None
        self.refresh()
        self.in_flight: set[Config] = set()
        #: trials being measured, by config (failed at once on an interrupt)
        self.running: dict[Config, optuna.trial.Trial] = {}
        #: set on Ctrl-C: a measurement that returns after it is never stored (the teardown
        #: that follows an interrupt can make a measurement fail; that failure is not a result)
        self.interrupted = threading.Event()
        self.repeats_in_a_row = 0
        self.claimed = 0
        self.errors: list[BaseException] = []

    def refresh(self) -> None:
        """Read every measurement stored on the study (this run, an earlier run of it, other
        processes on the same storage) and what its out-of-memories rule out."""
        grew = False
        for number, config, m in record.numbered_measurements(self.study):
            self.measured.setdefault(config, m)
            grew |= self.implied.add(number, config, m)
        if grew:
            self._recount_implied()

    def learn(self, number: int, config: Config, m: Measurement) -> None:
        """A measurement of this process, stored as trial ``number``."""
        self.measured[config] = m
        if self.implied.add(number, config, m):
            self._recount_implied()

    def _recount_implied(self) -> None:
        if self._space_configs is None:
            self._space_configs = self.space.configs()
            self._space_arrays = ConfigArrays(self.space, self._space_configs)
        assert self._space_arrays is not None
        mask = self.implied.mask(self._space_arrays)
        self.implied_configs = {c for c, hit in zip(self._space_configs, mask) if hit}

    def left(self) -> int:
        """Configs nobody measured, is measuring, or knows to fail."""
        ruled_out = len(self.implied_configs - self.measured.keys() - self.in_flight)
        return self.total - len(self.measured) - len(self.in_flight) - ruled_out

    def claimed_elsewhere(self) -> set[Config]:
        """Configs other workers (any process on this storage) have claimed and not finished."""
        running = self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        return {config_of(t) for t in running if record.has_claim(t)}

    def rival(self, number: int, config: Config) -> Measurement | bool:
        """After writing our claim: a stored measurement of ``config``, or True when another
        trial holds a claim on it (then both may back off; never both measure), else False."""
        states = (TrialState.RUNNING, TrialState.COMPLETE)
        for t in self.study.get_trials(deepcopy=False, states=states):
            if t.number == number or len(t.params) != len(self.dists) or config_of(t) != config:
                continue
            if t.state == TrialState.COMPLETE:
                m = record.measurement_of(t)
                if m is not None:
                    return m
            elif record.has_claim(t):
                return True
        return False

    def claim(self, worker: str) -> tuple[optuna.trial.Trial, Config] | None:
        """Ask until a config nobody measured or is measuring comes up (under the lock).

        Across processes a claim is written before the storage is read back (write, then read):
        of two workers racing for one config at least one sees the other and backs off.
        """
        while True:
            if self.stop.is_set() or self.claimed >= self.budget:
                return None
            self.refresh()  # other processes, same storage
            if self.left() <= 0:
                return None
            trial = self.study.ask(fixed_distributions=self.dists)
            config = config_of(trial)
            cause = None if config in self.measured else self.implied.cause(config)
            try:
                record.set_worker(trial, worker)
                taken = config in self.in_flight
                if config not in self.measured and not taken and cause is None:
                    record.set_claim(trial, config)
                    found = self.rival(trial.number, config)
                    if isinstance(found, Measurement):
                        self.measured[config] = found
                    taken = found is True
            except optuna.exceptions.UpdateFinishedTrialError:
                continue  # another process popped the same enqueued trial (SQLite) and owns it
            if config in self.measured or taken or cause is not None:
                if not self.repeat(trial, config, cause):
                    return None
                continue
            self.repeats_in_a_row = 0
            self.claimed += 1
            self.in_flight.add(config)
            self.running[config] = trial
            return trial, config

    def repeat(self, trial: optuna.trial.Trial, config: Config, cause: OutOfMemory | None) -> bool:
        """A suggestion of a measured, taken or ruled-out (``cause``) config: tell its stored
        result, fail it, or complete it unmeasured as inferred from ``cause``; after too many in a
        row enqueue a free config instead. False when none is free."""
        self.repeats_in_a_row += 1
        if config in self.measured:
            self.log.repeats += 1
        elif cause is not None:
            self.log.implied += 1
            logger.info("not measuring %s: %s", config.key(), cause.reason())
        else:
            self.log.collisions += 1
        stalled = self.repeats_in_a_row >= MAX_REPEATS_IN_A_ROW
        if config in self.measured and not stalled:
            record.tell(self.study, trial, self.objective, self.measured[config], repeat=True)
        elif cause is not None:
            cost = self.space.cost_per_hour(config)
            record.tell_inferred(
                self.study, trial, self.objective, cost, cause.trial, cause.reason()
            )
        else:
            self.study.tell(trial, state=TrialState.FAIL)
        if not stalled:
            return True
        # stalled: the sampler keeps suggesting taken configs; measure a free one
        busy = self.in_flight | self.claimed_elsewhere() | self.implied_configs
        free = [c for c in self.space.configs() if c not in self.measured and c not in busy]
        if not free:
            return False
        self.repeats_in_a_row = 0
        self.study.enqueue_trial(self.rng.choice(free).to_dict(), skip_if_exists=False)
        return True

    def work(self, evaluate: Evaluate) -> None:
        """One worker: claim, measure, record, until the budget, the space or a stop ends it.
        A trial whose evaluation raises (Ctrl-C) is failed and ends every worker."""
        worker = worker_id()
        while True:
            with self.lock:
                claimed = self.claim(worker)
            if claimed is None:
                return
            trial, config = claimed
            try:
                m = evaluate(config)
            except BaseException as exc:
                with self.lock:
                    self.stop.set()
                    self.errors.append(exc)
                    self.finish_failed(config)
                return
            with self.lock:
                if self.interrupted.is_set():  # measured while shutting down: not a result
                    self.finish_failed(config)
                    return
                self.in_flight.discard(config)
                self.running.pop(config, None)
                self.learn(trial.number, config, m)
                self.log.record(self.study, trial, self.objective, config, m, self.on_evaluation)
                if self.should_stop is not None and self.should_stop(self.study):
                    self.stop.set()

    def finish_failed(self, config: Config) -> None:
        """Fail the trial measuring ``config`` (under the lock), unless it already was."""
        self.in_flight.discard(config)
        trial = self.running.pop(config, None)
        if trial is not None:
            self.study.tell(trial, state=TrialState.FAIL)

    def interrupt(self) -> None:
        """Ctrl-C: stop every worker and fail the trials being measured, so that ``--resume``
        measures them again and a measurement cut short by the teardown is never stored."""
        self.interrupted.set()
        self.stop.set()
        if not self.lock.acquire(timeout=10.0):  # a worker stuck in a storage write
            logger.warning("interrupted: in-flight trials left RUNNING (--resume fails them)")
            return
        try:
            for config in list(self.running):
                self.finish_failed(config)
        finally:
            self.lock.release()


def run_trials(
    study: optuna.Study,
    space: SearchSpace,
    objective: Objective,
    evaluate: Evaluate | list[Evaluate],
    budget: int,
    *,
    workers: int = 1,
    seed: int = 0,
    on_evaluation: Callable[[Evaluation], None] | None = None,
    should_stop: Callable[[optuna.Study], bool] | None = None,
    stop_event: threading.Event | None = None,
) -> SearchLog:
    """Ask, evaluate and tell until ``budget`` distinct configs are measured (or a stop).

    ``workers`` threads share the study and its sampler; ``evaluate`` is one callable, or one
    per worker (a backend each). Under one lock a worker asks a trial and claims its config; a
    config already measured (in this run, an earlier run of the study, or by another process on
    the same storage) is told its stored result (a repeat); a config another worker is measuring
    is never measured concurrently: the trial is failed and another is asked. ``should_stop``
    is consulted after every evaluation; ``stop_event`` ends every worker after its current
    evaluation. The first exception of an evaluation (Ctrl-C included) is raised once every
    worker has stopped.
    """
    evaluators = evaluate if isinstance(evaluate, list) else [evaluate] * workers
    if len(evaluators) < workers:
        raise ValueError("need one evaluate callable per worker")
    stop = stop_event if stop_event is not None else threading.Event()
    loop = _Loop(study, space, objective, budget, seed, on_evaluation, should_stop, stop)
    if workers == 1:
        loop.work(evaluators[0])
    else:
        threads = [
            threading.Thread(target=loop.work, args=(evaluators[i],), daemon=True)
            for i in range(workers)
        ]
        try:  # a Ctrl-C while the workers start stops them too
            for t in threads:
                t.start()
            for t in threads:
                while t.is_alive():
                    t.join(timeout=0.2)
        except KeyboardInterrupt:
            loop.interrupt()
            raise
    if loop.errors:
        raise loop.errors[0]
    return loop.log


__all__ = [
    "MAX_REPEATS_IN_A_ROW",
    "Evaluation",
    "SearchLog",
    "fail_stale_trials",
    "run_trials",
    "worker_id",
]
