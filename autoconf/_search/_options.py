"""What ``autoconf search`` takes and what it returns; bad options end as one :class:`UserError`."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .. import _input
from .._errors import UserError
from .._manifests import ManifestSettings
from .._report import TrialRecord, closest
from .._types import Config, Measurement
from .._variants import parse_drop, parse_precisions


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
    join: bool = False  # create the study, or join it when another process already has
    sampler: str | None = None
    seed: int = 0
    knowledge: str | None = None  # None: the default store; "none": no knowledge base
    duration_s: float = 10.0
    validate_duration_s: float | None = None
    command: str = ""
    progress: bool = True  # the live display (else one line per trial)
    quiet: bool = False  # no progress at all
    #: values of the model's symbolic input dims (``--dim``): the profile's and the requests'
    dims: dict[str, int] = field(default_factory=dict)
    #: what the plan's manifests say beyond the config (``--model-uri``, ``--namespace``, ...)
    manifest: ManifestSettings = field(default_factory=lambda: ManifestSettings())
    #: ``--precisions``: the model variants searched (replaces the space's ``precision``)
    precisions: list[str] | None = None
    #: ``--max-accuracy-drop`` as a fraction (None: :data:`autoconf._variants.DEFAULT_MAX_DROP`)
    max_accuracy_drop: float | None = None
    #: ``--sample-inputs FILE.npz``: the accuracy check's (and INT8 calibration's) inputs
    sample_inputs: Path | None = None

    def validate_s(self) -> float:
        """How long each re-measurement runs (twice a search measurement by default)."""
        return self.validate_duration_s or max(self.duration_s * 2, self.duration_s)


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
        return closest(self.records, n)


def check_options(opts: SearchOptions) -> Path:
    """Options a search cannot start with raise :class:`UserError` (every number within its
    bounds, the backend's options, a writable ``out_dir``); returns the model path."""
    _input.count(opts.budget, "--budget", _input.MAX_BUDGET)
    _input.count(opts.parallel, "--parallel", _input.MAX_PARALLEL)
    _input.number(opts.slo_p99_ms, "--slo-p99 (ms)", maximum=_input.MAX_LATENCY_MS)
    if opts.target_rps is not None:
        _input.rate_rps(opts.target_rps, "--qps")
    for option, seconds in (("--duration", opts.duration_s), ("--validate", opts.validate_s())):
        _input.number(seconds, option, maximum=_input.MAX_DURATION_S)
        if opts.target_rps is not None:
            _input.check_requests(opts.target_rps, seconds, f"--qps x {option}")
    opts.backend_options = _input.backend_options(opts.backend, opts.backend_options)
    if opts.precisions is not None:
        opts.precisions = parse_precisions(",".join(opts.precisions))
    if opts.max_accuracy_drop is not None:
        opts.max_accuracy_drop = parse_drop(opts.max_accuracy_drop)
    if opts.sample_inputs is not None and not Path(opts.sample_inputs).is_file():
        raise UserError(f"--sample-inputs {opts.sample_inputs}: file not found")
    _input.out_dir(opts.out_dir)
    model_path = Path(opts.model_path)
    if not model_path.is_file():
        raise UserError(f"model file {str(model_path)!r} not found")
    if opts.backend == "kubernetes":
        _cluster_settings(opts, model_path)
    return model_path


def _cluster_settings(opts: SearchOptions, model_path: Path) -> None:
    """The Kubernetes backend's trials get the manifests' model URI, namespace and image; a
    model its pods cannot get (too big for a ConfigMap, no URI) is refused here, before the
    search makes any cluster call."""
    bo, ms = opts.backend_options, opts.manifest
    uri = _input.model_uri(bo.get("model_uri"), "--backend-option model_uri") or ms.model_uri
    _input.reachable_model(model_path, uri, "--model-uri")
    if uri is not None:
        bo["model_uri"] = uri
        opts.manifest = replace(ms, model_uri=ms.model_uri or uri)
    if ms.namespace != "default":
        bo.setdefault("namespace", ms.namespace)
    if ms.image:
        bo.setdefault("image", ms.image)
