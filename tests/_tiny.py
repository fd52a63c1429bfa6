"""A tiny GPU space and two simulated models shared by the sim and bench tests."""

from __future__ import annotations

from pathlib import Path

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
