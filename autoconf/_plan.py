"""plan.yaml: the serving plan a search emits and ``autoconf validate`` re-checks.

Its schema is written once, here: a search builds a :class:`Plan` and :func:`write_plan` dumps
it (``yaml.safe_dump``); ``validate`` reads it back through the same model, so that a hand-edited
or truncated plan fails with one line naming the field.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from ._errors import UserError
from ._files import read_yaml_model
from ._types import Config

PLAN_FORMAT = 1


class PlanModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    path: str
    sha256: str
    #: values of its symbolic input dims it was profiled and measured at (``--dim``)
    dims: dict[str, int] = Field(default_factory=dict)
    #: the precision served: the config's (``fp32``: the model as exported; ``fp16``/``int8``: a
    #: variant built from it, in ``variant_file``). Triton runs the served ONNX file as it is.
    precision: str = "fp32"
    #: the variant's ONNX file, beside plan.yaml (relative to it), when ``precision`` is not
    #: fp32; the manifests serve it instead of ``path``
    variant_file: str | None = None
    variant_sha256: str | None = None
    #: where the model is stored for the manifests (``--model-uri``), when given
    uri: str | None = None


class PlanSlo(BaseModel):
    model_config = ConfigDict(extra="forbid")

    p99_ms: int | float = Field(gt=0)


class PlanLoad(BaseModel):
    model_config = ConfigDict(extra="forbid")

    target_rps: int | float = Field(gt=0)
    duration_s: int | float = Field(gt=0)


class PlanMeasured(BaseModel):
    """A measurement as a plan shows it: where it comes from and the metrics it has."""

    model_config = ConfigDict(extra="allow")

    source: str
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    throughput_rps: float | None = None
    capacity_rps: float | None = None
    error_rate: float | None = None
    #: the stability rule's verdict (None: unknown, e.g. a table or the simulator), the spread of
    #: throughput and latency over the last windows (max/min - 1) and why it was not stable
    stable: bool | None = None
    throughput_spread: float | None = None
    latency_spread: float | None = None
    unstable_reasons: list[str] = Field(default_factory=list)


class PlanAccuracy(BaseModel):
    """The chosen model variant's accuracy against the FP32 model (``autoconf._variants``):
    ``drop`` is a fraction (``1 - top-1 agreement``, or the relative error)."""

    model_config = ConfigDict(extra="allow")

    metric: str
    drop: float = Field(ge=0)
    samples: int | None = None


class PlanRunnerUp(BaseModel):
    """A config nearly as good as the chosen one, with what the search measured of it."""

    model_config = ConfigDict(extra="allow")

    config: dict[str, Any]
    cost_per_hour: float
    validation: str  # "failed" | "not re-measured"
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    throughput_rps: float | None = None
    capacity_rps: float | None = None
    error_rate: float | None = None


class PlanStudy(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str
    storage: str


class PlanSearchSpace(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str
    path: str
    sha256: str
    #: configs left out because the backend could not host them (see ``autoconf._feasible``)
    notes: list[str] = Field(default_factory=list)


class PlanProvenance(BaseModel):
    model_config = ConfigDict(extra="allow")

    tool_version: str
    created: str
    model_sha256: str
    search_space: PlanSearchSpace
    kops_profile: dict[str, Any] | None = None
    sampler: str | None = None
    study: PlanStudy | None = None
    configs_measured: int | None = None
    #: the length of one stress test (``--duration``)
    stress_test_duration_s: int | float | None = None
    #: the search's own wall time, start to plan
    search_wall_s: int | float | None = None
    #: plans before format 1's honest names wrote the stress-test length here; read, never written
    search_duration_s: int | float | None = None
    #: what the figures are: "measured" (live backends) or "simulated" (with its assumptions)
    basis: str | None = None
    command: str | None = None


class Plan(BaseModel):
    """plan.yaml: what a search writes; ``validate`` checks what it needs, the rest is kept as
    read."""

    model_config = ConfigDict(extra="allow")

    autoconf_plan: int
    model: PlanModel
    slo: PlanSlo
    load: PlanLoad
    config: dict[str, Any]
    cost_per_hour: float = Field(ge=0)
    #: the chosen precision's accuracy against FP32 (where precisions were searched)
    accuracy: PlanAccuracy | None = None
    measured: PlanMeasured | None = None
    predicted: PlanMeasured | None = None
    runners_up: list[PlanRunnerUp] = Field(default_factory=list)
    backend: str
    backend_options: dict[str, Any] = Field(default_factory=dict)
    provenance: PlanProvenance

    def to_config(self) -> Config:
        try:
            return Config.from_dict(self.config)
        except (TypeError, ValueError) as exc:
            raise UserError(f"config: {exc}") from None


def sha256_of(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_plan(path: str | Path, plan: Plan) -> Path:
    """Write ``plan`` to ``path`` (the fields it was given; metrics a measurement lacks are left
    out rather than written as null)."""
    path = Path(path)
    data = plan.model_dump(mode="json", exclude_unset=True)
    simulated = (plan.provenance.basis or "").startswith("simulated")
    how = "simulated (no deployment measured it)" if simulated else "re-measured"
    header = (
        "# autoconf serving plan: the cheapest config found that met the SLO at the target load,\n"
        f"# {how} before it was written. Re-check it with `autoconf validate plan.yaml`.\n"
    )
    path.write_text(header + yaml.safe_dump(data, sort_keys=False, default_flow_style=False))
    return path


def read_plan(path: str | Path) -> Plan:
    """Read and validate a plan file; bad input raises :class:`UserError` naming the field."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"plan file {str(path)!r} not found")
    plan = read_yaml_model(path, Plan)
    if plan.autoconf_plan != PLAN_FORMAT:
        raise UserError(f"{path}: autoconf_plan: unsupported plan format {plan.autoconf_plan}")
    plan.to_config()
    return plan


def served_model_path(plan: Plan, plan_path: str | Path, model_path: Path) -> Path | None:
    """The ONNX file the plan's manifests serve: ``model_path`` (the model as exported) for an
    FP32 plan, else its variant file beside the plan; None when the variant file is missing."""
    if plan.model.precision == "fp32":
        return model_path
    if plan.model.variant_file is None:
        return None
    return resolve_relative(plan.model.variant_file, plan_path)


def resolve_relative(ref: str, plan_path: str | Path) -> Path | None:
    """A path written in a plan, tried beside the plan file, then as given."""
    for candidate in (Path(plan_path).resolve().parent / ref, Path(ref)):
        if candidate.exists():
            return candidate
    return None
