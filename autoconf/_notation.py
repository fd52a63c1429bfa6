"""How the report and the live display write a config (``bs8 T4 x2 4c i2 q5ms``, ``... int8`` for a
model variant), and its legend."""

from __future__ import annotations

from ._types import Config

#: The config notation of every table and plot, one (prefix, meaning) per dimension.
LEGEND = (
    ("bs8", "batch size: the server batches up to 8 requests into one inference"),
    ("T4, L4, cpu", "accelerator type per replica (cpu: no GPU)"),
    ("x2", "replicas: 2 copies of the server behind one service"),
    ("4c", "CPU cores per replica"),
    ("i2", "model instances per replica (per GPU): concurrent executions"),
    ("q5ms", "maximum queue delay: how long a request may wait for its batch to fill"),
    ("m8GB, s50%", "GPU memory and share of a fractional GPU (Falcon spaces only)"),
    ("fp16, int8", "the model variant served (absent: the model as exported, FP32)"),
)


def short(c: Config) -> str:
    """A config in the report's notation (see :data:`LEGEND`), e.g. ``bs8 T4 x2 4c i2 q5ms``;
    a precision other than FP32 is written last (``bs8 T4 x2 4c q5ms int8``)."""
    d = c.to_dict()
    parts = [
        f"bs{d['batch_size']}",
        str(d["gpu_type"]),
        f"x{d['replicas']}",
        f"{d['cpu_cores']:g}c",
    ]
    if "instances_per_gpu" in d:
        parts.append(f"i{d['instances_per_gpu']}")
    if "max_queue_delay_ms" in d:
        parts.append(f"q{d['max_queue_delay_ms']:g}ms")
    if "gpu_mem_gb" in d:
        parts.append(f"m{d['gpu_mem_gb']:g}GB")
    if "gpu_share_pct" in d:
        parts.append(f"s{d['gpu_share_pct']}%")
    if d.get("precision", "fp32") != "fp32":
        parts.append(str(d["precision"]))
    return " ".join(parts)


def again(backend: str) -> str:
    """What the chosen config's second look was: simulated (the ``sim`` backend measures
    nothing) or re-measured."""
    return "simulated" if backend == "sim" else "re-measured"
