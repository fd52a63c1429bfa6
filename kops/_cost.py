"""Per-node FLOP formulas and the op-type -> category table.

FLOPs count a multiply-add as 2. Contractions (Conv, ConvTranspose, MatMul, Gemm, Einsum,
attention, LSTM/GRU/RNN) count their multiply-adds only: a bias folded into Conv/Gemm is not
counted, which is the convention of ``torch.utils.flop_counter.FlopCounterMode``. Recurrent ops
add their gate element-wise work. Other ops count a small fixed number of FLOPs per element
(see the tables below); pure data movement counts 0 FLOPs but its bytes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import onnx

Shape = tuple[int, ...]

#: Op types whose outputs alias their inputs in every runtime: no bytes moved, no FLOPs.
ZERO_COST = {
    "Reshape", "Squeeze", "Unsqueeze", "Flatten", "Identity", "Shape", "Size", "Constant",
    "Dropout", "Optional", "OptionalGetElement", "OptionalHasElement",
}  # fmt: skip

ELEMENTWISE_UNARY = {
    "Relu", "LeakyRelu", "PRelu", "Sigmoid", "HardSigmoid", "Tanh", "Erf", "Exp", "Log", "Sqrt",
    "Neg", "Abs", "Reciprocal", "Clip", "Elu", "Selu", "Celu", "Softplus", "Softsign", "Ceil",
    "Floor", "Round", "Sign", "Sin", "Cos", "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh",
    "Asinh", "Acosh", "Atanh", "IsNaN", "IsInf", "Not", "HardSwish", "ThresholdedRelu",
    "BitwiseNot", "Shrink",
}  # fmt: skip
#: Activations that cost several FLOPs per element.
ELEMENTWISE_HEAVY = {"Gelu": 8, "FastGelu": 8, "BiasGelu": 9, "QuickGelu": 4, "Mish": 6, "Swish": 4}
ELEMENTWISE_BINARY = {
    "Add", "Sub", "Mul", "Div", "Pow", "Mod", "Max", "Min", "Mean", "Sum", "Where", "Equal",
    "Greater", "GreaterOrEqual", "Less", "LessOrEqual", "And", "Or", "Xor", "BitShift",
    "BitwiseAnd", "BitwiseOr", "BitwiseXor",
}  # fmt: skip
VARIADIC = {"Max", "Min", "Mean", "Sum"}
DATA_MOVEMENT = {
    "Transpose", "Concat", "Split", "Slice", "Gather", "GatherElements", "GatherND", "Scatter",
    "ScatterElements", "ScatterND", "Pad", "Tile", "Expand", "DepthToSpace", "SpaceToDepth",
    "Cast", "CastLike", "ConstantOfShape", "Range", "NonZero", "OneHot", "Trilu", "EyeLike",
    "Compress", "ReverseSequence", "Unique", "SplitToSequence", "SequenceAt", "SequenceConstruct",
    "SequenceInsert", "SequenceLength", "ConcatFromSequence", "Resize", "Upsample", "GridSample",
    "If", "Loop", "Scan", "NonMaxSuppression", "RoiAlign", "Col2Im",
}  # fmt: skip
REDUCTIONS = {
    "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
    "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare", "ArgMax", "ArgMin", "CumSum", "TopK",
}  # fmt: skip
POOLING = {"MaxPool", "AveragePool", "LpPool", "GlobalAveragePool", "GlobalMaxPool",
           "GlobalLpPool", "MaxRoiPool", "MaxUnpool"}  # fmt: skip
NORMALIZATION = {
    "BatchNormalization": 2, "LayerNormalization": 8, "InstanceNormalization": 8,
    "GroupNormalization": 8, "RMSNormalization": 5, "SimplifiedLayerNormalization": 5,
    "SkipLayerNormalization": 9, "SkipSimplifiedLayerNormalization": 6,
    "EmbedLayerNormalization": 10, "MeanVarianceNormalization": 7, "LpNormalization": 3,
}  # fmt: skip
SOFTMAX = {"Softmax": 5, "LogSoftmax": 6, "Hardmax": 2}
#: Quantize (scale, round, clamp), dequantize (subtract, scale); DynamicQuantizeLinear also
#: finds the min and max of its input (ONNX Runtime's dynamic INT8).
QUANT = {"QuantizeLinear": 2, "DequantizeLinear": 2, "DynamicQuantizeLinear": 4}
CONV = {"Conv", "ConvInteger", "QLinearConv", "FusedConv", "NhwcConv", "ConvTranspose"}
MATMUL = {"MatMul", "Gemm", "Einsum", "MatMulInteger", "QLinearMatMul", "FusedMatMul",
          "MatMulNBits", "FusedGemm"}  # fmt: skip
#: INT8 contractions (ONNX and com.microsoft): their multiply-adds are integer work on 1-byte
#: operands (bytes follow the tensors' types: 1 per INT8 weight); the weight's input index.
QUANTIZED_CONTRACTIONS = {
    "ConvInteger": 1, "QLinearConv": 3, "MatMulInteger": 1, "QLinearMatMul": 3, "QGemm": 3,
    "DynamicQuantizeMatMul": 1, "MatMulIntegerToFloat": 1,
}  # fmt: skip
#: com.microsoft QLinear element-wise ops: dequantize, the op, requantize (per output element).
QLINEAR_ELEMENTWISE = {"QLinearAdd": 5, "QLinearMul": 5, "QLinearSigmoid": 8,
                       "QLinearLeakyRelu": 5, "QLinearSoftmax": 9}  # fmt: skip
QLINEAR_POOLING = {"QLinearGlobalAveragePool", "QLinearAveragePool"}
ATTENTION = {"Attention", "MultiHeadAttention", "GroupQueryAttention", "PackedAttention",
             "PackedMultiHeadAttention", "SparseAttention"}  # fmt: skip
RECURRENT = {"LSTM": 4, "GRU": 3, "RNN": 1}

#: Categories the feature vector summarizes, in a fixed order.
CATEGORIES = (
    "conv", "depthwise_conv", "matmul", "attention", "recurrent", "pooling", "normalization",
    "softmax", "reduction", "elementwise", "data_movement", "embedding", "other",
)  # fmt: skip
#: Categories whose FLOPs FlopCounterMode counts (convolutions, matrix products, recurrent cells).
CONTRACTION_CATEGORIES = ("conv", "depthwise_conv", "matmul", "attention", "recurrent")


@dataclass
class NodeView:
    """What a cost formula may look at: the node, its input/output shapes (None = unknown)."""

    node: onnx.NodeProto
    inputs: list[Shape | None]
    outputs: list[Shape | None]
    attrs: dict[str, Any]  # int, float, bytes or tuple of ints, by the attribute's type
    data_is_param: bool = False  # input 0 is an initializer (embedding tables)

    def inp(self, i: int) -> Shape | None:
        return self.inputs[i] if i < len(self.inputs) else None

    def out(self, i: int = 0) -> Shape | None:
        return self.outputs[i] if i < len(self.outputs) else None


class UnknownShape(Exception):
    """A formula needs a shape that inference did not give."""


def numel(shape: Shape | None) -> int:
    if shape is None:
        raise UnknownShape
    return math.prod(shape)


def _need(shape: Shape | None) -> Shape:
    if shape is None:
        raise UnknownShape
    return shape


def _weight(v: NodeView) -> Shape | None:
    """A contraction's weight shape (QLinearConv, QLinearMatMul, QGemm take it as input 3)."""
    return v.inp(QUANTIZED_CONTRACTIONS.get(v.node.op_type, 1))


