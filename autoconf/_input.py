"""The one place where user input is checked before anything runs: bounds on every number,
output paths, and backend options (from the command line or from a plan file).

Every check ends, when the input is wrong, as one :class:`UserError` line (exit 2) naming the
option or field, so a bad flag never reaches a server, a load generator or a storage and never
ends as a traceback. The bounds are sane maxima, not hardware limits: past them a run would
exhaust memory (the load generator keeps every request's latency) or never end.
"""

from __future__ import annotations

import math
import os
import re
import tempfile
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ._errors import UserError

MAX_RATE_RPS = 100_000.0
MAX_DURATION_S = 24 * 3600.0
MAX_LATENCY_MS = 3600_000.0
#: rate x (warm-up + duration): the load generator keeps every request's latency in memory.
MAX_REQUESTS = 20_000_000
MAX_BATCH_SIZE = 4096
MAX_REPLICAS = 1000
MAX_CPU_CORES = 1024.0
MAX_MEMORY_MB = 4 * 1024 * 1024
MAX_INSTANCES = 64
MAX_QUEUE_DELAY_MS = 60_000.0
MAX_GPU_MEM_GB = 4096.0
MAX_BUDGET = 100_000
MAX_PARALLEL = 256
MAX_STEPS = 100
MAX_DIM = 1_000_000
#: values in one dimension of a space, and configs in a whole space (each is materialized).
MAX_DIMENSION_VALUES = 10_000
MAX_SPACE_CONFIGS = 200_000


def number(
    value: Any,
    option: str,
    *,
    maximum: float,
    minimum: float = 0.0,
    allow_min: bool = False,
    integer: bool = False,
) -> float | int:
    """``value`` as a finite number in (``minimum``, ``maximum``] (``[minimum, ...`` with
    ``allow_min``); an int when ``integer``."""
    if isinstance(value, bool):
        raise UserError(f"{option}: expected a number, got {value!r}")
    try:
        x = float(value)
    except (TypeError, ValueError, OverflowError):
        raise UserError(f"{option}: expected a number, got {value!r}") from None
    if not math.isfinite(x):
        raise UserError(f"{option}: must be a finite number, got {value!r}")
    if integer and not x.is_integer():
        raise UserError(f"{option}: must be a whole number, got {value!r}")
    low_ok = x >= minimum if allow_min else x > minimum
    if not low_ok or x > maximum:
        sign = ">=" if allow_min else ">"
        raise UserError(f"{option}: must be {sign} {minimum:g} and <= {maximum:g}, got {value!r}")
    return int(x) if integer else x


def rate_rps(value: Any, option: str = "--rate") -> float:
    return float(number(value, option, maximum=MAX_RATE_RPS))


def count(value: Any, option: str, maximum: int) -> int:
    """A whole number in [1, maximum]."""
    return int(number(value, option, minimum=1, allow_min=True, maximum=maximum, integer=True))


def check_requests(rate: float, seconds: float, option: str = "--rate x --duration") -> None:
    """Refuse a measurement that would send more than :data:`MAX_REQUESTS` requests."""
    if rate * seconds > MAX_REQUESTS:
        raise UserError(
            f"{option}: {rate:g} requests/s for {seconds:g} s is {rate * seconds:,.0f} requests; "
            f"at most {MAX_REQUESTS:,} per measurement"
        )


