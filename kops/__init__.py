"""kops: characterize an ONNX model from its graph alone (its key operators, FLOPs, bytes).

Roofline reference device (documented, used for every estimated time): an A100-like accelerator
with 19.5 TFLOP/s (fp32) and 1555 GB/s; a node takes ``max(flops / peak, bytes / bandwidth)``.
"""

from . import zoo
from ._cost import CATEGORIES, CONTRACTION_CATEGORIES
from ._errors import KopsError
from ._profile import (
    BANDWIDTH_BYTES_PER_S,
    FEATURE_NAMES,
    FEATURE_VERSION,
    KEY_OPERATOR_COVERAGE,
    PEAK_FLOPS_PER_S,
    ModelProfile,
    OpTypeStats,
    TensorSpec,
    input_signature,
    profile,
    symbolic_dims,
)

__all__ = [
    "BANDWIDTH_BYTES_PER_S",
    "CATEGORIES",
    "CONTRACTION_CATEGORIES",
    "FEATURE_NAMES",
    "FEATURE_VERSION",
    "KEY_OPERATOR_COVERAGE",
    "PEAK_FLOPS_PER_S",
    "KopsError",
    "ModelProfile",
    "OpTypeStats",
    "TensorSpec",
    "input_signature",
    "profile",
    "symbolic_dims",
    "zoo",
]
