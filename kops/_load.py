"""Loading an ONNX graph without its weights, resolving symbolic dims, running shape inference."""

from __future__ import annotations

import numbers
import os
from dataclasses import dataclass, field
from pathlib import Path

import onnx
from onnx import TensorProto

from ._errors import KopsError

#: Symbolic dimension names that take a default value when the caller gives none.
BATCH_NAMES = {"batch", "batch_size", "batchsize", "bs", "n", "b", "num_batches"}
SEQUENCE_NAMES = {
    "sequence", "sequence_length", "seq", "seq_len", "seqlen", "tokens", "num_tokens",
    "length", "time", "t", "steps", "past_sequence_length", "total_sequence_length",
}  # fmt: skip
DEFAULT_BATCH = 1
DEFAULT_SEQUENCE = 128

#: Ops that only forward data (passing through them keeps an input "an index into a table").
_PASS_THROUGH = {"Cast", "Identity", "Reshape", "Unsqueeze", "Squeeze", "Flatten", "Clip"}
#: Ops that select some of their input 0's values (a column of a multi-feature id tensor).
_SELECTIONS = {"Gather", "Slice", "Split", "Transpose", "Expand", "Tile"}


@dataclass
class LoadedModel:
    """A parsed model (initializers without data) and what loading it found."""

    path: Path
    model: onnx.ModelProto
    warnings: list[str] = field(default_factory=list)


def load(path: str | os.PathLike) -> LoadedModel:
    """Parse ``path`` without reading external data; missing external files become warnings."""
    p = Path(path)
    if not p.exists():
        raise KopsError(f"{p}: no such file")
    if p.is_dir():
        raise KopsError(f"{p}: is a directory, not an ONNX file")
    try:
        model = onnx.load(str(p), load_external_data=False)
    except Exception as exc:  # protobuf DecodeError, RuntimeWarning on truncation, ...
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise KopsError(f"{p}: not a valid ONNX model (truncated or not ONNX: {reason})") from None
    if model.ir_version <= 0 or not model.HasField("graph") or not model.graph.node:
        raise KopsError(f"{p}: not a valid ONNX model (no graph with nodes)")
    loaded = LoadedModel(p, model)
    _check_external_data(loaded)
    return loaded


def _check_external_data(loaded: LoadedModel) -> None:
    missing: dict[str, int] = {}
    short: dict[str, int] = {}
    base = loaded.path.parent
    for init in _all_initializers(loaded.model.graph):
        if init.data_location != TensorProto.EXTERNAL:
            continue
        info = {e.key: e.value for e in init.external_data}
        location = info.get("location", "")
        f = base / location
        if not location or not f.is_file():
            missing[location] = missing.get(location, 0) + 1
            continue
        end = int(info.get("offset", 0) or 0) + int(info.get("length", 0) or 0)
        if end > f.stat().st_size:
            short[location] = short.get(location, 0) + 1
    for location, n in missing.items():
        loaded.warnings.append(
            f"external data file {location!r} is missing ({n} initializer(s)); profiled from shapes only"
        )
    for location, n in short.items():
        loaded.warnings.append(
            f"external data file {location!r} is shorter than {n} initializer(s) say; profiled from shapes only"
        )


