"""Search spaces: the dimensions searched, the GPU catalog and the prices, read from YAML.

A space file is validated with pydantic, so a wrong file fails with a message that names the
field (``gpus.T4.price_per_hour: Input should be greater than 0``).
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from . import _input
from ._errors import UserError
from ._files import read_yaml_model
from ._types import PRECISIONS, Config

#: Where the shipped spaces live: package data, inside the installed package.
SPACES_DIR = Path(__file__).resolve().parent / "search_spaces"
DEFAULT_SPACE = "cpu-local"

_DIMENSIONS = (
    "batch_size",
    "gpu_type",
    "replicas",
    "cpu_cores",
    "instances_per_gpu",
    "max_queue_delay_ms",
    "gpu_mem_gb",
    "gpu_share_pct",
    "precision",
)
_REQUIRED = ("batch_size", "gpu_type", "replicas", "cpu_cores")

#: numeric dimension -> (whole numbers, zero allowed, maximum): every value is checked when the
#: file is read, so a wrong one fails there, naming file and field, not mid-search.
_NUMERIC: dict[str, tuple[bool, bool, float]] = {
    "batch_size": (True, False, _input.MAX_BATCH_SIZE),
    "replicas": (True, False, _input.MAX_REPLICAS),
    "instances_per_gpu": (True, False, _input.MAX_INSTANCES),
    "cpu_cores": (False, False, _input.MAX_CPU_CORES),
    "max_queue_delay_ms": (False, True, _input.MAX_QUEUE_DELAY_MS),
    "gpu_mem_gb": (False, False, _input.MAX_GPU_MEM_GB),
    "gpu_share_pct": (False, False, 100.0),
}


def _check_value(dimension: str, where: str, value: Any) -> None:
    """One value of a dimension: a number of the right kind within its bounds (ValueError)."""
    if dimension == "precision":
        if value not in PRECISIONS:
            raise ValueError(
                f"{where}: unknown precision {value!r} (known: {', '.join(PRECISIONS)})"
            )
        return
    if dimension not in _NUMERIC:
        if not isinstance(value, str) or not value:
            raise ValueError(f"{where}: expected a GPU type name, got {value!r}")
        return
    integer, zero, maximum = _NUMERIC[dimension]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{where}: expected a number, got {value!r}")
    try:
        _input.number(value, where, maximum=maximum, integer=integer, allow_min=zero)
    except UserError as exc:
        raise ValueError(str(exc)) from None


class GpuSpec(BaseModel):
    """Public specs of one accelerator type and what an hour of it costs.

    The ``cpu`` pseudo-type (CPU-only serving) has zero TFLOP/s and price: its cost is the
    cores'. ``fp16_tflops`` is dense tensor-core FP16 (the FP32 figure where a GPU has no fast
    FP16), ``int8_tops`` dense INT8 (tensor cores, else DP4A; ``None``: not in the catalog, the
    simulator takes the FP16 figure). ``source`` says where the specs and price came from.
    """

    model_config = ConfigDict(extra="forbid")

    fp16_tflops: float = Field(ge=0, allow_inf_nan=False)
    fp32_tflops: float = Field(ge=0, allow_inf_nan=False)
    int8_tops: float | None = Field(None, ge=0, allow_inf_nan=False)
    memory_gb: float = Field(ge=0, allow_inf_nan=False)
    bandwidth_gbps: float = Field(ge=0, allow_inf_nan=False)
    price_per_hour: float = Field(ge=0, allow_inf_nan=False)
    source: str = ""


class Range(BaseModel):
    model_config = ConfigDict(extra="forbid")

    min: float = Field(allow_inf_nan=False)
    max: float = Field(allow_inf_nan=False)
    step: float = Field(1, allow_inf_nan=False)

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if self.max < self.min or self.step <= 0:
            raise ValueError("needs min <= max and step > 0")
        n = (self.max - self.min) // self.step + 1
        if n > _input.MAX_DIMENSION_VALUES:
            raise ValueError(
                f"{n:,.0f} values; at most {_input.MAX_DIMENSION_VALUES:,} in one dimension"
            )
        return self

    def values(self) -> list[float]:
        n = int((self.max - self.min) // self.step) + 1
        return [self.min + i * self.step for i in range(n)]


class Pricing(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cpu_core_per_hour: float = Field(ge=0, allow_inf_nan=False)
    source: str = ""


class SearchSpace(BaseModel):
    """A discrete search space: every dimension a finite list of values."""

    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    dimensions: dict[str, list[Any] | Range]
    gpus: dict[str, GpuSpec]
    pricing: Pricing

    @field_validator("dimensions")
    @classmethod
    def _known_dimensions(cls, dims: dict[str, Any]) -> dict[str, Any]:
        for name in dims:
            if name not in _DIMENSIONS:
                raise ValueError(f"unknown dimension {name!r} (known: {', '.join(_DIMENSIONS)})")
        for name in _REQUIRED:
            if name not in dims:
                raise ValueError(f"missing dimension {name!r}")
        for name, values in dims.items():
            if isinstance(values, list) and not values:
                raise ValueError(f"dimension {name!r} has no values")
            if isinstance(values, list) and len(values) > _input.MAX_DIMENSION_VALUES:
                raise ValueError(
                    f"{name}: {len(values):,} values; at most {_input.MAX_DIMENSION_VALUES:,}"
                )
            if isinstance(values, Range):
                if name not in _NUMERIC:
                    raise ValueError(f"{name}: a list of names, not a range")
                whole = name in _NUMERIC and _NUMERIC[name][0]
                values = [values.min, values.max] + ([values.step] if whole else [])
            for i, value in enumerate(values):
                _check_value(name, f"{name}[{i}]", value)
        return dims

    @model_validator(mode="after")
    def _gpus_in_catalog(self) -> SearchSpace:
        if self.size() > _input.MAX_SPACE_CONFIGS:
            raise ValueError(
                f"dimensions: {self.size():,} configs; at most {_input.MAX_SPACE_CONFIGS:,}"
            )
        for gpu in self.values("gpu_type"):
            if gpu not in self.gpus:
                raise ValueError(
                    f"dimensions.gpu_type: unknown GPU type {gpu!r} (catalog: {', '.join(self.gpus)})"
                )
        return self

    def values(self, dimension: str) -> list[Any]:
        """The values of one dimension, ranges expanded; ints stay ints."""
        raw = self.dimensions[dimension]
        vals = raw.values() if isinstance(raw, Range) else list(raw)
        if dimension not in _NUMERIC:
            return [str(v) for v in vals]
        return [int(v) if isinstance(v, float) and v.is_integer() else v for v in vals]

    @property
    def dimension_names(self) -> list[str]:
        return [d for d in _DIMENSIONS if d in self.dimensions]

    def configs(self) -> list[Config]:
        """Every config of the space (the cartesian product), in a stable order."""
        names = self.dimension_names
        return [
            Config(**dict(zip(names, combo)))
            for combo in itertools.product(*(self.values(n) for n in names))
        ]

    def size(self) -> int:
        n = 1
        for d in self.dimension_names:
            n *= len(self.values(d))
        return n

    def contains(self, config: Config) -> bool:
        values = config.to_dict()
        return set(values) == set(self.dimension_names) and all(
            values[d] in self.values(d) for d in self.dimension_names
        )

    def gpu(self, gpu_type: str) -> GpuSpec:
        try:
            return self.gpus[gpu_type]
        except KeyError:
            raise UserError(
                f"unknown GPU type {gpu_type!r} (catalog: {', '.join(self.gpus)})"
            ) from None

    def cost_per_hour(self, config: Config) -> float:
        """Dollars per hour of the whole deployment: every replica's GPU share and cores."""
        gpu = self.gpu(config.gpu_type)
        share = (config.gpu_share_pct or 100) / 100.0
        per_replica = gpu.price_per_hour * share + self.pricing.cpu_core_per_hour * config.cpu_cores
        return per_replica * config.replicas


def space_path(path_or_name: str | Path | None = None) -> Path:
    """The file a space reference names: a path, or a bare name of a shipped space."""
    ref = str(path_or_name or DEFAULT_SPACE)
    path = Path(ref)
    if not path.suffix and not path.exists():
        path = SPACES_DIR / f"{ref}.yaml"
    return path


def load_space(path_or_name: str | Path | None = None) -> SearchSpace:
    """Read and validate a space file; a bare name means ``autoconf/search_spaces/<name>.yaml``."""
    ref = str(path_or_name or DEFAULT_SPACE)
    path = space_path(ref)
    if not path.is_file():
        shipped = ", ".join(sorted(p.stem for p in SPACES_DIR.glob("*.yaml")))
        raise UserError(f"search space {ref!r} not found (shipped: {shipped})")
    return read_yaml_model(path, SearchSpace)
