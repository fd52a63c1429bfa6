"""``profile``: walk a shape-inferred ONNX graph and total FLOPs, bytes and roofline time per op type."""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

from . import _cost, _load
from ._errors import KopsError

#: Roofline reference device: an A100-like accelerator, fp32 (non-tensor-core) peak and HBM bandwidth.
PEAK_FLOPS_PER_S = 19.5e12
BANDWIDTH_BYTES_PER_S = 1555e9
#: Key operators: the fewest op types whose estimated time adds up to at least this share.
KEY_OPERATOR_COVERAGE = 0.90

FEATURE_VERSION = 1
_TIME_SHARES = tuple(f"time_share_{c}" for c in _cost.CATEGORIES)
_FLOP_SHARES = tuple(
    f"flop_share_{c}"
    for c in ("conv", "depthwise_conv", "matmul", "attention", "recurrent", "elementwise")
)
#: The feature vector's fields, in order (documented in the README, section ``autoconf kops``).
FEATURE_NAMES: tuple[str, ...] = (
    "log10_flops",
    "log10_params",
    "log10_activation_bytes",
    "log10_arithmetic_intensity",
    "log10_flops_per_param",
    "log10_est_time_s",
    "memory_bound_time_fraction",
    "param_bytes_fraction",
    "token_input",
    "log10_nodes",
    *_TIME_SHARES,
    *_FLOP_SHARES,
)

_PARAM_TYPES = {
    TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16, TensorProto.DOUBLE,
    TensorProto.INT8, TensorProto.UINT8, TensorProto.INT4, TensorProto.UINT4,
    TensorProto.FLOAT8E4M3FN, TensorProto.FLOAT8E5M2,
}  # fmt: skip


@dataclass
class TensorSpec:
    """A graph input or output: numpy dtype name, shape (symbolic dims keep their names)."""

    name: str
    dtype: str
    shape: tuple[int | str, ...]
    value_range: tuple[int, int] | None = None  # integer ids into an embedding table: (0, rows-1)


@dataclass
class OpTypeStats:
    """Totals of one op type at the profiled dims."""

    count: int = 0
    flops: float = 0.0
    bytes: float = 0.0  # activations read + written + parameters read
    est_time_s: float = 0.0  # roofline time on the reference device
    share: float = 0.0  # of the model's estimated time


