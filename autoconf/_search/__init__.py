"""``autoconf search``: from an ONNX model and an SLO to a re-measured serving plan.

kops profile -> prior (from the knowledge base) -> sampler -> backend stress tests (ask/tell,
stored in Optuna storage one finished trial at a time) -> the best feasible configs are
re-measured at the target load, best first, until one holds -> plan.yaml, manifests/,
report.html, trials.csv. Every finished search is fed back into the knowledge base.

Rooms: ``_options`` (what a search takes and returns), ``_stores`` (study and knowledge base),
``_sampler`` (sampler and stopping rule), ``_rounds`` (search rounds), ``_remeasure``
(re-measuring the best configs), ``_outputs`` (plan, report, CSV), ``_manifests``; this module
runs them in order and handles Ctrl-C.
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path
from typing import Any

import optuna

import kops

from .. import _input
from .. import _record as record
from .._dims import check_dims
from .._errors import UserError
from .._objective import Objective
from .._plan import sha256_of, write_plan
from .._progress import SearchProgress
from .._report import trial_records, write_report, write_trials_csv
from .._space import SPACES_DIR, load_space
from .._study import fail_stale_trials
from .._types import Config, Load, Measurement
from ._manifests import write_manifests
from ._options import SearchOptions, SearchResult, check_options
from ._outputs import SearchOutput, build_plan, write_interrupted
from ._precision import prepare_variants, tag_accuracy, use_variants
from ._remeasure import Remeasurements, Validator, ranked
from ._rounds import Rounds, ruled_out_notes, run_rounds
from ._sampler import SearchStop, fits_study, make_search_sampler, searched_space
from ._stores import (
    feed_knowledge,
    history,
    kb_model_name,
    open_knowledge_base,
    open_study,
    study_name,
)

logger = logging.getLogger(__name__)


def profile_model(model_path: Path, dims: dict[str, int] | None = None) -> Any:
    """The kops profile of a model file at its symbolic ``dims`` (what the prior and the sim
    backend read)."""
    return kops.profile(model_path, dims or None)


def takes_dims(backend: str) -> bool:
    """Whether ``backend`` sends requests (a live backend): it is then given the dims."""
    schema = _input.BACKEND_OPTIONS.get(backend)
    return schema is not None and "dims" in schema.model_fields


def _features(profile: Any) -> Any:
    """The target's kops features for the prior; None (said, not silent) when the profile has
    none: the sampler then searches without the feature prediction."""
    try:
        return profile.features()
    except (kops.KopsError, AttributeError, TypeError, ValueError) as exc:
        logger.warning("no kops features for this model (%s): the prior ignores features", exc)
        return None


def run_search(opts: SearchOptions) -> SearchResult:
    """Run (or resume) one search and write its outputs into ``opts.out_dir``."""
    started = time.monotonic()
    model_path = check_options(opts)
    dims = check_dims(model_path, {**opts.backend_options.get("dims", {}), **opts.dims})
    profile = profile_model(model_path, dims)
    opts.dims = dict(getattr(profile, "dims", dims))  # every symbolic dim, valued
    if takes_dims(opts.backend):  # the requests carry the shapes the profile was made at
        opts.backend_options["dims"] = dict(opts.dims)
    space, variants, variant_notes = prepare_variants(opts, model_path, load_space(opts.space))
    space, space_notes = _hostable(opts, space)
    objective = Objective(slo_p99_ms=opts.slo_p99_ms, target_rps=opts.target_rps)
    out = Path(opts.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    storage = opts.storage or f"sqlite:///{(out / 'study.db').resolve()}"
    sha = sha256_of(model_path)
    features = _features(profile)
    kb = open_knowledge_base(opts.knowledge)
    kb_name = kb_model_name(model_path, sha)
    searched, searched_note = searched_space(space, objective)
    past = history(kb, space, kb_name)
    sampler, sampler_name = make_search_sampler(
        opts.sampler, searched, objective, opts.seed, features, past
    )
    name = study_name(model_path, sha, space, objective)
    study = open_study(storage, name, objective, sampler, opts.resume, join=opts.join)
    if searched is not space and not fits_study(study, searched):
        # begun by an older autoconf that searched replicas here: it goes on as it began
        searched, searched_note = space, None
        study.sampler, _ = make_search_sampler(
            opts.sampler, space, objective, opts.seed, features, past
        )
    if opts.resume or opts.join:
        fail_stale_trials(study)
    stored_dims = record.dims_of(study)
    if stored_dims is not None and stored_dims != opts.dims:
        raise UserError(
            f"study {name!r} was measured at dims {_dims_text(stored_dims)}, not "
            f"{_dims_text(opts.dims)}: give the same --dim values, or search into a new --out"
        )
    record.set_target(study, objective, space.name, sha, opts.dims)
    so = SearchOutput(
        opts, model_path, out, sha, profile, space, objective, sampler_name, name, storage, started
    )
    so.space_notes = variant_notes + space_notes + ([searched_note] if searched_note else [])
    so.variants = variants
    so.searched = searched
    rounds = _search(study, so, kb, kb_name)
    so.space_notes += ruled_out_notes(study, searched)
    return _finish(study, so, rounds, kb, kb_name)


def _dims_text(dims: dict[str, int]) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(dims.items())) or "(none)"


def _hostable(opts: SearchOptions, space: Any) -> tuple[Any, list[str]]:
    """The space cut to what the backend can host (before the sampler sees it), and why; a
    backend that measures every config (tables, the simulator) is not even built for it."""
    from ..backends import BACKENDS, Backend, backend_class, get_backend

    if opts.backend not in BACKENDS:  # unknown: get_backend says so when the search starts
        return space, []
    if backend_class(opts.backend).feasible_space is Backend.feasible_space:
        return space, []
    with get_backend(opts.backend, space, **opts.backend_options) as backend:
        return backend.feasible_space()


def _search(study: optuna.Study, so: SearchOutput, kb: Any, kb_name: str) -> Rounds:
    """Open one backend per worker and run the search rounds; on Ctrl-C save what finished
    before the backends are torn down."""
    from ..backends import get_backend

    opts, objective = so.opts, so.objective
    measured_before = len(record.measured_configs(study))
    load = Load(
        slo_p99_ms=objective.slo_p99_ms, target_rps=objective.target_rps, duration_s=opts.duration_s
    )
    stop = SearchStop(so.sampler_name, study.sampler, objective)
    progress = SearchProgress(
        objective,
        opts.budget,
        done_before=measured_before,
        enabled=opts.progress,
        quiet=opts.quiet,
        estimate=lambda: stop.confidence(study),
    )
    with contextlib.ExitStack() as stack:
        backends = [
            stack.enter_context(get_backend(opts.backend, so.space, **opts.backend_options))
            for _ in range(opts.parallel)
        ]
        use_variants(backends, so.variants)
        evaluators = [_evaluator(b, so.profile, load, progress, so.variants) for b in backends]
        validator = Validator(backends[0], so.profile, objective, opts.validate_s())
        stack.enter_context(progress)
        try:
            return run_rounds(
                study,
                so.searched or so.space,
                objective,
                evaluators,
                validator,
                Remeasurements.of(study),
                progress,
                remaining=max(0, opts.budget - measured_before),
                seed=opts.seed,
                should_stop=stop,
            )
        except KeyboardInterrupt:
            progress.set_status("interrupted: tearing down")
            _save_interrupted(study, so, kb, kb_name)
            raise


def _evaluator(
    backend: Any,
    profile: Any,
    load: Load,
    progress: SearchProgress,
    variants: dict[str, Any] | None = None,
) -> Any:
    """One worker's evaluate, telling the live display when a trial starts and its steps;
    each measurement tagged with its model variant's accuracy (``variants``, where searched)."""
    backend.on_step = progress.step

    def evaluate(config: Config) -> Measurement:
        progress.trial_started(config)
        return tag_accuracy(variants or {}, config, backend.evaluate(profile, config, load))

    return evaluate


