"""The trial record: what a study stores on its trials and on itself, written and read here only.

A trial's params are a :class:`Config`. A finished trial's user attrs hold the whole
:class:`Measurement` (``measurement``), its ``violation`` (0 when feasible), ``feasible``, and
``repeat`` when it only re-told a config measured before, plus readable copies for Optuna's own
tools (``config`` key, ``p99_ms``, ``throughput_rps``, ``cost_per_hour`` and, for a failed
deployment, its ``error``). Where the objective has a constraint (a SLO or a target load:
every ``autoconf search``) the violation is also Optuna's own constraint (the ``constraints``
system attr that its samplers, ``study.best_trial`` and optuna-dashboard read), so plain Optuna
never reports an infeasible or failed trial as the best. Where model variants are searched,
the measurement holds its variant's accuracy against FP32 and the trial a readable
``accuracy_drop``. A trial whose config an earlier out-of-memory rules out (:mod:`autoconf._implied`) is completed unmeasured: it holds no
``measurement``, only ``inferred_from`` (the trial number of that out-of-memory), its ``error``
(the reason) and the violation and value a failed deployment tells, so every sampler learns the
region fails without anything being measured or invented. A
running trial holds the ``worker`` that asked it and, once that worker measures it, a ``claim``
on its config (so that parallel workers, threads or processes on one storage, never measure a
config twice). The study's own attrs hold the search's target and its re-measurements
(``validations``, and the ``rejected`` configs that did not hold).
"""

from __future__ import annotations

import warnings
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.samplers._base import _CONSTRAINTS_KEY
from optuna.trial import FrozenTrial, TrialState

from ._objective import Objective
from ._space import SearchSpace
from ._types import Config, Measurement

#: Violation told for a failed deployment (finite: samplers fit models on it).
FAILED_VIOLATION = 10.0

MEASUREMENT = "measurement"
VIOLATION = "violation"
FEASIBLE = "feasible"
REPEAT = "repeat"
WORKER = "worker"
CLAIM = "claim"
REJECTED = "rejected"
VALIDATIONS = "validations"
#: Readable copies of a measurement, one user attr each (optuna-dashboard's trial table).
CONFIG = "config"
READABLE = ("p99_ms", "throughput_rps", "cost_per_hour")
ERROR = "error"
#: The study's input dims (``--dim``): its trials are comparable only at the same shapes.
DIMS = "dims"
#: A model variant's accuracy against FP32 (``{metric, drop, samples}``, see
#: :mod:`autoconf._variants`): in the measurement's ``extra`` and, readable, on the trial.
ACCURACY = "accuracy"
ACCURACY_DROP = "accuracy_drop"
INFERRED = "inferred_from"

Trial = FrozenTrial | optuna.trial.Trial


def distributions(space: SearchSpace) -> dict[str, BaseDistribution]:
    """One categorical distribution per dimension, in the space's order."""
    return {d: CategoricalDistribution(space.values(d)) for d in space.dimension_names}


def config_of(trial: Trial) -> Config:
    return Config.from_dict(dict(trial.params))


def violation_of(trial: FrozenTrial) -> list[float]:
    """Optuna ``constraints_func``: feasible when every value is <= 0."""
    return [float(trial.user_attrs.get(VIOLATION, FAILED_VIOLATION))]


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
    *,
    repeat: bool = False,
) -> None:
    """Store a finished measurement on its trial and complete it (``repeat``: a config measured
    before, told its stored result)."""
    violation = objective.violation(m)
    told = min(violation, FAILED_VIOLATION)
    trial.set_user_attr(MEASUREMENT, m.to_dict())
    trial.set_user_attr(VIOLATION, told)
    trial.set_user_attr(FEASIBLE, violation == 0.0)
    trial.set_user_attr(CONFIG, config_of(trial).key())
    for name in READABLE:
        trial.set_user_attr(name, getattr(m, name))
    if m.error:
        trial.set_user_attr(ERROR, m.error)
    accuracy = accuracy_of(m)
    if accuracy is not None:
        trial.set_user_attr(ACCURACY_DROP, accuracy.get("drop"))
    if repeat:
        trial.set_user_attr(REPEAT, True)
    if objective.constrained:
        # the list format a ``constraints_func`` writes (read by every Optuna since 3.0 and by
        # optuna-dashboard); the same value, so constrained samplers see what they saw before
        study._storage.set_trial_system_attr(trial._trial_id, _CONSTRAINTS_KEY, (told,))
    study.tell(trial, value_for_sampler(objective, m))


