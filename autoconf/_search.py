"""``autoconf search``: from an ONNX model and an SLO to a re-measured serving plan.

kops profile -> prior (from the knowledge base) -> sampler -> backend stress tests (ask/tell,
stored in Optuna storage one finished trial at a time) -> the best feasible configs are
re-measured at the target load, best first, until one holds -> plan.yaml, manifests/,
report.html, trials.csv. Every finished search is fed back into the knowledge base.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import importlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import yaml

from . import __version__
from ._errors import UserError
from ._objective import Objective
from ._plan import PLAN_FORMAT, sha256_of, write_plan
from ._progress import SearchProgress
from ._report import ReportContext, TrialRecord, trial_records, write_report, write_trials_csv
from ._space import SPACES_DIR, SearchSpace, load_space, space_path
from ._study import fail_stale_trials, measured_configs, run_trials_parallel, violation_of
from ._types import Config, Load, Measurement

#: Where finished searches are remembered to warm the prior of the next (``--knowledge``).
DEFAULT_KNOWLEDGE = Path.home() / ".autoconf" / "knowledge.db"
#: How many of the best feasible configs are re-measured per round before searching on.
VALIDATIONS_PER_ROUND = 3
#: Without ``--qps`` the plan is validated at this fraction of the measured capacity.
CAPACITY_HEADROOM = 0.9
#: How many runner-up configs a plan lists.
RUNNERS_UP = 3
#: The sampler's stopping rule is consulted only after this many configs (of this search).
MIN_EVALUATIONS_BEFORE_STOP = 3


@dataclass
class SearchOptions:
    """Everything ``autoconf search`` takes; units in the names."""

    model_path: Path
    slo_p99_ms: float
    target_rps: float | None = None
    space: str | None = None
    backend: str = "local"
    backend_options: dict[str, Any] = field(default_factory=dict)
    budget: int = 20
    parallel: int = 1
    storage: str | None = None
    out_dir: Path = Path("autoconf-out")
    resume: bool = False
    sampler: str | None = None
    seed: int = 0
    knowledge: str | None = None  # None: the default store; "none": no knowledge base
    duration_s: float = 10.0
    validate_duration_s: float | None = None
    command: str = ""
    progress: bool = True
    kserve: bool = False  # also write a KServe InferenceService


@dataclass
class SearchResult:
    outcome: str  # "plan" | "infeasible" | "unvalidated"
    out_dir: Path
    study_name: str
    storage: str
    records: list[TrialRecord]
    new_evaluations: int
    chosen: Config | None = None
    validation: Measurement | None = None
    plan_path: Path | None = None
    report_path: Path | None = None
    manifests: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def closest(self, n: int = 5) -> list[TrialRecord]:
        from ._report import closest

        return closest(self.records, n)


def _sampler_name(requested: str | None) -> str | None:
    from .samplers import SAMPLERS

    if requested:
        return requested
    for name in ("meta", "tpe"):
        if name in SAMPLERS:
            return name
    return None


def make_search_sampler(
    name: str | None,
    space: SearchSpace,
    objective: Objective,
    seed: int,
    features: Any = None,
    history: list[Any] | None = None,
) -> tuple[optuna.samplers.BaseSampler, str]:
    """The registered sampler ``name`` (default: meta, else tpe); Optuna's constrained TPE when
    no sampler is registered yet."""
    from .samplers import SamplerContext, make_sampler

    chosen = _sampler_name(name)
    if chosen is None:
        sampler = optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=5, constraints_func=violation_of, constant_liar=True
        )
        return sampler, "optuna-tpe"
    ctx = SamplerContext(
        space=space,
        objective=objective,
        seed=seed,
        target_features=features,
        history=list(history or []),
    )
    return make_sampler(chosen, ctx), chosen


def profile_model(model_path: Path) -> Any:
    """The kops profile of a model file (what the prior and the sim backend read)."""
    import kops

    return kops.profile(model_path)


def _knowledge_base(ref: str | None) -> Any | None:
    if ref is not None and ref.lower() == "none":
        return None
    try:
        prior = importlib.import_module("autoconf.prior")
        kb_cls = prior.KnowledgeBase
    except (ImportError, AttributeError):
        return None
    target = ref or str(DEFAULT_KNOWLEDGE)
    if "://" not in target:
        Path(target).parent.mkdir(parents=True, exist_ok=True)
    return kb_cls(target)


def _history(kb: Any, space: SearchSpace) -> list[Any]:
    """What the knowledge base measured on other models in this space (the prior's data)."""
    if kb is None:
        return []
    return list(kb.tables(space=space))


def kb_model_name(model_path: Path, sha: str) -> str:
    """A model's name in the knowledge base: its file stem and content hash."""
    return f"{model_path.stem}-{sha[:10]}"


def _feed_knowledge(
    kb: Any,
    name: str,
    profile: Any,
    space: SearchSpace,
    objective: Objective,
    records: list[TrialRecord],
) -> str | None:
    """Remember every measurement of this search; returns a note when it could not."""
    if kb is None:
        return None
    try:
        features = profile.features()
        import kops

        kb.add_model(name, features, profile.to_dict(), feature_version=str(kops.FEATURE_VERSION))
        for r in records:
            kb.add_measurement(name, space, r.config, r.measurement, objective)
    except Exception as exc:  # the plan is worth more than the memory of it
        return f"knowledge base not updated: {type(exc).__name__}: {exc}"
    return None


def _study_name(model_path: Path, sha: str, space: SearchSpace, objective: Objective) -> str:
    rps = f"{objective.target_rps:g}rps" if objective.target_rps is not None else "capacity"
    return f"{model_path.stem}-{sha[:10]}-{space.name}-p99_{objective.slo_p99_ms:g}ms-{rps}"


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def open_study(
    storage: str,
    name: str,
    objective: Objective,
    sampler: optuna.samplers.BaseSampler,
    resume: bool,
) -> optuna.Study:
    """Create the study, or load it with ``resume``; an existing study without ``resume`` is an
    error (it would silently mix two searches)."""
    try:
        existing = optuna.study.get_all_study_names(storage)
    except Exception as exc:
        raise UserError(f"--storage {_redact(storage)!r}: cannot open: {exc}") from None
    if name in existing and not resume:
        raise UserError(
            f"a search {name!r} already exists in {_redact(storage)}; pass --resume to continue "
            "it or choose another --out/--storage"
        )
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(
        storage=storage,
        study_name=name,
        sampler=sampler,
        direction=objective.direction,
        load_if_exists=True,
    )


class _Validator:
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


def run_search(opts: SearchOptions) -> SearchResult:
    """Run (or resume) one search and write its outputs into ``opts.out_dir``."""
    from .backends import get_backend

    started = time.monotonic()
    if opts.budget < 1:
        raise UserError("--budget: must be >= 1")
    if opts.parallel < 1:
        raise UserError("--parallel: must be >= 1")
    model_path = Path(opts.model_path)
    if not model_path.is_file():
        raise UserError(f"model file {str(model_path)!r} not found")
    space = load_space(opts.space)
    objective = Objective(slo_p99_ms=opts.slo_p99_ms, target_rps=opts.target_rps)
    out = Path(opts.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    storage = opts.storage or f"sqlite:///{(out / 'study.db').resolve()}"
    sha = sha256_of(model_path)
    profile = profile_model(model_path)
    features = None
    with contextlib.suppress(Exception):
        features = profile.features()
    kb = _knowledge_base(opts.knowledge)
    history = [t for t in _history(kb, space) if t.name != kb_model_name(model_path, sha)]
    sampler, sampler_name = make_search_sampler(
        opts.sampler, space, objective, opts.seed, features, history
    )
    name = _study_name(model_path, sha, space, objective)
    study = open_study(storage, name, objective, sampler, opts.resume)
    if opts.resume:
        fail_stale_trials(study)
    for key, value in (
        ("slo_p99_ms", objective.slo_p99_ms),
        ("target_rps", objective.target_rps),
        ("space", space.name),
        ("model_sha256", sha),
    ):
        study.set_user_attr(key, value)

    measured_before = len(measured_configs(study))
    remaining = max(0, opts.budget - measured_before)
    validate_s = opts.validate_duration_s or max(opts.duration_s * 2, opts.duration_s)
    load = Load(
        slo_p99_ms=objective.slo_p99_ms, target_rps=objective.target_rps, duration_s=opts.duration_s
    )
    rejected: set[str] = set(study.user_attrs.get("rejected", []))
    validations: list[dict[str, Any]] = list(study.user_attrs.get("validations", []))
    notes: list[str] = []
    stop_rule = _stop_rule(objective)
    chosen: TrialRecord | None = None
    chosen_m: Measurement | None = None
    chosen_rps: float | None = None
    new_evals = 0
    outcome = "infeasible"

    progress = SearchProgress(
        objective,
        opts.budget,
        done_before=measured_before,
        enabled=opts.progress,
        estimate=_confidence(study, objective),
    )
    with contextlib.ExitStack() as stack:
        backends = [
            stack.enter_context(get_backend(opts.backend, space, **opts.backend_options))
            for _ in range(opts.parallel)
        ]
        evaluators = [_evaluator(b, profile, load) for b in backends]
        validator = _Validator(backends[0], profile, objective, validate_s)
        stack.enter_context(progress)
        try:
            while True:
                progressed = False
                if remaining > 0:
                    progress.set_status(f"searching ({remaining} configs left in the budget)")
                    log = run_trials_parallel(
                        study,
                        space,
                        objective,
                        evaluators,
                        remaining,
                        workers=opts.parallel,
                        seed=opts.seed + new_evals,
                        on_evaluation=progress.update,
                        should_stop=stop_rule,
                    )
                    remaining -= len(log.evaluations)
                    new_evals += len(log.evaluations)
                    progressed = bool(log.evaluations)
                records = trial_records(study, objective)
                candidates = _ranked(records, objective, rejected)
                for rec in candidates[:VALIDATIONS_PER_ROUND]:
                    progress.set_status(f"re-measuring the best config {rec.config.key()}")
                    holds, m, rps = validator(rec.config, rec.measurement)
                    validations.append(
                        {
                            "config": rec.config.to_dict(),
                            "target_rps": rps,
                            "holds": holds,
                            "p99_ms": m.p99_ms,
                            "throughput_rps": m.throughput_rps,
                            "error": m.error,
                        }
                    )
                    study.set_user_attr("validations", validations)
                    if holds:
                        chosen, chosen_m, chosen_rps = rec, m, rps
                        break
                    rejected.add(rec.config.key())
                    study.set_user_attr("rejected", sorted(rejected))
                if chosen is not None:
                    outcome = "plan"
                    break
                unmeasured = space.size() - len(measured_configs(study))
                if (
                    remaining <= 0
                    or unmeasured <= 0
                    or not progressed
                    or (not candidates and _stopped(stop_rule, study))
                ):
                    outcome = "unvalidated" if rejected else "infeasible"
                    break
        except KeyboardInterrupt:
            progress.set_status("interrupted: tearing down")
            with contextlib.suppress(Exception):
                _write_outputs_partial(study, objective, out, opts, space, sampler_name, started)
            with contextlib.suppress(Exception):  # finished trials are knowledge too
                records = trial_records(study, objective)
                _feed_knowledge(
                    kb, kb_model_name(model_path, sha), profile, space, objective, records
                )
            raise

    records = trial_records(study, objective)
    result = SearchResult(
        outcome=outcome,
        out_dir=out,
        study_name=name,
        storage=storage,
        records=records,
        new_evaluations=new_evals,
        notes=notes,
    )
    ctx = ReportContext(
        title=f"autoconf search: {model_path.name}",
        model_name=model_path.name,
        objective=objective,
        space_name=space.name,
        backend=opts.backend,
        sampler=sampler_name,
        outcome=outcome,
        validations=validations,
        command=opts.command,
        elapsed_s=time.monotonic() - started,
        notes=notes,
    )
    if chosen is not None and chosen_m is not None and chosen_rps is not None:
        result.chosen, result.validation = chosen.config, chosen_m
        ctx.chosen, ctx.chosen_validation, ctx.validated_rps = chosen.config, chosen_m, chosen_rps
        plan = _plan_dict(
            opts,
            model_path,
            out,
            sha,
            profile,
            space,
            objective,
            sampler_name,
            name,
            storage,
            records,
            chosen,
            chosen_m,
            chosen_rps,
            rejected,
            validate_s,
        )
        result.plan_path = write_plan(out / "plan.yaml", plan)
        result.manifests, note = _write_manifests(out, model_path, chosen.config, plan, opts.kserve)
        if note:
            notes.append(note)
    note = _feed_knowledge(kb, kb_model_name(model_path, sha), profile, space, objective, records)
    if note:
        notes.append(note)
    if kb is not None:
        kb.close()
    write_trials_csv(out / "trials.csv", records)
    result.report_path = write_report(out / "report.html", records, ctx)
    return result


def _evaluator(backend: Any, profile: Any, load: Load) -> Any:
    def evaluate(config: Config) -> Measurement:
        return backend.evaluate(profile, config, load)

    return evaluate


def _stop_rule(objective: Objective) -> Any:
    try:
        from .samplers._meta import should_stop
    except ImportError:
        return None

    def rule(study: optuna.Study) -> bool:
        if len(measured_configs(study)) < MIN_EVALUATIONS_BEFORE_STOP:
            return False
        return bool(should_stop(study, objective))

    return rule


def _stopped(rule: Any, study: optuna.Study) -> bool:
    return bool(rule is not None and rule(study))


def _confidence(study: optuna.Study, objective: Objective) -> Any:
    try:
        from .samplers._meta import MetaSampler, confidence_within_5pct
    except ImportError:
        return None
    if not isinstance(study.sampler, MetaSampler):
        return None
    return lambda: confidence_within_5pct(study, objective)


def _ranked(
    records: list[TrialRecord], objective: Objective, rejected: set[str]
) -> list[TrialRecord]:
    feasible = [r for r in records if r.value is not None and r.config.key() not in rejected]
    sign = 1.0 if objective.direction == "minimize" else -1.0
    return sorted(feasible, key=lambda r: (sign * r.value, r.measurement.p99_ms or 0.0))


def _metrics(m: Measurement) -> dict[str, Any]:
    keys = ("p50_ms", "p95_ms", "p99_ms", "throughput_rps", "capacity_rps", "error_rate")
    return {k: round(float(getattr(m, k)), 4) for k in keys if getattr(m, k) is not None}


def _rel(path: Path, base: Path) -> str:
    """``path`` relative to ``base`` (the plan's directory), so that a plan moved together with
    its model and space still finds them."""
    return os.path.relpath(path.resolve(), base.resolve())


def _space_ref(path: Path, out: Path) -> str:
    if path.resolve().parent == SPACES_DIR.resolve():
        return f"search_spaces/{path.name}"  # shipped: found by name wherever autoconf runs
    return _rel(path, out)


def _plan_dict(
    opts: SearchOptions,
    model_path: Path,
    out: Path,
    sha: str,
    profile: Any,
    space: SearchSpace,
    objective: Objective,
    sampler_name: str,
    study_name: str,
    storage: str,
    records: list[TrialRecord],
    chosen: TrialRecord,
    validation: Measurement,
    rps: float,
    rejected: set[str],
    validate_s: float,
) -> dict[str, Any]:
    sfile = space_path(opts.space)
    runners = [r for r in _ranked(records, objective, set()) if r.config != chosen.config]
    kops_profile = None
    with contextlib.suppress(Exception):
        kops_profile = profile.to_dict()
    return {
        "autoconf_plan": PLAN_FORMAT,
        "model": {"name": model_path.stem, "path": _rel(model_path, out), "sha256": sha},
        "slo": {"p99_ms": objective.slo_p99_ms},
        "load": {"target_rps": round(rps, 3), "duration_s": validate_s},
        "config": chosen.config.to_dict(),
        "cost_per_hour": round(space.cost_per_hour(chosen.config), 6),
        "measured": {
            "source": "re-measured at the target load before this plan was written",
            **_metrics(validation),
        },
        "predicted": {"source": f"search trial #{chosen.number}", **_metrics(chosen.measurement)},
        "runners_up": [
            {
                "config": r.config.to_dict(),
                "cost_per_hour": round(r.measurement.cost_per_hour, 6),
                "validation": "failed" if r.config.key() in rejected else "not re-measured",
                **_metrics(r.measurement),
            }
            for r in runners[:RUNNERS_UP]
        ],
        "backend": opts.backend,
        "backend_options": {
            k: v for k, v in opts.backend_options.items() if isinstance(v, (str, int, float, bool))
        },
        "provenance": {
            "tool_version": __version__,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "model_sha256": sha,
            "search_space": {
                "name": space.name,
                "path": _space_ref(sfile, out),
                "sha256": sha256_of(sfile) if sfile.is_file() else "",
            },
            "kops_profile": kops_profile,
            "sampler": sampler_name,
            "study": {"name": study_name, "storage": _redact(storage)},
            "configs_measured": len(records),
            "search_duration_s": opts.duration_s,
            "command": opts.command,
        },
    }


def _write_manifests(
    out: Path, model_path: Path, config: Config, plan: dict[str, Any], kserve: bool = False
) -> tuple[list[Path], str | None]:
    """Render the plan's Kubernetes manifests and check them against the real schemas."""
    import stress

    from ._deployment import deployment_spec
    from ._manifests import render_plan_manifests

    spec = deployment_spec(config, model_path)
    docs = render_plan_manifests(
        spec, kserve=kserve, target_rps=plan["load"]["target_rps"], slo_p99_ms=plan["slo"]["p99_ms"]
    )
    stress.validate_manifests(docs)
    mdir = out / "manifests"
    mdir.mkdir(exist_ok=True)
    paths = []
    for i, doc in enumerate(docs):
        kind = str(doc.get("kind", "object")).lower()
        p = mdir / f"{i:02d}-{kind}.yaml"
        p.write_text(yaml.safe_dump(doc, sort_keys=False))
        paths.append(p)
    return paths, None


def _write_outputs_partial(
    study: optuna.Study,
    objective: Objective,
    out: Path,
    opts: SearchOptions,
    space: SearchSpace,
    sampler_name: str,
    started: float,
) -> None:
    records = trial_records(study, objective)
    write_trials_csv(out / "trials.csv", records)
    ctx = ReportContext(
        title=f"autoconf search: {Path(opts.model_path).name} (interrupted)",
        model_name=Path(opts.model_path).name,
        objective=objective,
        space_name=space.name,
        backend=opts.backend,
        sampler=sampler_name,
        outcome="interrupted",
        command=opts.command,
        elapsed_s=time.monotonic() - started,
    )
    write_report(out / "report.html", records, ctx)


__all__ = ["SearchOptions", "SearchResult", "run_search"]
