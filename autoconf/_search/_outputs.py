"""What a search writes into its output directory: plan.yaml (from the pydantic :class:`Plan`),
manifests/, report.html and trials.csv; after Ctrl-C the report and the CSV of what finished."""

from __future__ import annotations

import datetime as _dt
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

from .. import __version__
from .._input import plan_safe
from .._objective import Objective
from .._plan import (
    PLAN_FORMAT,
    Plan,
    PlanLoad,
    PlanMeasured,
    PlanModel,
    PlanProvenance,
    PlanRunnerUp,
    PlanSearchSpace,
    PlanSlo,
    PlanStudy,
    sha256_of,
)
from .._report import (
    ReportContext,
    TrialRecord,
    model_summary,
    trial_records,
    write_report,
    write_trials_csv,
)
from .._secrets import redact
from .._space import SPACES_DIR, SearchSpace, space_path
from .._types import Measurement
from ._options import SearchOptions
from ._remeasure import Chosen, ranked

logger = logging.getLogger(__name__)

#: How many runner-up configs a plan lists.
RUNNERS_UP = 3
_METRICS = ("p50_ms", "p95_ms", "p99_ms", "throughput_rps", "capacity_rps", "error_rate")


@dataclass
class SearchOutput:
    """What the outputs are written from: one search, its target and where it stored trials."""

    opts: SearchOptions
    model_path: Path
    out: Path
    sha: str
    profile: Any
    space: SearchSpace
    objective: Objective
    sampler_name: str
    study_name: str
    storage: str
    started: float
    #: what was left out of the space because the backend cannot host it (see ``_feasible``)
    space_notes: list[str] = field(default_factory=list)

    def report_context(self, outcome: str, **kw: Any) -> ReportContext:
        name = self.model_path.name
        title = f"autoconf search: {name}" + (" (interrupted)" if outcome == "interrupted" else "")
        return ReportContext(
            title=title,
            model_name=name,
            objective=self.objective,
            space_name=self.space.name,
            backend=self.opts.backend,
            sampler=self.sampler_name,
            outcome=outcome,
            command=redact(self.opts.command or ""),
            elapsed_s=time.monotonic() - self.started,
            model=model_summary(self.profile),
            **kw,
        )


def _metrics(m: Measurement) -> dict[str, Any]:
    return {k: round(float(getattr(m, k)), 4) for k in _METRICS if getattr(m, k) is not None}


def _trust(m: Measurement) -> dict[str, Any]:
    """The stability verdict of a measurement, where known (live backends)."""
    if m.stable is None:
        return {}
    out: dict[str, Any] = {"stable": m.stable, "unstable_reasons": list(m.unstable_reasons)}
    for k in ("throughput_spread", "latency_spread"):
        if getattr(m, k) is not None:
            out[k] = round(float(getattr(m, k)), 4)
    return out


def _rel(path: Path, base: Path) -> str:
    """``path`` relative to ``base`` (the plan's directory), so that a plan moved together with
    its model and space still finds them."""
    return os.path.relpath(path.resolve(), base.resolve())


def _space_ref(path: Path, out: Path) -> str:
    if path.resolve().parent == SPACES_DIR.resolve():
        return f"search_spaces/{path.name}"  # shipped: found by name wherever autoconf runs
    return _rel(path, out)


def _kops_profile(profile: Any) -> dict[str, Any] | None:
    """The profile as plain data for the plan's provenance; None (with a warning) if it has
    none to give."""
    try:
        return profile.to_dict()
    except (AttributeError, TypeError, ValueError) as exc:
        logger.warning("plan written without its kops profile: %s", exc)
        return None


#: Backends whose figures come from a model, not a deployment.
SIMULATED_BACKENDS = frozenset({"sim"})


def _basis(backend: str, precision: str) -> str:
    """What the plan's figures are, in words (the simulator's precision assumption named)."""
    if backend in SIMULATED_BACKENDS:
        from .._simulator import precision_basis

        return f"simulated: {precision_basis(precision)}"
    if backend == "replay":
        return "replayed from measured tables"
    return "measured"


def build_plan(
    so: SearchOutput, records: list[TrialRecord], chosen: Chosen, rejected: set[str]
) -> Plan:
    """The plan of ``chosen``: its config, re-measurement, runners-up and provenance."""
    opts, out, space = so.opts, so.out, so.space
    sfile = space_path(opts.space)
    config = chosen.record.config
    runners = [r for r in ranked(records, so.objective, set()) if r.config != config]
    simulated = opts.backend in SIMULATED_BACKENDS
    return Plan(
        autoconf_plan=PLAN_FORMAT,
        model=PlanModel(
            name=so.model_path.stem,
            path=_rel(so.model_path, out),
            sha256=so.sha,
            dims=dict(opts.dims),
            precision=config.precision or "fp32",
            **({"uri": opts.manifest.model_uri} if opts.manifest.model_uri else {}),
        ),
        slo=PlanSlo(p99_ms=opts.slo_p99_ms),
        load=PlanLoad(target_rps=round(chosen.target_rps, 3), duration_s=opts.validate_s()),
        config=config.to_dict(),
        cost_per_hour=round(space.cost_per_hour(config), 6),
        measured=PlanMeasured(
            source=(
                "simulated at the target load (sim backend: not a measurement)"
                if simulated
                else "re-measured at the target load before this plan was written"
            ),
            **_metrics(chosen.validation),
            **_trust(chosen.validation),
        ),
        predicted=PlanMeasured(
            source=f"{'simulated ' if simulated else ''}search trial #{chosen.record.number}",
            **_metrics(chosen.record.measurement),
            **_trust(chosen.record.measurement),
        ),
        runners_up=[
            PlanRunnerUp(
                config=r.config.to_dict(),
                cost_per_hour=round(r.measurement.cost_per_hour, 6),
                validation="failed" if r.config.key() in rejected else "not re-measured",
                **_metrics(r.measurement),
            )
            for r in runners[:RUNNERS_UP]
        ],
        backend=opts.backend,
        backend_options=plan_safe(opts.backend_options),
        provenance=PlanProvenance(
            tool_version=__version__,
            created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            model_sha256=so.sha,
            search_space=PlanSearchSpace(
                name=space.name,
                path=_space_ref(sfile, out),
                sha256=sha256_of(sfile) if sfile.is_file() else "",
                notes=list(so.space_notes),
            ),
            kops_profile=_kops_profile(so.profile),
            sampler=so.sampler_name,
            study=PlanStudy(name=so.study_name, storage=redact(so.storage)),
            configs_measured=len(records),
            stress_test_duration_s=opts.duration_s,
            search_wall_s=round(time.monotonic() - so.started, 1),
            basis=_basis(opts.backend, config.precision or "fp32"),
            command=redact(opts.command) if opts.command else opts.command,
        ),
    )


def write_interrupted(so: SearchOutput, study: optuna.Study) -> None:
    """After Ctrl-C: trials.csv and report.html of every finished trial."""
    records = trial_records(study, so.objective)
    write_trials_csv(so.out / "trials.csv", records)
    write_report(so.out / "report.html", records, so.report_context("interrupted"))
