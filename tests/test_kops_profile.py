"""kops on hand-built graphs (onnx.helper): formulas, subgraphs, functions, features, errors."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import kops
from autoconf import cli

F = TensorProto.FLOAT


def _save(tmp_path, graph, name="m", opset=17, functions=(), extra_opsets=()):
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", opset), *extra_opsets],
        functions=list(functions),
    )
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, path)
    return path


def _w(name, *shape):
    return numpy_helper.from_array(np.zeros(shape, np.float32), name)


def test_matmul_gemm_conv_formulas(tmp_path):
    g = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "cw"], ["c"], pads=[1, 1, 1, 1], group=1),
            helper.make_node("Conv", ["c", "dw"], ["d"], pads=[1, 1, 1, 1], group=8),
            helper.make_node("ConvTranspose", ["d", "tw"], ["t"], strides=[2, 2]),
            helper.make_node("Flatten", ["t"], ["f"]),
            helper.make_node("Gemm", ["f", "gw"], ["y"], transB=1),
        ],
        "g",
        [helper.make_tensor_value_info("x", F, ["batch", 3, 8, 8])],
        [helper.make_tensor_value_info("y", F, ["batch", 10])],
        [
            _w("cw", 8, 3, 3, 3),
            _w("dw", 8, 1, 3, 3),
            _w("tw", 8, 4, 2, 2),
            _w("gw", 10, 4 * 16 * 16),
        ],
    )
    prof = kops.profile(_save(tmp_path, g), {"batch": 2})
    conv = 2 * (2 * 8 * 8 * 8) * 3 * 9 + 2 * (2 * 8 * 8 * 8) * 1 * 9
    convt = 2 * (2 * 8 * 8 * 8) * 4 * 4
    gemm = 2 * 2 * 10 * 1024
    assert prof.op_types["Conv"].flops == conv
    assert prof.op_types["ConvTranspose"].flops == convt
    assert prof.op_types["Gemm"].flops == gemm
    assert prof.category_flops["depthwise_conv"] == 2 * (2 * 8 * 8 * 8) * 9
    assert prof.total_params == 8 * 27 + 8 * 9 + 8 * 16 + 10 * 1024
    assert prof.param_bytes == 4 * prof.total_params
    assert prof.contraction_flops == conv + convt + gemm


def test_einsum_attention_and_recurrent(tmp_path):
    ms = helper.make_opsetid("com.microsoft", 1)
    g = helper.make_graph(
        [
            helper.make_node("Einsum", ["q", "k"], ["s"], equation="bhid,bhjd->bhij"),
            helper.make_node(
                "MultiHeadAttention", ["x", "x", "x"], ["a"], domain="com.microsoft", num_heads=2
            ),
            helper.make_node("GRU", ["seq", "gw", "gr"], ["gy"], hidden_size=16),
        ],
        "g",
        [
            helper.make_tensor_value_info("q", F, [1, 2, 5, 4]),
            helper.make_tensor_value_info("k", F, [1, 2, 7, 4]),
            helper.make_tensor_value_info("x", F, [1, 6, 8]),
            helper.make_tensor_value_info("seq", F, [10, 1, 12]),
        ],
        [
            helper.make_tensor_value_info("s", F, None),
            helper.make_tensor_value_info("a", F, [1, 6, 8]),
            helper.make_tensor_value_info("gy", F, None),
        ],
        [_w("gw", 1, 48, 12), _w("gr", 1, 48, 16)],
    )
    prof = kops.profile(_save(tmp_path, g, extra_opsets=[ms]))
    assert prof.op_types["Einsum"].flops == 2 * 1 * 2 * 5 * 7 * 4
    mha = prof.op_types["MultiHeadAttention"].flops
    assert mha >= 2 * 6 * 6 * (8 + 8)  # QK^T and AV, plus softmax
    gru_matmul = 2 * 10 * 1 * 3 * 16 * (12 + 16)
    assert gru_matmul <= prof.op_types["GRU"].flops <= 1.1 * gru_matmul
    assert prof.category_flops["recurrent"] == prof.op_types["GRU"].flops


def _matmul_body(name):
    return helper.make_graph(
        [helper.make_node("MatMul", ["bx", "bw"], ["by"])],
        name,
        [],
        [helper.make_tensor_value_info("by", F, [4, 4])],
        [_w("bw", 4, 4)],
    )


def test_subgraphs_and_local_functions(tmp_path):
    loop_body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond"], ["cond_out"]),
            helper.make_node("MatMul", ["bx", "lw"], ["scan_out"]),
        ],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("scan_out", F, [4, 4]),
        ],
        [_w("lw", 4, 4)],
    )
    fn = helper.make_function(
        "local", "DoubleMatMul", ["a", "b"], ["c"],
        [helper.make_node("MatMul", ["a", "b"], ["t"]), helper.make_node("MatMul", ["t", "b"], ["c"])],
        [helper.make_opsetid("", 17)],
    )  # fmt: skip
    g = helper.make_graph(
        [
            helper.make_node(
                "Constant", [], ["trip"], value=numpy_helper.from_array(np.array(3, np.int64))
            ),
            helper.make_node(
                "Constant", [], ["yes"], value=numpy_helper.from_array(np.array(True))
            ),
            helper.make_node("Loop", ["trip", "yes"], ["stacked"], body=loop_body),
            helper.make_node(
                "If",
                ["flag"],
                ["branch"],
                then_branch=_matmul_body("then"),
                else_branch=helper.make_graph(
                    [helper.make_node("Identity", ["bx"], ["eo"])],
                    "else",
                    [],
                    [helper.make_tensor_value_info("eo", F, [4, 4])],
                ),
            ),
            helper.make_node("DoubleMatMul", ["bx", "fw"], ["fo"], domain="local"),
        ],  # fmt: skip
        "g",
        [
            helper.make_tensor_value_info("bx", F, [4, 4]),
            helper.make_tensor_value_info("flag", TensorProto.BOOL, []),
        ],
        [
            helper.make_tensor_value_info("stacked", F, None),
            helper.make_tensor_value_info("branch", F, [4, 4]),
            helper.make_tensor_value_info("fo", F, [4, 4]),
        ],
        [_w("fw", 4, 4)],
    )
    prof = kops.profile(
        _save(tmp_path, g, functions=[fn], extra_opsets=[helper.make_opsetid("local", 1)])
    )
    one = 2 * 4 * 4 * 4
    # loop body x3, the costlier If branch, two matmuls inlined from the local function
    assert prof.op_types["MatMul"].flops == 3 * one + one + 2 * one
    # weights inside the Loop and If bodies count: fw, lw and bw (16 floats each), plus the
    # two scalar Constants' bytes (int64 + bool)
    assert prof.total_params == 3 * 16
    assert prof.param_bytes == 3 * 16 * 4 + 8 + 1
    assert prof.unknown_ops == {}


def test_unknown_ops_are_listed_not_fatal(tmp_path):
    g = helper.make_graph(
        [
            helper.make_node("Relu", ["x"], ["r"]),
            helper.make_node("Frobnicate", ["r"], ["y"], domain="acme"),
        ],
        "g",
        [helper.make_tensor_value_info("x", F, [2, 3])],
        [helper.make_tensor_value_info("y", F, [2, 3])],
    )
    prof = kops.profile(_save(tmp_path, g, extra_opsets=[helper.make_opsetid("acme", 1)]))
    assert prof.unknown_ops == {"acme.Frobnicate": 1}
    assert any("Frobnicate" in w for w in prof.warnings)
    assert prof.op_types["Relu"].flops == 6


def _dyn_model(tmp_path, dim="batch"):
    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", F, [dim, 16])],
        [helper.make_tensor_value_info("y", F, [dim, 8])],
        [_w("w", 16, 8)],
    )
    return _save(tmp_path, g)


def test_unresolved_dim_is_an_error_and_given_dim_resolves_it(tmp_path):
    path = _dyn_model(tmp_path, dim="frames")
    with pytest.raises(kops.KopsError, match="frames"):
        kops.profile(path)
    prof = kops.profile(path, {"frames": 5})
    assert prof.total_flops == 2 * 5 * 16 * 8
    assert prof.dims == {"frames": 5} and prof.default_dims == []


def test_external_data_missing_is_a_warning(tmp_path):
    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", F, ["batch", 64])],
        [helper.make_tensor_value_info("y", F, ["batch", 32])],
        [numpy_helper.from_array(np.ones((64, 32), np.float32), "w")],
    )
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "ext.onnx"
    onnx.save(model, path, save_as_external_data=True, location="ext.bin", size_threshold=0)
    ok = kops.profile(path)
    assert ok.warnings == [] and ok.total_params == 64 * 32
    (tmp_path / "ext.bin").unlink()
    prof = kops.profile(path, {"batch": 4})
    assert prof.total_flops == 2 * 4 * 64 * 32
    assert any("ext.bin" in w and "missing" in w for w in prof.warnings)


def test_profile_of_zoo_models(zoo_dir):
    bert = kops.profile(zoo_dir / "bert_like.onnx")
    assert bert.default_dims == ["batch", "sequence"] and bert.dims == {"batch": 1, "sequence": 128}
    assert bert.key_operators[0] == "MatMul"
    shares = [bert.op_types[op].share for op in bert.key_operators]
    assert shares == sorted(shares, reverse=True)
    assert sum(shares) >= 0.9 and sum(shares[:-1]) < 0.9  # smallest covering set
    assert sum(s.share for s in bert.op_types.values()) == pytest.approx(1.0)
    assert bert.activation_bytes > 0 and bert.arithmetic_intensity > 0
    mobile = kops.profile(zoo_dir / "mobilenet_like.onnx")
    resnet = kops.profile(zoo_dir / "resnet_like.onnx")
    assert mobile.category_time_share["depthwise_conv"] > 0
    assert resnet.category_time_share["depthwise_conv"] == 0
    lstm = kops.profile(zoo_dir / "lstm.onnx")
    assert lstm.key_operators[0] == "LSTM"


def test_input_signature(zoo_dir):
    (ids,) = kops.input_signature(zoo_dir / "bert_like.onnx")
    assert (ids.name, ids.dtype, ids.shape, ids.value_range) == (
        "input_ids",
        "int64",
        ("batch", "sequence"),
        (0, 999),
    )
    (img,) = kops.input_signature(zoo_dir / "tiny_cnn.onnx")
    assert img.dtype == "float32" and img.shape == ("batch", 3, 32, 32) and img.value_range is None


def test_input_signature_of_two_input_models(zoo_dir):
    """Ids picked out of a multi-feature id input (DLRM's column per table) keep its range."""
    dense, sparse = kops.input_signature(zoo_dir / "dlrm_like.onnx")
    assert (dense.dtype, dense.shape, dense.value_range) == ("float32", ("batch", 13), None)
    assert (sparse.dtype, sparse.shape, sparse.value_range) == ("int64", ("batch", 8), (0, 999))
    enc, dec = kops.input_signature(zoo_dir / "bart_like.onnx")
    assert enc.shape == ("batch", "sequence") and dec.shape == ("batch", "decoder_sequence")
    assert enc.value_range == dec.value_range == (0, 999)


def test_profile_of_the_newer_zoo_families(zoo_dir):
    """Each family's signature operators are counted where they belong, with no warning."""
    expect = {
        "unet_like": ("ConvTranspose", "conv"),
        "yolo_like": ("Resize", "data_movement"),
        "convnext_like": ("LayerNormalization", "normalization"),
        "efficientnet_like": ("GlobalAveragePool", "pooling"),
        "dlrm_like": ("Gather", "embedding"),
        "deepspeech_like": ("GRU", "recurrent"),
        "llama_like": ("ReduceMean", "reduction"),
    }
    for name, (op, category) in expect.items():
        prof = kops.profile(zoo_dir / f"{name}.onnx")
        assert prof.op_types[op].count > 0, name
        assert prof.category_time_share[category] > 0, name
        assert not prof.warnings and not prof.unknown_ops, name
    for name in ("convnext_like", "efficientnet_like"):
        assert kops.profile(zoo_dir / f"{name}.onnx").category_flops["depthwise_conv"] > 0


def test_features_fixed_length_and_similar_for_similar_models(zoo_dir, tmp_path):
    big_bert = kops.profile(kops.zoo.build("bert_like", tmp_path, hidden=128, layers=4, heads=4))
    profs = {n: kops.profile(zoo_dir / f"{n}.onnx") for n in ("bert_like", "resnet_like", "lstm")}
    vecs = {n: p.features() for n, p in profs.items()}
    for v in vecs.values():
        assert (
            v.dtype == np.float64 and v.shape == (len(kops.FEATURE_NAMES),) and np.isfinite(v).all()
        )
    shares = [i for i, n in enumerate(kops.FEATURE_NAMES) if "share" in n]
    b, big = vecs["bert_like"][shares], big_bert.features()[shares]
    assert np.linalg.norm(b - big) < np.linalg.norm(b - vecs["resnet_like"][shares])
    assert np.linalg.norm(b - big) < np.linalg.norm(b - vecs["lstm"][shares])


def test_to_dict_round_trip_is_json(zoo_dir):
    prof = kops.profile(zoo_dir / "gpt2_like.onnx", {"sequence": 32})
    d = json.loads(json.dumps(prof.to_dict()))
    for key in ("total_flops", "total_params", "activation_bytes", "key_operators", "op_types",
                "dims", "feature_names", "features"):  # fmt: skip
        assert key in d
    back = kops.ModelProfile.from_dict(d)
    assert back.inputs == prof.inputs and back.op_types == prof.op_types
    np.testing.assert_array_equal(back.features(), prof.features())


def test_cli_table_json_and_errors(zoo_dir, tmp_path, capsys):
    assert cli.main(["kops", str(zoo_dir / "tiny_mlp.onnx"), "--dim", "batch=4"]) == 0
    out = capsys.readouterr().out
    assert "Gemm" in out and "batch=4" in out
    assert cli.main(["kops", str(zoo_dir / "tiny_mlp.onnx"), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["key_operators"] == ["Gemm"] and d["dims"] == {"batch": 1}
    assert len(d["features"]) == len(d["feature_names"]) == len(kops.FEATURE_NAMES)

    not_onnx = tmp_path / "notes.onnx"
    not_onnx.write_text("definitely not a protobuf\n")
    truncated = tmp_path / "trunc.onnx"
    truncated.write_bytes((zoo_dir / "bert_like.onnx").read_bytes()[:5000])
    cases = [
        [str(tmp_path / "missing.onnx")],
        [str(not_onnx)],
        [str(truncated)],
        [str(tmp_path)],
        [str(_dyn_model(tmp_path, "frames"))],
        [str(zoo_dir / "tiny_mlp.onnx"), "--dim", "batch"],
        [str(zoo_dir / "tiny_mlp.onnx"), "--dim", "batch=0"],
    ]
    for args in cases:
        assert cli.main(["kops", *args]) == 2, args
        err = capsys.readouterr().err
        assert err.startswith("autoconf: error: ") and err.count("\n") == 1, err
