"""kops on quantized graphs (onnx.helper): INT8 contractions counted as such, 1 byte per weight,
QLinearConv's depthwise detection (its weight is input 3; group equal to the input channels)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import kops

F, U8, I8, I32 = TensorProto.FLOAT, TensorProto.UINT8, TensorProto.INT8, TensorProto.INT32


def _t(name, value, dtype):
    return numpy_helper.from_array(np.asarray(value, dtype=dtype), name)


def _save(tmp_path, nodes, inputs, outputs, inits, name="q"):
    g = helper.make_graph(nodes, "g", inputs, outputs, inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, path)
    return path


def _qparams():
    return [_t("s", 0.1, np.float32), _t("z", 0, np.uint8), _t("ws", 0.05, np.float32)]


def test_qlinearconv_depthwise_and_dense(tmp_path):
    """A dense QLinearConv (3 -> 8) then a depthwise one (group 8 over 8 channels): the second
    is depthwise_conv because of its input-3 weight and group, not input 1 (a scale)."""
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]),
        helper.make_node(
            "QLinearConv",
            ["xq", "s", "z", "w1", "ws", "z", "s", "z"],
            ["c1"],
            pads=[1, 1, 1, 1],
        ),
        helper.make_node(
            "QLinearConv",
            ["c1", "s", "z", "w2", "ws", "z", "s", "z"],
            ["c2"],
            pads=[1, 1, 1, 1],
            group=8,
        ),
        helper.make_node("DequantizeLinear", ["c2", "s", "z"], ["y"]),
    ]
    inits = [
        *_qparams(),
        _t("w1", np.zeros((8, 3, 3, 3)), np.uint8),
        _t("w2", np.zeros((8, 1, 3, 3)), np.uint8),
    ]
    path = _save(
        tmp_path,
        nodes,
        [helper.make_tensor_value_info("x", F, ["batch", 3, 8, 8])],
        [helper.make_tensor_value_info("y", F, ["batch", 8, 8, 8])],
        inits,
    )
    prof = kops.profile(path, {"batch": 2})
    out = 2 * 8 * 8 * 8
    assert prof.op_types["QLinearConv"].flops == 2 * out * 27 + 2 * out * 9
    assert prof.category_flops["depthwise_conv"] == 2 * out * 9
    assert prof.category_flops["conv"] == 2 * out * 27
    assert not prof.unknown_ops
    # INT8 weights: one byte each
    weights = 8 * 27 + 8 * 9
    assert prof.param_bytes == weights + 4 + 1 + 4
    assert prof.total_params == weights + 1 + 1 + 1


def test_grouped_but_not_depthwise_qlinearconv(tmp_path):
    """group 2 over 8 channels (4 in per group) is a grouped conv, not depthwise."""
    nodes = [
        helper.make_node("QLinearConv", ["x", "s", "z", "w", "ws", "z", "s", "z"], ["y"], group=2)
    ]
    path = _save(
        tmp_path,
        nodes,
        [helper.make_tensor_value_info("x", U8, [1, 8, 4, 4])],
        [helper.make_tensor_value_info("y", U8, [1, 8, 4, 4])],
        [*_qparams(), _t("w", np.zeros((8, 4, 1, 1)), np.uint8)],
    )
    prof = kops.profile(path)
    assert "depthwise_conv" not in prof.category_flops or not prof.category_flops["depthwise_conv"]
    assert prof.category_flops["conv"] == 2 * (8 * 4 * 4) * 4


def test_dynamic_int8_matmul_chain(tmp_path):
    """What ONNX Runtime's dynamic quantization emits: DynamicQuantizeLinear -> MatMulInteger
    (and QLinearMatMul, ConvInteger): matrix products counted, the quantize counted per input."""
    nodes = [
        helper.make_node("DynamicQuantizeLinear", ["x"], ["xq", "xs", "xz"]),
        helper.make_node("MatMulInteger", ["xq", "w", "xz", "wz"], ["acc"]),
        helper.make_node("Cast", ["acc"], ["accf"], to=F),
        helper.make_node("QuantizeLinear", ["accf", "s", "z"], ["aq"]),
        helper.make_node("QLinearMatMul", ["aq", "s", "z", "w2", "ws", "z", "s", "z"], ["m"]),
        helper.make_node("Reshape", ["m", "shape"], ["img"]),
        helper.make_node("ConvInteger", ["img", "cw", "z", "z"], ["y"]),
    ]
    inits = [
        *_qparams(),
        _t("w", np.zeros((16, 32)), np.uint8),
        _t("wz", 0, np.uint8),
        _t("w2", np.zeros((32, 64)), np.uint8),
        _t("shape", [4, 4, 4, 4], np.int64),
        _t("cw", np.zeros((2, 4, 1, 1)), np.uint8),
    ]
    path = _save(
        tmp_path,
        nodes,
        [helper.make_tensor_value_info("x", F, [4, 16])],
        [helper.make_tensor_value_info("y", I32, [4, 2, 4, 4])],
        inits,
    )
    prof = kops.profile(path)
    assert prof.op_types["MatMulInteger"].flops == 2 * 4 * 32 * 16
    assert prof.op_types["QLinearMatMul"].flops == 2 * 4 * 64 * 32
    assert prof.op_types["ConvInteger"].flops == 2 * (4 * 2 * 4 * 4) * 4
    assert prof.op_types["DynamicQuantizeLinear"].flops == 4 * 4 * 16
    assert prof.category_flops["matmul"] == 2 * 4 * 32 * 16 + 2 * 4 * 64 * 32
    assert not prof.unknown_ops
    # the weights are read at one byte each: MatMulInteger's bytes hold 16x32 of them
    mmi = prof.op_types["MatMulInteger"].bytes
    assert mmi == 4 * 16 + 16 * 32 + 1 + 1 + 4 * 32 * 4  # A u8, B u8, zero points, INT32 out


def test_qgemm_and_qlinear_pool_are_known(tmp_path):
    """com.microsoft ops of ONNX Runtime's static quantization (QGemm, QLinearGlobalAveragePool)
    are counted, not listed as unknown."""
    ms = "com.microsoft"
    nodes = [
        helper.make_node(
            "QLinearGlobalAveragePool",
            ["x", "s", "z", "s", "z"],
            ["p"],
            domain=ms,
            channels_last=0,
        ),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node(
            "QGemm", ["f", "s", "z", "w", "ws", "z", "", "s", "z"], ["y"], domain=ms, transB=1
        ),
    ]
    g = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", U8, [1, 8, 4, 4])],
        [helper.make_tensor_value_info("y", U8, [1, 10])],
        [*_qparams(), _t("w", np.zeros((10, 8)), np.uint8)],
    )
    model = helper.make_model(
        g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(ms, 1)]
    )
    path = tmp_path / "ms.onnx"
    onnx.save(model, path)
    prof = kops.profile(path)
    assert not prof.unknown_ops
    assert "QGemm" in prof.op_types and "QLinearGlobalAveragePool" in prof.op_types