def out_dir(path: str | Path, option: str = "--out") -> Path:
    """A directory the command can write into (made if missing), checked before any work."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise UserError(f"{option}: {str(p)!r} exists and is not a directory")
    try:
        p.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=p):
            pass
    except OSError as exc:
        raise UserError(f"{option}: cannot write into {str(p)!r}: {exc.strerror or exc}") from None
    return p


def out_file(path: str | Path, option: str) -> Path:
    """A file the command can write (its folder made if missing), checked before any work."""
    p = Path(path)
    if p.is_dir():
        raise UserError(f"{option}: {str(p)!r} is a directory; give a file name")
    out_dir(p.parent if str(p.parent) else Path("."), option)
    if p.exists() and not os.access(p, os.W_OK):
        raise UserError(f"{option}: {str(p)!r} is not writable")
    return p


# -- backend options ----------------------------------------------------------------------------

Seconds = Annotated[float, Field(gt=0, le=MAX_DURATION_S, allow_inf_nan=False)]
Rate = Annotated[float, Field(gt=0, le=MAX_RATE_RPS, allow_inf_nan=False)]
Text = Annotated[str, Field(min_length=1, max_length=512)]


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=False)


class _LiveOptions(_Options):
    """Options of every live backend (``autoconf.backends._live.LiveBackend``)."""

    study: Text | None = None
    warmup_s: Annotated[float, Field(ge=0, le=3600, allow_inf_nan=False)] | None = None
    max_steps: Annotated[int, Field(ge=1, le=MAX_STEPS)] | None = None
    capacity_step_s: Seconds | None = None
    start_rps: Rate | None = None


class LocalDeployerOptions(_Options):
    """The ``local`` deployer of ``stress`` (``stress._local.LocalDeployer``)."""

    ready_timeout_s: Seconds | None = None
    host: Text | None = None
    ports: list[Annotated[int, Field(ge=1, le=65535)]] | None = None
    generator_processes: Annotated[int, Field(ge=1, le=MAX_PARALLEL)] | None = None
    inflight_cap: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    request_timeout_s: Seconds | None = None
    dims: dict[Text, Annotated[int, Field(ge=1, le=MAX_DIM)]] | None = None
    oversubscribe: bool | None = None
    max_windows: Annotated[int, Field(ge=1, le=1000)] | None = None
    runtime: Literal["server", "triton"] | None = None


class KubernetesDeployerOptions(_Options):
    """The ``kubernetes`` deployer of ``stress`` (``stress._kubernetes.KubernetesDeployer``)."""

    study: Text | None = None
    namespace: Text | None = None
    kubeconfig: Text | None = None
    context: Text | None = None
    image: Text | None = None
    fetch_image: Text | None = None
    locust_image: Text | None = None
    model_uri: Text | None = None
    gpu_label: Text | None = None
    gpu_product_labels: Text | dict[Text, Text] | None = None
    default_memory_mb: Annotated[int, Field(ge=1, le=MAX_MEMORY_MB)] | None = None
    rollout_timeout_s: Seconds | None = None
    unschedulable_grace_s: Seconds | None = None
    load_startup_timeout_s: Seconds | None = None
    poll_s: Annotated[float, Field(gt=0, le=600, allow_inf_nan=False)] | None = None
    parallelism: Annotated[int, Field(ge=1, le=MAX_PARALLEL)] | None = None
    load_workers: Annotated[int, Field(ge=1, le=1000)] | None = None
    rate_per_worker: Rate | None = None
    inflight_cap: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    request_timeout_s: Seconds | None = None
    dims: dict[Text, Annotated[int, Field(ge=1, le=MAX_DIM)]] | None = None


class LocalOptions(_LiveOptions, LocalDeployerOptions):
    """The ``local`` backend: a live backend on the local deployer."""


class KubernetesOptions(_LiveOptions, KubernetesDeployerOptions):
    """The ``kubernetes`` backend: a live backend on the kubernetes deployer."""


class SimOptions(_Options):
    seed: Annotated[int, Field(ge=0, le=2**32 - 1)] | None = None


class ReplayOptions(_Options):
    tables: Text | None = None


#: backend name -> the options it takes (a new backend adds one line; a contract test checks
#: that every backend of ``autoconf.backends.BACKENDS`` has one).
BACKEND_OPTIONS: dict[str, type[_Options]] = {
    "local": LocalOptions,
    "kubernetes": KubernetesOptions,
    "sim": SimOptions,
    "replay": ReplayOptions,
}

#: deployer name -> the options it takes (``autoconf stress --option``).
DEPLOYER_OPTIONS: dict[str, type[_Options]] = {
    "local": LocalDeployerOptions,
    "kubernetes": KubernetesDeployerOptions,
}

#: Options a plan file may not set: they decide where servers listen, which cluster and
#: credentials are used, or what image runs. A plan is a file anyone may edit; these come from
#: the command line of whoever runs it.
NOT_FROM_PLAN = frozenset(
    {"host", "ports", "kubeconfig", "context", "image", "fetch_image", "locust_image", "model_uri"}
)


def backend_options(
    backend: str, options: dict[str, Any], where: str = "--backend-option"
) -> dict[str, Any]:
    """``options`` checked against what ``backend`` takes; only the options given are returned
    (the backend's own defaults hold for the rest)."""
    schema = BACKEND_OPTIONS.get(backend)
    if schema is None:  # unknown: ``get_backend`` says so (or a caller's own double is used)
        return dict(options)
    return _checked(schema, backend, options, where)


def deployer_options(deployer: str, options: dict[str, Any], where: str) -> dict[str, Any]:
    """``options`` checked against what the ``stress`` deployer ``deployer`` takes."""
    schema = DEPLOYER_OPTIONS.get(deployer)
    if schema is None:
        raise UserError(f"unknown deployer {deployer!r} (known: {', '.join(DEPLOYER_OPTIONS)})")
    return _checked(schema, deployer, options, where)


def _checked(
    schema: type[_Options], backend: str, options: dict[str, Any], where: str
) -> dict[str, Any]:
    try:
        checked = schema.model_validate(options)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"][:2])
        if err["type"] == "extra_forbidden":
            known = ", ".join(sorted(schema.model_fields))
            raise UserError(
                f"{where}: unknown option {key!r} for backend {backend!r} (known: {known})"
            ) from None
        raise UserError(f"{where}: {key}: {err['msg']}") from None
    out = {k: getattr(checked, k) for k in checked.model_fields_set}
    for key, value in out.items():  # None in a schema means "not given", never a value
        if value is None:
            raise UserError(f"{where}: {key}: needs a value, got null")
    return out


def plan_backend_options(backend: str, options: dict[str, Any], where: str) -> dict[str, Any]:
    """A plan file's ``backend_options``: checked like the command line's, and refused when
    they name one of :data:`NOT_FROM_PLAN`."""
    for key in options:
        if key in NOT_FROM_PLAN:
            raise UserError(
                f"{where}: backend_options.{key}: not taken from a plan file (it decides where "
                f"servers listen or what runs); give --backend-option {key}=... if you mean it"
            )
    return backend_options(backend, options, f"{where}: backend_options")


def plan_safe(options: dict[str, Any]) -> dict[str, Any]:
    """The options a search writes into its plan: scalars, none of :data:`NOT_FROM_PLAN`."""
    return {
        k: v
        for k, v in options.items()
        if k not in NOT_FROM_PLAN and isinstance(v, (str, int, float, bool))
    }


#: bytes of one request's inputs (at the config's batch size): past it a server would try to
#: allocate gigabytes for one request.
MAX_REQUEST_BYTES = 256 * 1024 * 1024


def request_bytes(inputs: list[Any], dims: dict[str, int], batch_size: int = 1) -> int:
    """Bytes of one request to a model with these kops ``TensorSpec`` inputs (symbolic dims
    resolved); refuses a request over :data:`MAX_REQUEST_BYTES`."""
    import numpy as np

    total = 0
    for spec in inputs:
        elements = 1
        for d in spec.shape:
            elements *= int(d) if isinstance(d, int) else int(dims.get(str(d), 1))
        try:
            size = np.dtype(spec.dtype).itemsize
        except TypeError:
            size = 8
        total += elements * size
    total *= max(1, batch_size)
    if total > MAX_REQUEST_BYTES:
        raise UserError(
            f"one request to this model is {total / 2**20:,.0f} MiB (inputs at batch size "
            f"{batch_size}); at most {MAX_REQUEST_BYTES // 2**20} MiB"
        )
    return total


_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_IMAGE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@-]{0,254}$")


