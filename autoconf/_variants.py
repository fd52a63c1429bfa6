"""A model's variants: the FP16 and INT8 files a search may serve instead of the exported FP32
model, built with ONNX Runtime's own tools, cached, and checked for accuracy against FP32.

- ``fp16``: :func:`onnxruntime.transformers.float16.convert_float_to_float16` with
  ``keep_io_types`` (inputs and outputs stay FP32, so request bodies do not change).
- ``int8``: :mod:`onnxruntime.quantization`. Models with a ``Conv`` are quantized statically
  (QOperator format: ``QLinearConv``, ``QGemm``...; activation ranges calibrated by MinMax on the
  sample inputs); every other model dynamically (``MatMulInteger`` with activations quantized at
  run time), ONNX Runtime's own advice for transformers and RNNs. Weights are per-channel UINT8
  (U8U8): U8S8 saturates on x86 CPUs without VNNI (ONNX Runtime's documentation), which cost a
  random-weight MLP 14% of its top-1 agreement here.

A variant is cached under ``cache_dir()/variants/<model sha256>/`` by the model's content, the
precision, the recipe, the dims and the calibration data (never pickled: ONNX files only). One
that cannot be built or run is :class:`VariantError` with the reason: infeasible, not a crash.

Accuracy (:func:`accuracy`) compares a variant's first output with FP32's on the same sample
inputs (generated from the input signature, :func:`generated_samples`, or the user's
``--sample-inputs FILE.npz``, :func:`load_samples`): for class logits (a 2-D float output with
more than one class) the drop is ``1 - top-1 agreement``; otherwise it is the relative error
``||y - y_fp32|| / ||y_fp32||``. A variant whose drop is over ``--max-accuracy-drop`` is left out
of the space before the search (:func:`trim_space`): never measured for speed.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ._cache import cache_dir
from ._errors import UserError
from ._types import PRECISIONS

log = logging.getLogger(__name__)

#: Changes whenever a recipe below changes, so that cached variants are rebuilt.
RECIPE = "r1"
#: Sample inputs generated for the accuracy check, and (another seed) for calibration.
SAMPLES = 256
CALIBRATION_SAMPLES = 64
#: ``--max-accuracy-drop`` when variants are searched and no bound is given.
DEFAULT_MAX_DROP = 0.01
TOP1 = "top1_agreement"
RELATIVE_ERROR = "relative_error"

Samples = dict[str, np.ndarray]


class VariantError(Exception):
    """A variant that cannot be built or run; the message is the reason (one line)."""


@dataclass(frozen=True)
class Accuracy:
    """How far a variant's outputs are from FP32's: ``drop`` is a fraction (0.01 = 1%)."""

    metric: str
    drop: float
    samples: int

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "drop": round(self.drop, 6), "samples": self.samples}


@dataclass(frozen=True)
class Variant:
    """One precision of a model: its file and accuracy, or why it cannot be served."""

    precision: str
    path: Path | None = None
    accuracy: Accuracy | None = None
    reason: str | None = None

    @property
    def feasible(self) -> bool:
        return self.reason is None


def canonical(precision: str | None) -> str:
    """``None`` (the model as exported) is ``fp32``."""
    return precision or "fp32"


# ----------------------------------------------------------------------------- sample inputs


def _row_shape(shape: tuple[int | str, ...], dims: Mapping[str, int], name: str) -> list[int]:
    """An input's shape for one sample: a symbolic first (batch) dim is 1, other symbolic dims
    take ``dims``."""
    out = []
    for i, d in enumerate(shape):
        if isinstance(d, int) and d > 0:
            out.append(d)
        elif i == 0:
            out.append(1)
        elif str(d) in dims:
            out.append(int(dims[str(d)]))
        else:
            raise UserError(f"input {name!r}: give its dim {d!r} a value with --dim {d}=N")
    return out


def generated_samples(
    model_path: str | Path, dims: Mapping[str, int], n: int = SAMPLES, seed: int = 0
) -> Samples:
    """``n`` samples per input, stacked on the first axis, from the input signature: floats
    standard normal, integer ids within their embedding table's range (else 0 or 1), bools
    random (what :mod:`stress` puts in request bodies)."""
    import kops

    rng = np.random.default_rng(seed)
    out: Samples = {}
    for spec in kops.input_signature(model_path):
        row = _row_shape(spec.shape, dims, spec.name)
        shape = [row[0] * n, *row[1:]] if row else [n]
        if spec.dtype.startswith(("int", "uint")):
            lo, hi = spec.value_range or (0, 1)
            out[spec.name] = rng.integers(lo, hi + 1, size=shape).astype(spec.dtype)
        elif spec.dtype == "bool":
            out[spec.name] = rng.random(shape) < 0.5
        else:
            out[spec.name] = rng.standard_normal(shape).astype(spec.dtype)
    return out


def load_samples(path: str | Path, model_path: str | Path) -> Samples:
    """The user's sample inputs (``--sample-inputs FILE.npz``: one array per model input, named
    like it, samples on the first axis), checked against the input signature; bad files raise
    :class:`UserError` (one line). Loaded with ``allow_pickle=False``."""
    import kops

    where = f"--sample-inputs {path}"
    try:
        with np.load(Path(path), allow_pickle=False) as npz:
            arrays = {k: np.asarray(npz[k]) for k in npz.files}
    except FileNotFoundError:
        raise UserError(f"{where}: file not found") from None
    except (OSError, ValueError, EOFError) as exc:
        raise UserError(f"{where}: not a readable .npz of arrays ({exc})") from None
    specs = {s.name: s for s in kops.input_signature(model_path)}
    missing, extra = sorted(set(specs) - set(arrays)), sorted(set(arrays) - set(specs))
    if missing or extra:
        what = f"missing {', '.join(missing)}" if missing else f"unknown {', '.join(extra)}"
        raise UserError(f"{where}: {what} (the model's inputs: {', '.join(specs)})")
    lengths = {len(a) if a.ndim else 0 for a in arrays.values()}
    if len(lengths) != 1 or 0 in lengths:
        raise UserError(f"{where}: every array needs the same number (>0) of samples on axis 0")
    out: Samples = {}
    for name, a in arrays.items():
        want = np.dtype(specs[name].dtype)
        if a.dtype.kind != want.kind and not (a.dtype.kind in "iu" and want.kind in "iu"):
            raise UserError(f"{where}: {name} is {a.dtype}, the model takes {want}")
        if a.ndim != len(specs[name].shape):
            raise UserError(
                f"{where}: {name} has {a.ndim} dims, the model's input has "
                f"{len(specs[name].shape)} (samples on the batch axis)"
            )
        out[name] = a.astype(want, copy=False)
    return out


def _chunks(samples: Samples, model_path: str | Path) -> Iterator[dict[str, np.ndarray]]:
    """The samples as feeds: one row each (a fixed batch dim: that many rows each)."""
    import kops

    step = 1
    for spec in kops.input_signature(model_path):
        if spec.shape and isinstance(spec.shape[0], int) and spec.shape[0] > 0:
            step = max(step, spec.shape[0])
    n = min(len(a) for a in samples.values())
    for i in range(0, n - step + 1, step):
        yield {k: a[i : i + step] for k, a in samples.items()}


def _samples_hash(samples: Samples) -> str:
    h = hashlib.sha256()
    for k in sorted(samples):
        a = np.ascontiguousarray(samples[k])
        h.update(f"{k}:{a.dtype}:{a.shape};".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


# ----------------------------------------------------------------------------- building


def _session(path: Path) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1  # a shared machine: one core for the check
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _has_conv(model_path: Path) -> bool:
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    return any(n.op_type == "Conv" for n in graph.node)


def _build_fp16(src: Path, dst: Path) -> None:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    onnx.save(model, str(dst))


def _build_int8(src: Path, dst: Path, calibration: Samples) -> str:
    """Quantize ``src`` into ``dst``; returns the method (``static`` or ``dynamic``)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )

    root = logging.getLogger()
    root.addFilter(_quiet_preprocessing)
    try:
        if not _has_conv(src):
            quantize_dynamic(src, dst, per_channel=True, weight_type=QuantType.QUInt8)
            return "dynamic"
        feeds = list(_chunks(calibration, src))

        class Reader(CalibrationDataReader):
            def __init__(self) -> None:
                self._it = iter(feeds)

            def get_next(self) -> dict[str, np.ndarray] | None:
                return next(self._it, None)

        quantize_static(
            src,
            dst,
            Reader(),
            quant_format=QuantFormat.QOperator,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QUInt8,
        )
        return "static"
    finally:
        root.removeFilter(_quiet_preprocessing)


