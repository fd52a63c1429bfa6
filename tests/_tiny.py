"""A tiny GPU space and two simulated models shared by the sim and bench tests, and the small
ONNX graphs several tests build without torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from autoconf import load_space
from autoconf._simulator import SimModel

#: 24 configs with a GPU too small for any model (every SMALL config runs out of memory) and a
#: dearer one that fits; every config's cost differs, so the best is unique.
TINY_MEMORY_SPACE = """
name: tiny-memory
dimensions:
  batch_size: [8]
  gpu_type: [SMALL, BIG]
  replicas: {min: 1, max: 6}
  cpu_cores: [1, 2]
gpus:
  SMALL: {fp16_tflops: 65, fp32_tflops: 8.1, memory_gb: 0.25, bandwidth_gbps: 320,
          price_per_hour: 0.11}
  BIG: {fp16_tflops: 65, fp32_tflops: 8.1, memory_gb: 16, bandwidth_gbps: 320,
        price_per_hour: 0.37}
pricing:
  cpu_core_per_hour: 0.0447
"""

TINY_SPACE = """
name: tiny
dimensions:
  batch_size: [1, 4, 16]
  gpu_type: [T4, A100-40GB]
  replicas: [1, 2, 4]
  cpu_cores: [1, 4]
gpus:
  T4: {fp16_tflops: 65, fp32_tflops: 8.1, memory_gb: 16, bandwidth_gbps: 320, price_per_hour: 0.35}
  A100-40GB: {fp16_tflops: 312, fp32_tflops: 19.5, memory_gb: 40, bandwidth_gbps: 1555, price_per_hour: 2.93}
pricing: {cpu_core_per_hour: 0.0447}
"""

MODELS = [
    SimModel("cnn@a", flops=4e9, param_bytes=1e8, activation_bytes=2e7, cpu_ms_per_sample=0.5),
    SimModel("bert@a", flops=2e10, param_bytes=4e8, activation_bytes=3e7, cpu_ms_per_sample=0.3),
]


def tiny_space(tmp_path: Path):
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_SPACE)
    return load_space(path)


def save_graph(graph: onnx.GraphProto, path: Path) -> Path:
    """Write ``graph`` as an opset-17 model to ``path``."""
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def matmul_onnx(path: Path, n_in: int, n_out: int, seed: int = 0) -> Path:
    """``y = x @ W`` with random ``W`` (``n_in`` x ``n_out``), a dynamic batch axis."""
    w = np.random.default_rng(seed).standard_normal((n_in, n_out)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        path.stem,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", n_in])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", n_out])],
        [numpy_helper.from_array(w, "w")],
    )
    return save_graph(graph, path)


def conv_relu_onnx(path: Path, weight: np.ndarray, spatial: tuple[str, str]) -> Path:
    """A 3x3 convolution (``weight``: out x 3 x 3 x 3) and a ReLU over ``batch, 3, *spatial``
    inputs: dynamic spatial dims with no default, which kops cannot guess."""
    out = weight.shape[0]
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["c"], ["y"]),
        ],
        path.stem,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, *spatial])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", out, *spatial])],
        [numpy_helper.from_array(weight.astype(np.float32), "w")],
    )
    return save_graph(graph, path)
