"""Evaluation backends, by name. A new backend is one module and one line in ``BACKENDS``."""

from __future__ import annotations

import importlib
from typing import Any

from .._errors import UserError
from .._space import SearchSpace
from ._base import Backend

#: name -> "module:Class", imported on first use so that heavy dependencies load lazily.
BACKENDS: dict[str, str] = {
    "local": "autoconf.backends._local:LocalBackend",
    "replay": "autoconf.backends._replay:ReplayBackend",
    "sim": "autoconf.backends._sim:SimBackend",
    "kubernetes": "autoconf.backends._kubernetes:KubernetesBackend",
}


def backend_class(name: str) -> type[Backend]:
    """The class registered as ``name``."""
    try:
        target = BACKENDS[name]
    except KeyError:
        raise UserError(f"unknown backend {name!r} (known: {', '.join(BACKENDS)})") from None
    module, cls = target.split(":")
    return getattr(importlib.import_module(module), cls)


def get_backend(name: str, space: SearchSpace, **options: Any) -> Backend:
    """Construct the backend registered as ``name``."""
    return backend_class(name)(space, **options)


__all__ = ["BACKENDS", "Backend", "backend_class", "get_backend"]