def all_graphs(graph: onnx.GraphProto):
    """``graph`` and every subgraph nested in its nodes (If/Loop/Scan bodies), at any depth."""
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from all_graphs(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    yield from all_graphs(g)


def _all_initializers(graph: onnx.GraphProto):
    for g in all_graphs(graph):
        yield from g.initializer


def graph_inputs(graph: onnx.GraphProto) -> list[onnx.ValueInfoProto]:
    """Graph inputs that are fed at run time (initializers listed as inputs are left out)."""
    inits = {i.name for i in graph.initializer}
    return [v for v in graph.input if v.name not in inits]


def dim_names(vi: onnx.ValueInfoProto) -> list[int | str]:
    """The shape of a value as ints and symbolic names (an unnamed dynamic axis is ``input:axis``)."""
    t = vi.type.tensor_type
    if not t.HasField("shape"):
        return []
    out: list[int | str] = []
    for axis, d in enumerate(t.shape.dim):
        if d.HasField("dim_value") and d.dim_value > 0:
            out.append(int(d.dim_value))
        elif d.dim_param:
            out.append(d.dim_param)
        else:
            out.append(f"{vi.name}:{axis}")
    return out


def default_for(name: str) -> int | None:
    """The default value of a symbolic dim (batch 1, sequence 128), or None when it has none."""
    low = name.lower()
    if low in BATCH_NAMES or "batch" in low:
        return DEFAULT_BATCH
    if low in SEQUENCE_NAMES or "seq" in low:
        return DEFAULT_SEQUENCE
    return None


def resolve_dims(
    model: onnx.ModelProto, dims: dict[str, int] | None
) -> tuple[dict[str, int], list[str], list[str]]:
    """Values for every symbolic input dim: ``(dims_used, names_defaulted, warnings)``."""
    given = dict(dims or {})
    for k, v in given.items():
        if not isinstance(v, numbers.Integral) or isinstance(v, bool) or v <= 0:
            raise KopsError(f"dimension {k}={v!r}: value must be a positive integer")
        given[k] = int(v)
    used: dict[str, int] = {}
    defaulted: list[str] = []
    for vi in graph_inputs(model.graph):
        for d in dim_names(vi):
            if isinstance(d, int) or d in used:
                continue
            if d in given:
                used[d] = given[d]
                continue
            default = default_for(d)
            if default is None:
                raise KopsError(
                    f"unresolved symbolic dimension {d!r} of input {vi.name!r}; pass --dim {d}=VALUE"
                )
            used[d] = default
            defaulted.append(d)
    unused = [k for k in given if k not in used]
    warns = [
        f"dimension {k!r} is not a symbolic input dimension of this model; ignored" for k in unused
    ]
    return used, defaulted, warns


def fix_dims(model: onnx.ModelProto, dims: dict[str, int]) -> None:
    """Replace symbolic input dims by their values, in place."""
    for vi in graph_inputs(model.graph):
        t = vi.type.tensor_type
        if not t.HasField("shape"):
            continue
        for axis, d in enumerate(t.shape.dim):
            name = d.dim_param or (None if d.dim_value > 0 else f"{vi.name}:{axis}")
            if name is not None and name in dims:
                d.Clear()
                d.dim_value = dims[name]


def infer(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[str]]:
    """Inline local functions and run ONNX shape inference (with data propagation)."""
    warns: list[str] = []
    if len(model.functions):
        try:
            from onnx import inliner

            model = inliner.inline_local_functions(model)
        except Exception as exc:  # keep going: the walker counts function calls as unknown ops
            warns.append(f"could not inline local functions ({type(exc).__name__}: {exc})")
    from ._fold import MAX_ROUNDS, fold_round

    for _ in range(MAX_ROUNDS):
        try:
            model = onnx.shape_inference.infer_shapes(model, check_type=False, data_prop=True)
        except Exception as exc:
            warns.append(f"shape inference failed partly ({str(exc).splitlines()[0][:200]})")
            break
        if fold_round(model) == 0:
            break
    return model, warns


def embedding_vocab(model: onnx.ModelProto) -> dict[str, int]:
    """Integer graph inputs that index an initializer table (through Gather): name -> rows."""
    graph = model.graph
    init_dims = {i.name: list(i.dims) for i in graph.initializer}
    for node in graph.node:
        if (
            node.op_type == "Constant"
            and node.attribute
            and node.attribute[0].type == onnx.AttributeProto.TENSOR
        ):
            init_dims[node.output[0]] = list(node.attribute[0].t.dims)
    origin: dict[str, str] = {vi.name: vi.name for vi in graph_inputs(graph)}
    vocab: dict[str, int] = {}
    for node in graph.node:  # nodes are topologically sorted in a valid model
        keeps_range = node.op_type in _PASS_THROUGH or node.op_type in _SELECTIONS
        if keeps_range and node.input and node.input[0] in origin:
            for o in node.output:
                origin[o] = origin[node.input[0]]
        if node.op_type == "Gather" and len(node.input) == 2:
            data, idx = node.input
            axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
            if idx in origin and data in init_dims and init_dims[data]:
                rows = init_dims[data][axis]
                src = origin[idx]
                vocab[src] = min(vocab.get(src, rows), rows)
    return vocab
