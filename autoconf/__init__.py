"""autoconf: the cheapest serving configuration of an ML model within its latency SLO."""

from ._errors import UserError
from ._objective import Objective
from ._space import GpuSpec, SearchSpace, load_space
from ._types import Config, Load, Measurement, ModelTable

__version__ = "0.1.0"

#: Search and validate, imported on first use (they pull in optuna, rich and matplotlib).
_LAZY = {
    "SearchOptions": "._search",
    "SearchResult": "._search",
    "run_search": "._search",
    "Plan": "._plan",
    "read_plan": "._plan",
    "validate_plan": "._validate",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'autoconf' has no attribute {name!r}")


__all__ = [
    "Config",
    "GpuSpec",
    "Load",
    "Measurement",
    "ModelTable",
    "Objective",
    "Plan",
    "SearchOptions",
    "SearchResult",
    "SearchSpace",
    "UserError",
    "__version__",
    "load_space",
    "read_plan",
    "run_search",
    "validate_plan",
]