def _conv(v: NodeView) -> float:
    w = _need(_weight(v))
    if v.node.op_type == "ConvTranspose":  # W: [Cin, Cout/group, k...]; each input scatters
        return 2.0 * numel(v.inp(0)) * math.prod(w[1:])
    return 2.0 * numel(v.out()) * math.prod(w[1:])


def _matmul(v: NodeView) -> float:
    a = _need(v.inp(0))  # A is input 0 of every matrix product, quantized or not
    k = a[-1] if a else 1
    return 2.0 * numel(v.out()) * k


def _matmul_nbits(v: NodeView) -> float:
    k = int(v.attrs.get("K", 0)) or _need(v.inp(0))[-1]
    return 2.0 * numel(v.out()) * k


def _gemm(v: NodeView) -> float:
    a = _need(v.inp(0))
    k = a[0] if int(v.attrs.get("transA", 0)) else a[-1]
    return 2.0 * numel(v.out()) * k


def _einsum(v: NodeView) -> float:
    eq = v.attrs.get("equation", b"")
    eq = (eq.decode() if isinstance(eq, bytes) else str(eq)).replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    if not arrow:  # implicit output: the letters that appear once
        rhs = "".join(c for c in sorted(set(lhs)) if c.isalpha() and lhs.count(c) == 1)
    terms = lhs.split(",")
    sizes: dict[str, int] = {}
    letters: list[str] = []
    for i, term in enumerate(terms):
        shape = _need(v.inp(i))
        if "..." in term:
            head, tail = term.split("...")
            n_ell = len(shape) - len(head) - len(tail)
            term = head + "".join(chr(0x100 + j) for j in range(n_ell)) + tail
        for ch, size in zip(term, shape):
            sizes[ch] = max(sizes.get(ch, 1), size)
        letters.append(term)
    if len(letters) == 1:
        return float(numel(v.inp(0)))
    out_letters = set(rhs) | {c for c in sizes if ord(c) >= 0x100}
    total, cur = 0.0, set(letters[0])
    for i in range(1, len(letters)):
        union = cur | set(letters[i])
        total += 2.0 * math.prod(sizes[c] for c in union)
        later = set().union(*map(set, letters[i + 1 :])) if i + 1 < len(letters) else set()
        cur = union & (later | out_letters)
    return total


