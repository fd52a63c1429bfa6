"""Failures as knowledge: which unmeasured configs an out-of-memory measurement rules out.

A model that runs out of GPU memory at (GPU, batch size, instances per GPU, precision) needs at
least as much memory at a larger batch, with more instances, at a higher precision (fp32 >
fp16 > int8; ``None`` is the model as exported, fp32) and on any GPU with no more memory (the
space's catalog, :class:`autoconf._space.GpuSpec`, or ``gpu_mem_gb`` where a space slices GPUs):
those configs fail too, whatever their replicas, CPU cores or queue delay. A container killed
for exceeding its memory limit (Kubernetes ``OOMKilled``) rules out its own base config only:
the limit is sized per config (:func:`autoconf._deployment.model_memory_mb`), so a larger batch
gets a larger one. Nothing else implies anything: a crash, a timeout, a process killed without
a stated reason (``out of memory?``) may not happen again.

The rule lives here only; the search loop (:mod:`autoconf._study`) and the ``meta`` sampler
read it, from the study's measurements (:mod:`autoconf._record`), so a resumed search knows it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ._notation import short
from ._space import SearchSpace
from ._types import Config, Measurement

#: Bytes per weight of each precision: a higher one needs at least as much memory.
PRECISION_BYTES = {"fp32": 4, "fp16": 2, "int8": 1}
#: Errors of an accelerator out of memory: the simulator's, CUDA's, ONNX Runtime's and Triton's.
GPU_OOM = re.compile(
    r"out of gpu memory|cuda[^\n]{0,80}out of memory|cudaErrorMemoryAllocation"
    r"|CUDA_ERROR_OUT_OF_MEMORY|CUBLAS_STATUS_ALLOC_FAILED|gpu[^\n]{0,40}out of memory",
    re.IGNORECASE,
)
#: A container killed at its memory limit (Kubernetes names the reason; a bare SIGKILL does not).
HOST_OOM = re.compile(r"\bOOMKilled\b")

OomKind = Literal["gpu", "host"]


def oom_kind(m: Measurement) -> OomKind | None:
    """``"gpu"`` or ``"host"`` for a measurement that failed out of memory, else None."""
    if m.ok or not m.error:
        return None
    if GPU_OOM.search(m.error):
        return "gpu"
    if HOST_OOM.search(m.error):
        return "host"
    return None


def precision_bytes(config: Config) -> int:
    return PRECISION_BYTES.get(config.precision or "fp32", 4)


def gpu_memory_gb(space: SearchSpace, config: Config) -> float:
    """The accelerator memory a replica of ``config`` has (0: CPU-only serving)."""
    if config.gpu_mem_gb is not None:
        return float(config.gpu_mem_gb)
    spec = space.gpus.get(config.gpu_type)
    return float(spec.memory_gb) if spec is not None else 0.0


def base_key(config: Config) -> tuple:
    """A config without the knobs that do not change a replica's memory (replicas, CPU cores,
    queue delay): what an out-of-memory is a property of."""
    return (
        config.batch_size,
        config.gpu_type,
        config.instances_per_gpu or 1,
        config.gpu_mem_gb,
        config.gpu_share_pct,
        config.precision or "fp32",
    )


@dataclass(frozen=True)
class OutOfMemory:
    """One measured out-of-memory: the trial that measured it, its config, kind and error."""

    trial: int
    config: Config
    kind: OomKind
    error: str
    memory_gb: float

    def implies(self, space: SearchSpace, other: Config) -> bool:
        """Whether ``other`` needs at least the memory that ran out here."""
        if self.kind == "host":
            return base_key(other) == base_key(self.config)
        mem = gpu_memory_gb(space, other)
        c = self.config
        return (
            0.0 < mem <= self.memory_gb
            and other.batch_size >= c.batch_size
            and (other.instances_per_gpu or 1) >= (c.instances_per_gpu or 1)
            and precision_bytes(other) >= precision_bytes(c)
        )

    def mask(self, arrays: ConfigArrays) -> np.ndarray:
        """:meth:`implies` over the configs behind ``arrays`` at once."""
        if self.kind == "host":
            key = base_key(self.config)
            return np.array([b == key for b in arrays.base], dtype=bool)
        c = self.config
        return (
            (arrays.memory_gb > 0.0)
            & (arrays.memory_gb <= self.memory_gb)
            & (arrays.batch >= c.batch_size)
            & (arrays.instances >= (c.instances_per_gpu or 1))
            & (arrays.precision >= precision_bytes(c))
        )

    def reason(self) -> str:
        """Why a config it implies is infeasible, naming the trial (one line)."""
        return f"implied out of memory by trial #{self.trial} ({short(self.config)}: {self.error})"


class ConfigArrays:
    """The memory-relevant knobs of a list of configs as arrays: what :meth:`ImpliedFailures.mask`
    compares against (built once per list; the ``meta`` sampler asks at every suggestion)."""

    def __init__(self, space: SearchSpace, configs: Sequence[Config]) -> None:
        self.batch = np.array([c.batch_size for c in configs], dtype=float)
        self.instances = np.array([c.instances_per_gpu or 1 for c in configs], dtype=float)
        self.memory_gb = np.array([gpu_memory_gb(space, c) for c in configs], dtype=float)
        self.precision = np.array([precision_bytes(c) for c in configs], dtype=float)
        self.base = [base_key(c) for c in configs]


class ImpliedFailures:
    """Every out-of-memory of a study and what it rules out (see the module docstring)."""

    def __init__(self, space: SearchSpace) -> None:
        self.space = space
        self.ooms: list[OutOfMemory] = []
        self._seen: set[Config] = set()

    @classmethod
    def of(
        cls, space: SearchSpace, measured: Iterable[tuple[int, Config, Measurement]]
    ) -> ImpliedFailures:
        """From ``(trial number, config, measurement)`` of a study's measured trials."""
        out = cls(space)
        for number, config, m in measured:
            out.add(number, config, m)
        return out

    def add(self, number: int, config: Config, m: Measurement) -> bool:
        """Learn from one measurement; True when it is a new out-of-memory."""
        kind = oom_kind(m)
        if kind is None or config in self._seen:
            return False
        self._seen.add(config)
        mem = gpu_memory_gb(self.space, config)
        if kind == "gpu" and mem <= 0.0:
            return False  # no accelerator memory to run out of: not a rule about GPUs
        self.ooms.append(OutOfMemory(number, config, kind, m.error or "", mem))
        return True

    def __bool__(self) -> bool:
        return bool(self.ooms)

    def cause(self, config: Config) -> OutOfMemory | None:
        """The first out-of-memory that implies ``config`` fails, if any."""
        for oom in self.ooms:
            if oom.implies(self.space, config):
                return oom
        return None

    def mask(self, arrays: ConfigArrays) -> np.ndarray:
        """Which of the configs behind ``arrays`` some out-of-memory implies (vectorised)."""
        out = np.zeros(len(arrays.batch), dtype=bool)
        for oom in self.ooms:
            out |= oom.mask(arrays)
        return out


__all__ = [
    "PRECISION_BYTES",
    "ConfigArrays",
    "ImpliedFailures",
    "OutOfMemory",
    "gpu_memory_gb",
    "oom_kind",
]
