"""``autoconf validate``: re-measure a plan at its target load; does its SLO still hold?

Made for CI: exit 0 when it holds, 1 when it does not, 2 on bad input; ``--junit`` writes a
JUnit XML file that CI systems show as a test result.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

from . import _input
from ._dims import check_dims
from ._errors import UserError
from ._input import plan_backend_options
from ._objective import Objective
from ._plan import Plan, read_plan, resolve_relative, sha256_of
from ._space import SearchSpace, load_space
from ._types import Load, Measurement


@dataclass
class ValidationResult:
    plan: Plan
    plan_path: Path
    backend: str
    measurement: Measurement
    holds: bool
    reasons: list[str]
    wall_s: float


def plan_space(plan: Plan, plan_path: Path) -> SearchSpace:
    """The space the plan was searched in: its file (as written, or beside the plan), else the
    shipped space of that name."""
    ref = plan.provenance.search_space
    found = resolve_relative(ref.path, plan_path) if ref.path else None
    return load_space(found if found is not None else ref.name)


def _reasons(plan: Plan, m: Measurement) -> list[str]:
    if not m.ok:
        return [f"the deployment failed: {m.error or 'unknown error'}"]
    out = []
    if m.p99_ms is None or m.p99_ms > plan.slo.p99_ms:
        out.append(f"p99 {m.p99_ms or float('nan'):.1f} ms > SLO {plan.slo.p99_ms:g} ms")
    if Objective(target_rps=plan.load.target_rps).violation(m) > 0:
        out.append(
            f"served {m.throughput_rps or 0:.1f} requests/s < target {plan.load.target_rps:g}"
        )
    if m.error_rate > 0.01:
        out.append(f"error rate {100 * m.error_rate:.1f} % > 1 %")
    return out


def validate_plan(
    plan_path: str | Path,
    backend: str | None = None,
    backend_options: dict[str, Any] | None = None,
    duration_s: float | None = None,
    dims: dict[str, int] | None = None,
) -> ValidationResult:
    """Re-measure the plan in ``plan_path`` at its target load on ``backend`` (default: the one
    it was searched on), at the plan's symbolic dims (``dims`` override some)."""
    from . import _search
    from .backends import get_backend

    plan_path = Path(plan_path)
    plan = read_plan(plan_path)
    model = resolve_relative(plan.model.path, plan_path)
    if model is None:
        raise UserError(f"{plan_path}: model.path: model file {plan.model.path!r} not found")
    if sha256_of(model) != plan.model.sha256:
        raise UserError(
            f"{plan_path}: model.sha256: {model} changed since the plan was made (re-run search)"
        )
    space = plan_space(plan, plan_path)
    config = plan.to_config()
    if not space.contains(config):
        raise UserError(f"{plan_path}: config: {config.key()} is not in space {space.name!r}")
    name = backend or plan.backend
    options = (
        plan_backend_options(name, plan.backend_options, str(plan_path))
        if name == plan.backend
        else {}
    )
    options.update(_input.backend_options(name, backend_options or {}))
    if name == "kubernetes":  # the plan's own URI is not taken from the file (NOT_FROM_PLAN)
        _input.reachable_model(model, options.get("model_uri"), "--backend-option model_uri=URI")
    shapes = {**plan.model.dims, **check_dims(model, dims)}
    profile = _search.profile_model(model, shapes)
    if _search.takes_dims(name):  # the requests carry the shapes the plan was measured at
        options["dims"] = dict(getattr(profile, "dims", shapes))
    load = Load(
        slo_p99_ms=plan.slo.p99_ms,
        target_rps=plan.load.target_rps,
        duration_s=duration_s or plan.load.duration_s,
    )
    t0 = time.monotonic()
    with get_backend(name, space, **options) as b:
        m = b.evaluate(profile, config, load)
    reasons = _reasons(plan, m)
    holds = Objective(plan.slo.p99_ms, plan.load.target_rps).feasible(m) and not reasons
    return ValidationResult(plan, plan_path, name, m, holds, reasons, time.monotonic() - t0)


def write_junit(path: str | Path, result: ValidationResult) -> Path:
    """One test suite with one test case: the plan at its target load."""
    m = result.measurement
    case_name = (
        f"{result.plan.model.name}: p99<={result.plan.slo.p99_ms:g}ms at "
        f"{result.plan.load.target_rps:g}rps ({result.plan.to_config().key()})"
    )
    suite = ET.Element(
        "testsuite",
        name="autoconf validate",
        tests="1",
        failures="0" if result.holds else "1",
        errors="0",
        time=f"{result.wall_s:.2f}",
    )
    case = ET.SubElement(
        suite,
        "testcase",
        classname=f"autoconf.{result.backend}",
        name=case_name,
        time=f"{result.wall_s:.2f}",
    )
    summary = (
        f"p99 {m.p99_ms if m.p99_ms is not None else float('nan'):.2f} ms, p95 "
        f"{m.p95_ms if m.p95_ms is not None else float('nan'):.2f} ms, throughput "
        f"{m.throughput_rps or 0:.1f} requests/s, error rate {100 * m.error_rate:.2f} %, "
        f"cost ${m.cost_per_hour:.4f}/h"
    )
    if not result.holds:
        fail = ET.SubElement(case, "failure", message="; ".join(result.reasons) or "does not hold")
        fail.text = summary
    ET.SubElement(case, "system-out").text = summary
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)
    return path