def _quiet_preprocessing(record: logging.LogRecord) -> bool:
    """Drops the quantizer's advice to pre-process (logged on the root logger on every call)."""
    return not str(record.msg).startswith("Please consider")


def variant_file(
    model_path: str | Path,
    precision: str | None,
    dims: Mapping[str, int] | None = None,
    calibration: Samples | None = None,
) -> Path:
    """The file serving ``precision`` of the model: the model itself for FP32, else its cached
    variant (built now if absent). ``calibration`` (INT8 of conv models) defaults to samples
    generated at ``dims``. Raises :class:`VariantError` when it cannot be built."""
    from ._plan import sha256_of

    model_path = Path(model_path)
    precision = canonical(precision)
    if precision not in PRECISIONS:
        raise VariantError(f"unknown precision {precision!r} (known: {', '.join(PRECISIONS)})")
    if precision == "fp32":
        return model_path
    key = [RECIPE]
    if precision == "int8" and _has_conv(model_path):
        calibration = calibration or generated_samples(
            model_path, dims or {}, CALIBRATION_SAMPLES, seed=1
        )
        key.append(_samples_hash(calibration))
    folder = cache_dir() / "variants" / sha256_of(model_path)
    dst = folder / f"{precision}-{'-'.join(key)}.onnx"
    if dst.is_file():
        return dst
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(suffix=".onnx", dir=folder)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        if precision == "fp16":
            _build_fp16(model_path, tmp)
        else:
            method = _build_int8(model_path, tmp, calibration or {})
            log.info("%s: INT8 variant quantized %sally", model_path.name, method)
        os.chmod(tmp, 0o644)
        os.replace(tmp, dst)  # atomic: a parallel worker never reads half a file
    except Exception as exc:  # noqa: BLE001 - ORT's tools raise anything; the reason is kept
        tmp.unlink(missing_ok=True)
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise VariantError(f"{precision} variant cannot be built: {reason}") from exc
    return dst