def set_accuracy(m: Measurement, accuracy: dict[str, Any]) -> None:
    """Tag ``m`` with the accuracy of the variant it measured (stored with it by :func:`tell`)."""
    m.extra[ACCURACY] = dict(accuracy)


def accuracy_of(m: Measurement) -> dict[str, Any] | None:
    """The accuracy of the variant ``m`` measured (``{metric, drop, samples}``), where known."""
    value = m.extra.get(ACCURACY)
    return dict(value) if isinstance(value, dict) else None


def tell_inferred(
    study: optuna.Study,
    trial: optuna.trial.Trial,
    objective: Objective,
    cost_per_hour: float,
    cause_trial: int,
    reason: str,
) -> None:
    """Complete ``trial`` as infeasible without measuring it: an out-of-memory of trial
    ``cause_trial`` implies its config fails (``reason`` says so). It holds no measurement
    (:func:`measurement_of` is None), so nothing counts it as measured; samplers are told what a
    failed deployment tells them."""
    trial.set_user_attr(INFERRED, int(cause_trial))
    trial.set_user_attr(ERROR, f"not measured: {reason}")
    trial.set_user_attr(VIOLATION, FAILED_VIOLATION)
    trial.set_user_attr(FEASIBLE, False)
    trial.set_user_attr(CONFIG, config_of(trial).key())
    if objective.constrained:
        study._storage.set_trial_system_attr(trial._trial_id, _CONSTRAINTS_KEY, (FAILED_VIOLATION,))
    failed = Measurement.failed(reason, cost_per_hour)
    study.tell(trial, value_for_sampler(objective, failed))


def inferred_of(trial: FrozenTrial) -> int | None:
    """The trial whose out-of-memory ruled this unmeasured trial's config out, if it is one."""
    value = trial.user_attrs.get(INFERRED)
    return None if value is None else int(value)


def inferred_trials(study: optuna.Study) -> list[tuple[FrozenTrial, int]]:
    """Every trial completed unmeasured as implied out of memory, with its cause's number."""
    out = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        cause = inferred_of(t)
        if cause is not None:
            out.append((t, cause))
    return out


def numbered_measurements(study: optuna.Study) -> list[tuple[int, Config, Measurement]]:
    """``(trial number, config, measurement)`` of every measured trial (what
    :class:`autoconf._implied.ImpliedFailures` learns from)."""
    return [(t.number, config_of(t), m) for t, m in measured_trials(study)]


def metric_name(objective: Objective) -> str:
    """The objective's name in Optuna (``study.set_metric_names``): what the value is."""
    return "cost_per_hour_usd" if objective.direction == "minimize" else "rps_per_usd_per_hour"


def set_metric_name(study: optuna.Study, objective: Objective) -> None:
    with warnings.catch_warnings():  # experimental since Optuna 3.2, stable in use
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([metric_name(objective)])


def measurement_of(trial: FrozenTrial) -> Measurement | None:
    """The measurement a trial made: None unless it is complete, holds one and is no repeat."""
    if trial.state != TrialState.COMPLETE or MEASUREMENT not in trial.user_attrs:
        return None
    if trial.user_attrs.get(REPEAT):
        return None
    return Measurement.from_dict(trial.user_attrs[MEASUREMENT])


def feasible_of(trial: FrozenTrial) -> bool:
    return bool(trial.user_attrs.get(FEASIBLE))


