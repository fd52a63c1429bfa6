"""What ``autoconf search`` takes and what it returns; bad options end as one :class:`UserError`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._errors import UserError
from .._report import TrialRecord, closest
from .._types import Config, Measurement


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
    """Options a search cannot start with raise :class:`UserError`; returns the model path."""
    if opts.budget < 1:
        raise UserError("--budget: must be >= 1")
    if opts.parallel < 1:
        raise UserError("--parallel: must be >= 1")
    model_path = Path(opts.model_path)
    if not model_path.is_file():
        raise UserError(f"model file {str(model_path)!r} not found")
    return model_path