# ----------------------------------------------------------------------------- accuracy


def _outputs(path: Path, samples: Samples, model_path: Path) -> tuple[np.ndarray, bool]:
    """The first output over every sample, one row each, and whether it is class logits (a 2-D
    float output with more than one class)."""
    try:
        session = _session(path)
        rows = [session.run(None, feed)[0] for feed in _chunks(samples, model_path)]
    except Exception as exc:  # noqa: BLE001 - ORT raises its own types; the reason is kept
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise VariantError(f"cannot run on ONNX Runtime's CPU provider: {reason}") from exc
    if not rows:
        raise UserError("no sample inputs to check the variants' accuracy on")
    first = np.asarray(rows[0])
    logits = first.ndim == 2 and first.shape[1] > 1 and first.dtype.kind == "f"
    stacked = np.concatenate([np.asarray(r).reshape(len(r), -1) for r in rows])
    return stacked.astype(np.float64), logits


def compare(reference: np.ndarray, other: np.ndarray, metric: str) -> float:
    """The drop of ``other`` against ``reference`` under ``metric`` (0 = identical)."""
    if metric == TOP1:
        return float(1.0 - np.mean(reference.argmax(axis=1) == other.argmax(axis=1)))
    norm = float(np.linalg.norm(reference))
    diff = float(np.linalg.norm(other - reference))
    if not math.isfinite(diff):
        return math.inf
    return diff / norm if norm > 0 else (0.0 if diff == 0 else math.inf)


