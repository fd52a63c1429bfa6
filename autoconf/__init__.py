"""autoconf: the cheapest serving configuration of an ML model within its latency SLO."""

from ._errors import UserError
from ._objective import Objective
from ._space import GpuSpec, SearchSpace, load_space
from ._types import Config, Load, Measurement

__version__ = "0.1.0"

__all__ = [
    "Config",
    "GpuSpec",
    "Load",
    "Measurement",
    "Objective",
    "SearchSpace",
    "UserError",
    "__version__",
    "load_space",
]