def _attention(v: NodeView) -> float:
    """ONNX Attention (opset 23) and com.microsoft attention ops: QK^T, softmax, AV (+ projections)."""
    op = v.node.op_type
    q = _need(v.inp(0))
    if op == "Attention" and v.node.domain in ("com.microsoft",):
        w = _need(v.inp(1))  # [hidden, 3*hidden]: fused QKV projection
        b, s, hidden = q[0], q[1], q[2]
        v_hidden = (w[1] - hidden) // 2 if w[1] > hidden else hidden
        proj = 2.0 * b * s * hidden * w[1]
        return (
            proj
            + 2.0 * b * s * s * (hidden + v_hidden)
            + 5.0 * b * s * s * int(v.attrs.get("num_heads", 1))
        )
    k = v.inp(1) or q
    val = v.inp(2) or k
    if len(q) == 4:  # [B, H, S, D]
        b, hq, sq, d = q
        skv, dv = k[2], val[-1]
        return 2.0 * b * hq * sq * skv * (d + dv) + 5.0 * b * hq * sq * skv
    heads = int(v.attrs.get("q_num_heads", v.attrs.get("num_heads", 1)) or 1)
    b, sq, hidden = q[0], q[1], q[-1]
    skv = k[1] if len(k) >= 2 else sq
    v_hidden = val[-1] if len(val) == 3 else hidden
    kv_heads = int(v.attrs.get("kv_num_heads", heads) or heads)
    if op == "GroupQueryAttention" and kv_heads != heads:
        v_hidden = v_hidden * heads // kv_heads
    return 2.0 * b * sq * skv * (hidden + v_hidden) + 5.0 * b * heads * sq * skv


def _recurrent(v: NodeView) -> float:
    gates = RECURRENT[v.node.op_type]
    x, w = _need(v.inp(0)), _need(v.inp(1))
    layout = int(v.attrs.get("layout", 0))
    steps, batch = (x[1], x[0]) if layout else (x[0], x[1])
    dirs, hidden = w[0], int(v.attrs.get("hidden_size", 0)) or w[1] // gates
    fan_in = x[2]
    per_step = 2.0 * gates * hidden * (fan_in + hidden)
    elementwise = {4: 17, 3: 14, 1: 3}[gates] * hidden
    return steps * batch * dirs * (per_step + elementwise)


def _pool(v: NodeView) -> float:
    if v.node.op_type.startswith("Global"):
        return float(numel(v.inp(0)))
    kernel = v.attrs.get("kernel_shape") or ()
    return float(numel(v.out()) * math.prod(kernel))


def _qlinear_pool(v: NodeView) -> float:
    """Average pooling on INT8 (com.microsoft): the pooling's adds plus a requantize per output."""
    if v.node.op_type == "QLinearGlobalAveragePool":
        return float(numel(v.inp(0)) + 2 * numel(v.out()))
    kernel = v.attrs.get("kernel_shape") or ()
    return float(numel(v.out()) * (math.prod(kernel) + 2))


def _per_out(k: float) -> Callable[[NodeView], float]:
    return lambda v: k * numel(v.out())


def _per_in(k: float) -> Callable[[NodeView], float]:
    return lambda v: k * numel(v.inp(0))


def _binary(v: NodeView) -> float:
    n = max(1, len([i for i in v.node.input if i]) - 1) if v.node.op_type in VARIADIC else 1
    return float(n * numel(v.out()))