def check_variants(
    model_path: str | Path,
    precisions: list[str],
    *,
    max_drop: float,
    samples: Samples,
    calibration: Samples | None = None,
    dims: Mapping[str, int] | None = None,
) -> dict[str, Variant]:
    """Each precision built (cached) and checked against FP32 on ``samples``: feasible with its
    accuracy, or infeasible with the reason (cannot be built or run; drop over ``max_drop``)."""
    model_path = Path(model_path)
    try:
        reference, logits = _outputs(model_path, samples, model_path)
    except VariantError as exc:
        raise UserError(f"{model_path.name}: the FP32 model {exc}") from None
    metric = TOP1 if logits else RELATIVE_ERROR
    n = len(reference)
    out: dict[str, Variant] = {}
    for precision in dict.fromkeys(canonical(p) for p in precisions):
        if precision == "fp32":
            out[precision] = Variant(precision, model_path, Accuracy(metric, 0.0, n))
            continue
        try:
            path = variant_file(model_path, precision, dims, calibration)
            drop = compare(reference, _outputs(path, samples, model_path)[0], metric)
        except VariantError as exc:
            out[precision] = Variant(precision, reason=str(exc))
            continue
        acc = Accuracy(metric, drop, n)
        if drop > max_drop:
            reason = (
                f"accuracy drop {_pct(drop)} ({metric.replace('_', ' ')} on {n} samples) is over "
                f"--max-accuracy-drop {_pct(max_drop)}"
            )
            out[precision] = Variant(precision, path, acc, reason)
        else:
            out[precision] = Variant(precision, path, acc)
        log.info("%s %s: %s drop %s", model_path.name, precision, metric, _pct(drop))
    return out


def _pct(x: float) -> str:
    return f"{x * 100:.2f}%" if math.isfinite(x) else "inf"


def parse_drop(value: str | float, option: str = "--max-accuracy-drop") -> float:
    """``1%`` or ``0.01`` -> 0.01: a fraction in [0, 1]; anything else a one-line
    :class:`UserError`."""
    text = str(value).strip()
    pct = text.endswith("%")
    try:
        x = float(text[:-1] if pct else text)
    except ValueError:
        raise UserError(f"{option}: expected a share like 1% or 0.01, got {value!r}") from None
    x = x / 100 if pct else x
    if not math.isfinite(x) or not 0.0 <= x <= 1.0:
        raise UserError(f"{option}: must be between 0% and 100%, got {value!r}")
    return x


def parse_precisions(value: str, option: str = "--precisions") -> list[str]:
    """``fp32,int8`` -> ``["fp32", "int8"]`` (known names, no repeats, at least one)."""
    names = [p.strip().lower() for p in str(value).split(",") if p.strip()]
    if not names:
        raise UserError(f"{option}: give at least one of {', '.join(PRECISIONS)}")
    for p in names:
        if p not in PRECISIONS:
            raise UserError(f"{option}: unknown precision {p!r} (known: {', '.join(PRECISIONS)})")
    return list(dict.fromkeys(names))


def with_precisions(space: Any, precisions: list[str] | None) -> Any:
    """``space`` searching ``precisions`` (``--precisions``: replaces its ``precision``
    dimension, or adds one)."""
    if not precisions:
        return space
    dims = {**space.dimensions, "precision": list(precisions)}
    return type(space).model_validate({**space.model_dump(), "dimensions": dims})


def trim_space(space: Any, variants: Mapping[str, Variant]) -> tuple[Any, list[str]]:
    """``space`` without the infeasible precisions, and one note per precision left out (its
    reason); :class:`UserError` when none is left."""
    values = space.values("precision")
    keep = [p for p in values if variants[canonical(p)].feasible]
    notes = [
        f"precision {p} left out: {variants[canonical(p)].reason}" for p in values if p not in keep
    ]
    if not keep:
        raise UserError(f"no precision of {', '.join(map(str, values))} is feasible: {notes[0]}")
    for note in notes:
        log.warning(note)
    if keep == values:
        return space, notes
    dims = {**space.dimensions, "precision": keep}
    return space.model_copy(update={"dimensions": dims}), notes
