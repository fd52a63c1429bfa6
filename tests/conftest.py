"""Shared fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def zoo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every ``kops.zoo`` model exported once per session at its default (small) size.

    The directory holds ``<name>.onnx`` for each name in ``kops.zoo.MODELS``.
    """
    import kops

    out = tmp_path_factory.mktemp("zoo")
    for name in kops.zoo.MODELS:
        kops.zoo.build(name, out)
    return out


@pytest.fixture(scope="session")
def relu_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-node ONNX model (Relu, float input ``x`` of shape [N, 4]) for deployment tests."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    path = tmp_path_factory.mktemp("relu") / "tiny.onnx"
    onnx.save(helper.make_model(graph), path)
    return path