@dataclass
class ModelProfile:
    """What kops knows about a model from its graph alone, at the given symbolic dims."""

    name: str
    path: str
    dims: dict[str, int]
    default_dims: list[str]
    total_flops: float
    total_params: int
    param_bytes: int
    activation_bytes: int
    op_types: dict[str, OpTypeStats]
    key_operators: list[str]
    unknown_ops: dict[str, int]
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    warnings: list[str] = field(default_factory=list)
    est_time_s: float = 0.0  # roofline total on the reference device
    node_count: int = 0
    memory_bound_time_fraction: float = 0.0
    category_time_share: dict[str, float] = field(default_factory=dict)
    category_flops: dict[str, float] = field(default_factory=dict)

    @property
    def gflops(self) -> float:
        return self.total_flops / 1e9

    @property
    def total_bytes(self) -> float:
        """Bytes moved by all nodes (activations read and written, parameters read)."""
        return float(sum(s.bytes for s in self.op_types.values()))

    @property
    def arithmetic_intensity(self) -> float:
        """FLOPs per byte moved."""
        return self.total_flops / self.total_bytes if self.total_bytes else 0.0

    @property
    def contraction_flops(self) -> float:
        """FLOPs of convolutions, matrix products, attention and recurrent cells (what
        FlopCounterMode counts); the rest of ``total_flops`` is element-wise-like work."""
        return float(sum(self.category_flops.get(c, 0.0) for c in _cost.CONTRACTION_CATEGORIES))

    @property
    def feature_names(self) -> tuple[str, ...]:
        return FEATURE_NAMES

    def features(self) -> np.ndarray:
        """Fixed-length (``FEATURE_NAMES``) float64 vector; shares are size-invariant, totals log10."""

        def lg(x: float) -> float:
            return math.log10(max(float(x), 1e-12))

        bytes_total = self.param_bytes + self.activation_bytes
        flops = max(self.total_flops, 1.0)
        f = {
            "log10_flops": lg(flops),
            "log10_params": lg(max(self.total_params, 1)),
            "log10_activation_bytes": lg(max(self.activation_bytes, 1)),
            "log10_arithmetic_intensity": lg(max(self.arithmetic_intensity, 1e-3)),
            "log10_flops_per_param": lg(flops / max(self.total_params, 1)),
            "log10_est_time_s": lg(max(self.est_time_s, 1e-9)),
            "memory_bound_time_fraction": self.memory_bound_time_fraction,
            "param_bytes_fraction": self.param_bytes / bytes_total if bytes_total else 0.0,
            "token_input": float(any(s.value_range is not None for s in self.inputs)),
            "log10_nodes": lg(max(self.node_count, 1)),
        }
        for c in _cost.CATEGORIES:
            f[f"time_share_{c}"] = self.category_time_share.get(c, 0.0)
        for name in _FLOP_SHARES:
            c = name.removeprefix("flop_share_")
            f[name] = self.category_flops.get(c, 0.0) / flops
        return np.array([f[n] for n in FEATURE_NAMES], dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (what ``autoconf kops --json`` prints)."""
        d = asdict(self)
        d["gflops"] = self.gflops
        d["arithmetic_intensity"] = self.arithmetic_intensity
        d["feature_version"] = FEATURE_VERSION
        d["feature_names"] = list(FEATURE_NAMES)
        d["features"] = [float(x) for x in self.features()]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelProfile:
        """Inverse of ``to_dict`` (derived keys are ignored)."""
        names = {f for f in cls.__dataclass_fields__}
        kw = {k: v for k, v in d.items() if k in names}
        kw["op_types"] = {k: OpTypeStats(**v) for k, v in d.get("op_types", {}).items()}
        for key in ("inputs", "outputs"):
            kw[key] = [
                TensorSpec(
                    s["name"],
                    s["dtype"],
                    tuple(s["shape"]),
                    tuple(s["value_range"]) if s.get("value_range") is not None else None,
                )  # fmt: skip
                for s in d.get(key, [])
            ]
        return cls(**kw)


# ----------------------------------------------------------------------------- helpers


def _dtype_name(elem_type: int) -> str:
    try:
        return np.dtype(helper.tensor_dtype_to_np_dtype(elem_type)).name
    except Exception:
        return TensorProto.DataType.Name(elem_type).lower() if elem_type else "unknown"


def _itemsize(elem_type: int) -> float:
    if elem_type in (TensorProto.INT4, TensorProto.UINT4):
        return 0.5
    try:
        return float(np.dtype(helper.tensor_dtype_to_np_dtype(elem_type)).itemsize)
    except Exception:
        return 0.0


def _specs(values, vocab: dict[str, int] | None = None) -> list[TensorSpec]:
    out = []
    for vi in values:
        rows = (vocab or {}).get(vi.name)
        out.append(
            TensorSpec(
                vi.name,
                _dtype_name(vi.type.tensor_type.elem_type),
                tuple(_load.dim_names(vi)),
                (0, rows - 1) if rows else None,
            )
        )
    return out


def input_signature(path: str | os.PathLike) -> list[TensorSpec]:
    """The model's run-time inputs (no shape inference); integer ids get their table's range."""
    model = _load.load(path).model
    return _specs(_load.graph_inputs(model.graph), _load.embedding_vocab(model))


# ----------------------------------------------------------------------------- the walk

TypeInfo = tuple[int, "tuple[int, ...] | None"]


@dataclass
class _Totals:
    op_types: dict[str, OpTypeStats] = field(default_factory=dict)
    category_time: dict[str, float] = field(default_factory=dict)
    category_flops: dict[str, float] = field(default_factory=dict)
    unknown_ops: dict[str, int] = field(default_factory=dict)
    activation_bytes: float = 0.0
    mem_bound_time: float = 0.0
    nodes: int = 0
    partial_nodes: int = 0

    @property
    def time(self) -> float:
        return sum(s.est_time_s for s in self.op_types.values())

    def merge(self, other: _Totals, times: float = 1.0) -> None:
        for op, s in other.op_types.items():
            t = self.op_types.setdefault(op, OpTypeStats())
            t.count += s.count
            t.flops += s.flops * times
            t.bytes += s.bytes * times
            t.est_time_s += s.est_time_s * times
        for src, dst in (
            (other.category_time, self.category_time),
            (other.category_flops, self.category_flops),
        ):
            for k, v in src.items():
                dst[k] = dst.get(k, 0.0) + v * times
        for k, v in other.unknown_ops.items():
            self.unknown_ops[k] = self.unknown_ops.get(k, 0) + v
        self.activation_bytes += other.activation_bytes * times
        self.mem_bound_time += other.mem_bound_time * times
        self.nodes += other.nodes
        self.partial_nodes += other.partial_nodes


class _Walker:
    def __init__(self, dims: dict[str, int]):
        self.dims = dims
        self.warnings: list[str] = []

    def _shape(self, tp: onnx.TypeProto) -> tuple[int, ...] | None:
        t = tp.tensor_type
        if not t.HasField("shape"):
            return None
        out = []
        for d in t.shape.dim:
            if d.HasField("dim_value") and d.dim_value >= 0:
                out.append(int(d.dim_value))
            elif d.dim_param and d.dim_param in self.dims:
                out.append(self.dims[d.dim_param])
            else:
                return None
        return tuple(out)

    def scope(self, graph: onnx.GraphProto, outer: dict[str, TypeInfo], params: set[str]):
        types = dict(outer)
        for vi in (*graph.input, *graph.value_info, *graph.output):
            if vi.type.HasField("tensor_type"):
                types[vi.name] = (vi.type.tensor_type.elem_type, self._shape(vi.type))
        for init in graph.initializer:
            types[init.name] = (init.data_type, tuple(int(d) for d in init.dims))
            params.add(init.name)
        for node in graph.node:
            if node.op_type == "Constant" and node.output:
                params.add(node.output[0])
        return types

    def walk(self, graph: onnx.GraphProto, outer: dict[str, TypeInfo], params: set[str]) -> _Totals:
        params = set(params)
        types = self.scope(graph, outer, params)
        consts = {i.name: i for i in graph.initializer}
        for node in graph.node:
            if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
                consts[node.output[0]] = node.attribute[0].t
        tot = _Totals()
        for node in graph.node:
            self.node(node, types, params, consts, tot)
        return tot

    def _bytes(self, info: TypeInfo | None) -> float | None:
        if info is None or info[1] is None:
            return None
        return math.prod(info[1]) * _itemsize(info[0])

    def node(self, node, types, params, consts, tot: _Totals) -> None:
        op = node.op_type
        tot.nodes += 1
        stats = tot.op_types.setdefault(op, OpTypeStats())
        stats.count += 1
        subgraphs = [
            a
            for a in node.attribute
            if a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
        ]
        if subgraphs:
            self.control_flow(node, subgraphs, types, params, consts, tot)
        if op in _cost.ZERO_COST:
            return
        ins = [types.get(i) if i else None for i in node.input]
        outs = [types.get(o) for o in node.output]
        view = _cost.NodeView(
            node,
            [i[1] if i else None for i in ins],
            [o[1] if o else None for o in outs],
            _cost.attributes(node),
            data_is_param=bool(node.input) and node.input[0] in params,
        )
        partial = False
        try:
            res = _cost.node_cost(view)
        except _cost.UnknownShape:
            res, partial = ("other", 0.0), True
        except Exception:  # a malformed node: count it, do not crash
            res, partial = ("other", 0.0), True
        if res is None:
            key = op if not node.domain or node.domain == "ai.onnx" else f"{node.domain}.{op}"
            tot.unknown_ops[key] = tot.unknown_ops.get(key, 0) + 1
            res = ("other", 0.0)
        category, flops = res
        read = written = 0.0
        for name, info in zip(node.input, ins):
            if not name:
                continue
            b = self._bytes(info)
            if b is None:
                partial = True
                continue
            if name in params and op == "Gather" and name == node.input[0]:
                continue  # an embedding lookup reads the gathered rows only (= its output)
            read += b
        for info in outs:
            b = self._bytes(info)
            if b is None:
                partial = True
                continue
            written += b
        if op == "Gather" and view.data_is_param:
            read += written
        if subgraphs:
            read = written = 0.0  # accounted for by the bodies
        tot.partial_nodes += partial
        moved = read + written
        compute_t, memory_t = flops / PEAK_FLOPS_PER_S, moved / BANDWIDTH_BYTES_PER_S
        t = max(compute_t, memory_t)
        stats.flops += flops
        stats.bytes += moved
        stats.est_time_s += t
        tot.category_time[category] = tot.category_time.get(category, 0.0) + t
        tot.category_flops[category] = tot.category_flops.get(category, 0.0) + flops
        tot.activation_bytes += written
        if memory_t >= compute_t:
            tot.mem_bound_time += t

    def control_flow(self, node, subgraphs, types, params, consts, tot: _Totals) -> None:
        op = node.op_type
        bodies = [a.g for a in subgraphs if a.type == onnx.AttributeProto.GRAPH]
        bodies += [g for a in subgraphs if a.type == onnx.AttributeProto.GRAPHS for g in a.graphs]
        results = [self.walk(g, types, params) for g in bodies]
        if op == "If" and len(results) == 2:
            tot.merge(max(results, key=lambda r: r.time))  # the costlier branch: an upper bound
            return
        times = 1.0
        if op == "Loop":
            times = self._trip_count(node, consts)
        elif op == "Scan":
            times = self._scan_length(node, types)
        for r in results:
            tot.merge(r, times)

    def _trip_count(self, node, consts) -> float:
        name = node.input[0] if node.input else ""
        t = consts.get(name)
        if t is not None and t.data_location != TensorProto.EXTERNAL:
            try:
                return float(onnx.numpy_helper.to_array(t).reshape(-1)[0])
            except Exception:
                pass
        self.warnings.append(f"Loop {node.name or '?'}: trip count not constant; body counted once")
        return 1.0

    def _scan_length(self, node, types) -> float:
        attrs = _cost.attributes(node)
        n_scan = int(attrs.get("num_scan_inputs", 1))
        axes = attrs.get("scan_input_axes") or (0,) * n_scan
        first = node.input[len(node.input) - n_scan] if n_scan else ""
        info = types.get(first)
        if info and info[1] is not None and info[1]:
            return float(info[1][int(axes[0])])
        self.warnings.append(f"Scan {node.name or '?'}: length unknown; body counted once")
        return 1.0


def _param_totals(graph: onnx.GraphProto) -> tuple[int, int]:
    params, nbytes = 0, 0.0
    tensors = list(_load._all_initializers(graph))
    tensors += [
        a.t
        for g in _load.all_graphs(graph)
        for n in g.node
        if n.op_type == "Constant"
        for a in n.attribute
        if a.type == onnx.AttributeProto.TENSOR
    ]
    for t in tensors:
        n = math.prod(int(d) for d in t.dims)
        nbytes += n * _itemsize(t.data_type)
        if t.data_type in _PARAM_TYPES:
            params += n
    return int(params), int(nbytes)


def symbolic_dims(path: str | os.PathLike) -> list[str]:
    """The names of the model's symbolic input dims, in input order (what ``dims`` may name)."""
    names: list[str] = []
    for vi in _load.graph_inputs(_load.load(path).model.graph):
        for d in _load.dim_names(vi):
            if isinstance(d, str) and d not in names:
                names.append(d)
    return names


def profile(path: str | os.PathLike, dims: dict[str, int] | None = None) -> ModelProfile:
    """Profile the ONNX model at ``path`` with symbolic dims ``dims`` (defaults: batch 1, sequence 128)."""
    loaded = _load.load(path)
    model = loaded.model
    inputs = _specs(_load.graph_inputs(model.graph), _load.embedding_vocab(model))
    outputs = _specs(model.graph.output)
    total_params, param_bytes = _param_totals(model.graph)
    used, defaulted, warns = _load.resolve_dims(model, dims)
    warns = loaded.warnings + warns
    _load.fix_dims(model, used)
    model, infer_warns = _load.infer(model)
    warns += infer_warns
    walker = _Walker(used)
    tot = walker.walk(model.graph, {}, set())
    warns += walker.warnings
    if tot.unknown_ops:
        listed = ", ".join(f"{k} x{v}" for k, v in sorted(tot.unknown_ops.items()))
        warns.append(f"unknown op types counted as 0 FLOPs: {listed}")
    if tot.partial_nodes:
        warns.append(
            f"{tot.partial_nodes} of {tot.nodes} nodes lack inferred shapes; their cost is partial"
        )
    total_time = tot.time
    for s in tot.op_types.values():
        s.share = s.est_time_s / total_time if total_time else 0.0
    ranked = sorted(tot.op_types.items(), key=lambda kv: (-kv[1].est_time_s, kv[0]))
    key_ops, covered = [], 0.0
    for op, s in ranked:
        if covered >= KEY_OPERATOR_COVERAGE or s.est_time_s <= 0:
            break
        key_ops.append(op)
        covered += s.share
    if tot.nodes == 0:
        raise KopsError(f"{path}: the graph has no nodes")
    return ModelProfile(
        name=Path(path).stem,
        path=str(path),
        dims=used,
        default_dims=defaulted,
        total_flops=float(sum(s.flops for s in tot.op_types.values())),
        total_params=total_params,
        param_bytes=param_bytes,
        activation_bytes=int(tot.activation_bytes),
        op_types=dict(ranked),
        key_operators=key_ops,
        unknown_ops=dict(sorted(tot.unknown_ops.items())),
        inputs=inputs,
        outputs=outputs,
        warnings=warns,
        est_time_s=total_time,
        node_count=tot.nodes,
        memory_bound_time_fraction=tot.mem_bound_time / total_time if total_time else 0.0,
        category_time_share={
            c: tot.category_time.get(c, 0.0) / total_time if total_time else 0.0
            for c in _cost.CATEGORIES
        },
        category_flops={c: tot.category_flops.get(c, 0.0) for c in _cost.CATEGORIES},
    )