def _save_interrupted(study: optuna.Study, so: SearchOutput, kb: Any, kb_name: str) -> None:
    """After Ctrl-C: write what finished and feed it to the knowledge
    base; a failure here is logged, never raised over the interrupt."""
    try:
        write_interrupted(so, study)
    except (OSError, ValueError, optuna.exceptions.OptunaError) as exc:
        logger.warning("interrupted: report and trials.csv not written: %s", exc)
    try:  # finished trials are knowledge too
        records = trial_records(study, so.objective)
        note = feed_knowledge(kb, kb_name, so.profile, so.space, so.objective, records)
    except (OSError, ValueError, optuna.exceptions.OptunaError) as exc:
        note = f"knowledge base not updated: {exc}"
    if note:
        logger.warning("interrupted: %s", note)


def _finish(
    study: optuna.Study, so: SearchOutput, rounds: Rounds, kb: Any, kb_name: str
) -> SearchResult:
    """Write the plan (when one held), its manifests, the report and trials.csv; feed the
    knowledge base."""
    records = trial_records(study, so.objective)
    notes: list[str] = list(so.space_notes)
    result = SearchResult(
        outcome=rounds.outcome,
        out_dir=so.out,
        study_name=so.study_name,
        storage=so.storage,
        records=records,
        new_evaluations=rounds.new_evaluations,
        notes=notes,
    )
    remeasured = rounds.remeasured
    ctx = so.report_context(rounds.outcome, validations=remeasured.validations, notes=notes)
    chosen = rounds.chosen
    if chosen is not None:
        result.chosen, result.validation = chosen.record.config, chosen.validation
        ctx.chosen, ctx.chosen_validation = chosen.record.config, chosen.validation
        ctx.validated_rps = chosen.target_rps
        plan = build_plan(so, records, chosen, remeasured.rejected)
        result.plan_path = write_plan(so.out / "plan.yaml", plan)
        result.manifests, note = write_manifests(
            so.out, so.model_path, chosen.record.config, plan, so.opts.manifest, so.profile
        )
        if note:
            notes.append(note)
    note = feed_knowledge(kb, kb_name, so.profile, so.space, so.objective, records)
    if note:
        notes.append(note)
    if kb is not None:
        kb.close()
    write_trials_csv(so.out / "trials.csv", records)
    result.report_path = write_report(so.out / "report.html", records, ctx)
    return result


__all__ = [
    "SPACES_DIR",
    "Objective",
    "SearchOptions",
    "SearchResult",
    "load_space",
    "profile_model",
    "ranked",
    "run_search",
]
