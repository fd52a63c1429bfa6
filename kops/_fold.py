"""Constant-fold the small integer "shape arithmetic" of exported graphs so shape inference resolves.

Exporters compute Reshape/Slice/Expand arguments at run time from ``Shape`` of activations
(``x.view(b, t, h, -1)``). Once the symbolic dims have values, those arguments are constants;
ONNX shape inference alone does not propagate them through every op (Slice, Div, Where...).
This pass evaluates them with numpy (tensors of at most ``MAX_ELEMENTS`` elements), feeds the
results to their consumers as initializers, and re-runs inference until nothing new resolves.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

MAX_ELEMENTS = 4096
MAX_ROUNDS = 8
PREFIX = "__kops_folded::"


def _attr(node: onnx.NodeProto, name: str, default=None):
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _ints(x) -> list[int]:
    return [int(v) for v in np.asarray(x).reshape(-1)]


def _slice(node, v):
    data = v[0]
    if len(v) >= 3:
        starts, ends = _ints(v[1]), _ints(v[2])
        axes = _ints(v[3]) if len(v) > 3 and v[3] is not None else list(range(len(starts)))
        steps = _ints(v[4]) if len(v) > 4 and v[4] is not None else [1] * len(starts)
    else:
        starts, ends = _attr(node, "starts"), _attr(node, "ends")
        axes = _attr(node, "axes", list(range(len(starts))))
        steps = [1] * len(starts)
    idx = [slice(None)] * data.ndim
    for s, e, a, st in zip(starts, ends, axes, steps):
        idx[a] = slice(s, e, st)
    return data[tuple(idx)]


def _unsqueeze(node, v):
    axes = _ints(v[1]) if len(v) > 1 else _attr(node, "axes")
    out = v[0]
    rank = out.ndim + len(axes)
    for a in sorted(a % rank for a in axes):
        out = np.expand_dims(out, a)
    return out


def _squeeze(node, v):
    axes = _ints(v[1]) if len(v) > 1 and v[1] is not None else _attr(node, "axes")
    return np.squeeze(v[0], axis=tuple(axes) if axes else None)


def _div(node, v):
    a, b = v
    if np.issubdtype(a.dtype, np.integer):
        return (np.trunc(a / b)).astype(a.dtype)
    return a / b


def _cast(node, v):
    return v[0].astype(helper.tensor_dtype_to_np_dtype(_attr(node, "to")))


def _reshape(node, v):
    shape = _ints(v[1])
    shape = [v[0].shape[i] if s == 0 else s for i, s in enumerate(shape)]
    return v[0].reshape(shape)


def _constant_of_shape(node, v):
    shape = _ints(v[0])
    t = _attr(node, "value")
    fill = numpy_helper.to_array(t).reshape(-1)[0] if t is not None else np.float32(0)
    return np.full(shape, fill, dtype=np.asarray(fill).dtype)


def _range(node, v):
    s, lim, d = (np.asarray(x).reshape(()) for x in v)
    return np.arange(s, lim, d, dtype=np.asarray(s).dtype)


EVAL: dict[str, Callable] = {
    "Identity": lambda n, v: v[0],
    "Gather": lambda n, v: np.take(v[0], v[1], axis=_attr(n, "axis", 0)),
    "Unsqueeze": _unsqueeze,
    "Squeeze": _squeeze,
    "Concat": lambda n, v: np.concatenate([np.atleast_1d(x) for x in v], axis=_attr(n, "axis")),
    "Slice": _slice,
    "Cast": _cast,
    "Add": lambda n, v: v[0] + v[1],
    "Sub": lambda n, v: v[0] - v[1],
    "Mul": lambda n, v: v[0] * v[1],
    "Div": _div,
    "Mod": lambda n, v: np.mod(v[0], v[1]),
    "Neg": lambda n, v: -v[0],
    "Abs": lambda n, v: np.abs(v[0]),
    "Floor": lambda n, v: np.floor(v[0]),
    "Ceil": lambda n, v: np.ceil(v[0]),
    "Sqrt": lambda n, v: np.sqrt(v[0]),
    "Min": lambda n, v: np.minimum.reduce(v),
    "Max": lambda n, v: np.maximum.reduce(v),
    "Equal": lambda n, v: np.equal(v[0], v[1]),
    "Less": lambda n, v: np.less(v[0], v[1]),
    "Greater": lambda n, v: np.greater(v[0], v[1]),
    "Not": lambda n, v: np.logical_not(v[0]),
    "And": lambda n, v: np.logical_and(v[0], v[1]),
    "Or": lambda n, v: np.logical_or(v[0], v[1]),
    "Where": lambda n, v: np.where(v[0], v[1], v[2]),
    "Reshape": _reshape,
    "Expand": lambda n, v: v[0] * np.ones(_ints(v[1]), dtype=v[0].dtype),
    "ConstantOfShape": _constant_of_shape,
    "Range": _range,
    "ReduceProd": lambda n, v: np.prod(v[0], keepdims=bool(_attr(n, "keepdims", 1))),
    "Transpose": lambda n, v: np.transpose(v[0], _attr(n, "perm")),
}


def _small_constants(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    values: dict[str, np.ndarray] = {}
    for init in graph.initializer:
        if init.data_location == TensorProto.EXTERNAL:
            continue
        n = int(np.prod(init.dims)) if init.dims else 1
        if n <= MAX_ELEMENTS:
            with contextlib.suppress(Exception):
                values[init.name] = numpy_helper.to_array(init)
    return values


def _shapes(graph: onnx.GraphProto) -> dict[str, list[int]]:
    out = {}
    for vi in (*graph.input, *graph.value_info, *graph.output):
        t = vi.type.tensor_type
        if t.HasField("shape") and all(d.HasField("dim_value") for d in t.shape.dim):
            out[vi.name] = [d.dim_value for d in t.shape.dim]
    for init in graph.initializer:
        out[init.name] = list(init.dims)
    return out


def _small_result(op: str, ins: list) -> bool:
    """Refuse ops whose output size comes from a value (not an input's size) when it is large."""
    if op in ("Expand", "ConstantOfShape"):
        shape = _ints(ins[1] if op == "Expand" else ins[0])
        return int(np.prod(shape, dtype=np.float64)) <= MAX_ELEMENTS and min(shape, default=1) >= 0
    if op == "Range":
        s, lim, d = (float(np.asarray(x).reshape(-1)[0]) for x in ins)
        return d != 0 and (lim - s) / d <= MAX_ELEMENTS
    return True


def fold_round(model: onnx.ModelProto) -> int:
    """Evaluate what can be evaluated and rewire consumers to the results; returns how many."""
    graph = model.graph
    values = _small_constants(graph)
    shapes = _shapes(graph)
    produced: set[str] = set()
    for node in graph.node:
        try:
            if node.op_type == "Constant":
                t = _attr(node, "value")
                if isinstance(t, TensorProto):
                    values[node.output[0]] = numpy_helper.to_array(t)
                else:
                    for key in ("value_int", "value_ints", "value_float", "value_floats"):
                        if (x := _attr(node, key)) is not None:
                            values[node.output[0]] = np.array(x)
                continue
            if node.op_type == "Shape" and node.input[0] in shapes:
                shp = shapes[node.input[0]]
                start, end = _attr(node, "start", 0), _attr(node, "end", None)
                values[node.output[0]] = np.array(shp[start:end], dtype=np.int64)
                produced.add(node.output[0])
                continue
            if node.op_type == "Size" and node.input[0] in shapes:
                values[node.output[0]] = np.array(
                    int(np.prod(shapes[node.input[0]])), dtype=np.int64
                )
                produced.add(node.output[0])
                continue
            fn = EVAL.get(node.op_type)
            if fn is None or len(node.output) != 1 or node.domain not in ("", "ai.onnx"):
                continue
            ins = [values.get(i) if i else None for i in node.input]
            if any(i and values.get(i) is None for i in node.input):
                continue
            if not _small_result(node.op_type, ins):
                continue
            out = np.asarray(fn(node, ins))
            if out.size <= MAX_ELEMENTS:
                values[node.output[0]] = out
                produced.add(node.output[0])
        except Exception:
            continue
    existing = {i.name for i in graph.initializer}
    rewired = 0
    for node in graph.node:
        for k, name in enumerate(node.input):
            if name in produced:
                folded = PREFIX + name
                if folded not in existing:
                    graph.initializer.append(numpy_helper.from_array(values[name], folded))
                    existing.add(folded)
                node.input[k] = folded
                rewired += 1
    return rewired