def stored_violation(trial: FrozenTrial) -> float:
    """The violation stored on a measured trial (0.0 when none was stored)."""
    return float(trial.user_attrs.get(VIOLATION, 0.0))


def measured_trials(study: optuna.Study) -> list[tuple[FrozenTrial, Measurement]]:
    """Every trial that measured a config (repeats and failed/interrupted trials left out), in
    trial order."""
    out = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        m = measurement_of(t)
        if m is not None:
            out.append((t, m))
    return out


def stored_distributions(study: optuna.Study) -> dict[str, BaseDistribution]:
    """Each param's distribution as the study's trials stored it (the first trial holding it):
    a resumed study can only be asked with the same ones (Optuna refuses others)."""
    out: dict[str, BaseDistribution] = {}
    for t in study.get_trials(deepcopy=False):
        for name, dist in t.distributions.items():
            out.setdefault(name, dist)
    return out


def measured_configs(study: optuna.Study) -> dict[Config, Measurement]:
    """Every config with a stored measurement, from the study's finished trials (for resume)."""
    out: dict[Config, Measurement] = {}
    for t, m in measured_trials(study):
        out.setdefault(config_of(t), m)
    return out


# -- claims of parallel workers -------------------------------------------------------------


def set_worker(trial: optuna.trial.Trial, worker: str) -> None:
    trial.set_user_attr(WORKER, worker)


def worker_of(trial: FrozenTrial) -> str:
    return str(trial.user_attrs.get(WORKER, ""))


def set_claim(trial: optuna.trial.Trial, config: Config) -> None:
    trial.set_user_attr(CLAIM, config.key())


def has_claim(trial: FrozenTrial) -> bool:
    return bool(trial.user_attrs.get(CLAIM))


# -- study-level attrs ------------------------------------------------------------------------


def set_target(
    study: optuna.Study,
    objective: Objective,
    space: str,
    model_sha256: str,
    dims: dict[str, int] | None = None,
) -> None:
    """What the study searches for: its SLO, load, space, model and the model's input dims."""
    for key, value in (
        ("slo_p99_ms", objective.slo_p99_ms),
        ("target_rps", objective.target_rps),
        ("space", space),
        ("model_sha256", model_sha256),
        (DIMS, dict(sorted((dims or {}).items()))),
    ):
        study.set_user_attr(key, value)


def dims_of(study: optuna.Study) -> dict[str, int] | None:
    """The input dims the study's trials were measured at (None: a study from before they were
    stored)."""
    value = study.user_attrs.get(DIMS)
    return dict(value) if isinstance(value, dict) else None


def rejected_of(study: optuna.Study) -> set[str]:
    """Keys of the configs that did not hold when re-measured."""
    return set(study.user_attrs.get(REJECTED, []))


def set_rejected(study: optuna.Study, rejected: set[str]) -> None:
    study.set_user_attr(REJECTED, sorted(rejected))


def validations_of(study: optuna.Study) -> list[dict[str, Any]]:
    """Every re-measurement of a best config, in order (see :func:`validation_entry`)."""
    return list(study.user_attrs.get(VALIDATIONS, []))


def set_validations(study: optuna.Study, validations: list[dict[str, Any]]) -> None:
    study.set_user_attr(VALIDATIONS, validations)


def validation_entry(config: Config, target_rps: float, holds: bool, m: Measurement) -> dict:
    """One re-measurement as stored on the study (and shown in the report)."""
    return {
        "config": config.to_dict(),
        "target_rps": target_rps,
        "holds": holds,
        "p99_ms": m.p99_ms,
        "throughput_rps": m.throughput_rps,
        "error": m.error,
        "measurement": m.to_dict(),  # the whole re-measurement: another process may reuse it
        "stable": m.stable,
        "throughput_spread": m.throughput_spread,
        "latency_spread": m.latency_spread,
        "unstable_reasons": list(m.unstable_reasons),
    }