def _reduction(v: NodeView) -> float:
    return (2.0 if v.node.op_type in ("ReduceSumSquare", "ReduceL2") else 1.0) * numel(v.inp(0))


def _resize(v: NodeView) -> float:
    mode = v.attrs.get("mode", b"nearest")
    mode = mode.decode() if isinstance(mode, bytes) else str(mode)
    return {"nearest": 0.0, "linear": 4.0, "cubic": 16.0}.get(mode, 4.0) * numel(v.out())


def _zero(v: NodeView) -> float:
    return 0.0


def _table() -> dict[str, tuple[str, Callable[[NodeView], float]]]:
    t: dict[str, tuple[str, Callable[[NodeView], float]]] = {}
    for op in CONV:
        t[op] = ("conv", _conv)
    for op in ("MatMul", "MatMulInteger", "FusedMatMul", "QLinearMatMul"):
        t[op] = ("matmul", _matmul)
    for op in ("DynamicQuantizeMatMul", "MatMulIntegerToFloat"):
        t[op] = ("matmul", _matmul)
    t["Gemm"] = t["FusedGemm"] = t["QGemm"] = ("matmul", _gemm)
    t["Einsum"] = ("matmul", _einsum)
    t["MatMulNBits"] = ("matmul", _matmul_nbits)
    for op in ATTENTION:
        t[op] = ("attention", _attention)
    for op in RECURRENT:
        t[op] = ("recurrent", _recurrent)
    for op in POOLING:
        t[op] = ("pooling", _pool)
    for op, k in NORMALIZATION.items():
        t[op] = ("normalization", _per_out(k))
    for op, k in SOFTMAX.items():
        t[op] = ("softmax", _per_out(k))
    for op in REDUCTIONS:
        t[op] = ("reduction", _reduction)
    for op in ELEMENTWISE_UNARY:
        t[op] = ("elementwise", _per_out(1))
    for op, k in ELEMENTWISE_HEAVY.items():
        t[op] = ("elementwise", _per_out(k))
    for op in ELEMENTWISE_BINARY:
        t[op] = ("elementwise", _binary)
    for op, k in QUANT.items():
        t[op] = ("elementwise", _per_in(k))
    for op, k in QLINEAR_ELEMENTWISE.items():
        t[op] = ("softmax" if op == "QLinearSoftmax" else "elementwise", _per_out(k))
    for op in QLINEAR_POOLING:
        t[op] = ("pooling", _qlinear_pool)
    t["QLinearConcat"] = ("data_movement", _zero)
    for op in DATA_MOVEMENT:
        t[op] = ("data_movement", _zero)
    t["Resize"] = t["Upsample"] = ("data_movement", _resize)
    for op in ZERO_COST:
        t[op] = ("data_movement", _zero)
    return t


TABLE = _table()


def node_cost(v: NodeView) -> tuple[str, float] | None:
    """``(category, flops)`` of a node, or None for an op kops does not know.

    Raises ``UnknownShape`` when a shape the formula needs is missing.
    """
    entry = TABLE.get(v.node.op_type)
    if entry is None:
        return None
    category, fn = entry
    flops = fn(v)
    if category == "conv" and v.node.op_type != "ConvTranspose" and _depthwise(v):
        category = "depthwise_conv"
    elif v.node.op_type == "Gather" and v.data_is_param:
        category = "embedding"
    return category, flops


def _depthwise(v: NodeView) -> bool:
    """One filter per input channel: ``group`` > 1 equal to the input's channels, or (input shape
    unknown) a weight with one input channel per group."""
    group = int(v.attrs.get("group", 1))
    if group <= 1:
        return False
    x = v.inp(0)
    if x is not None and len(x) > 1:
        return x[1] == group
    w = _weight(v)
    return w is not None and len(w) > 1 and w[1] == 1


def attributes(node: onnx.NodeProto) -> dict[str, Any]:
    """Scalar and list attributes of a node (graphs and tensors left out)."""
    out: dict[str, Any] = {}
    for a in node.attribute:
        if a.type == onnx.AttributeProto.INT:
            out[a.name] = a.i
        elif a.type == onnx.AttributeProto.FLOAT:
            out[a.name] = a.f
        elif a.type == onnx.AttributeProto.STRING:
            out[a.name] = a.s
        elif a.type == onnx.AttributeProto.INTS:
            out[a.name] = tuple(a.ints)
    return out