def model_uri(value: str | None, option: str = "--model-uri") -> str | None:
    """Where the model is stored, as pods can fetch it (``s3://``, ``gs://``, ``https://``,
    ``http://``, ``pvc://CLAIM/PATH``), or None."""
    if value is None:
        return None
    import stress

    try:
        return stress.check_model_uri(str(value))
    except stress.StressError as exc:
        raise UserError(f"{option}: {exc}") from None


def namespace(value: str, option: str = "--namespace") -> str:
    """A Kubernetes namespace name (a DNS label)."""
    if not _DNS_LABEL.match(str(value)):
        raise UserError(
            f"{option}: {value!r} is not a namespace name (lowercase letters, digits and '-', "
            "at most 63)"
        )
    return str(value)


def image(value: str | None, option: str = "--image") -> str | None:
    """A container image reference (``registry/name:tag`` or ``...@sha256:...``), or None."""
    if value is None:
        return None
    if not _IMAGE.match(str(value)):
        raise UserError(f"{option}: {value!r} is not an image reference, e.g. {_TRITON_EXAMPLE}")
    return str(value)


_TRITON_EXAMPLE = "nvcr.io/nvidia/tritonserver:24.08-py3"


def reachable_model(model_path: Path, uri: str | None, flag: str) -> None:
    """Refuses (before any cluster call) a model the cluster's pods cannot get: no storage URI
    and too big to embed in a ConfigMap; the one line names ``flag``."""
    import stress

    size = Path(model_path).stat().st_size
    if uri is None and size > stress.MAX_EMBEDDED_MODEL_BYTES:
        raise UserError(
            f"{Path(model_path).name} ({size / 2**20:,.1f} MiB) is too big to reach the "
            f"cluster's pods in a ConfigMap: store it and give {flag} "
            "(s3://, gs://, https:// or pvc://CLAIM/PATH)"
        )
