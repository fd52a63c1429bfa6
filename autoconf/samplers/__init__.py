"""Samplers for the search, by name. Every one is an Optuna ``BaseSampler``; a new one is one
module with a ``make(context)`` factory and one line in ``SAMPLERS``. A sampler that knows when
to stop registers a rule of its name in :mod:`autoconf.stopping`."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

import numpy as np
import optuna

from .._errors import UserError
from .._objective import Objective
from .._space import SearchSpace
from .._types import ModelTable


@dataclass
class SamplerContext:
    """What a sampler factory may use: the space, the objective, a seed, the target model's
    features and what was measured on other models (empty without a knowledge base)."""

    space: SearchSpace
    objective: Objective
    seed: int = 0
    target_features: np.ndarray | None = None
    history: list[ModelTable] = field(default_factory=list)


#: name -> "module" holding ``make(context: SamplerContext) -> optuna.samplers.BaseSampler``
#: (or "module:factory" naming another factory of that signature).
SAMPLERS: dict[str, str] = {
    "random": "autoconf.samplers._baselines:make_random",
    "tpe": "autoconf.samplers._baselines:make_tpe",
    "gp": "autoconf.samplers._baselines:make_gp",
    "grid": "autoconf.samplers._baselines:make_grid",
    "transfer": "autoconf.samplers._baselines:make_transfer",
    "meta": "autoconf.samplers._meta",
}


def make_sampler(name: str, context: SamplerContext) -> optuna.samplers.BaseSampler:
    try:
        module = SAMPLERS[name]
    except KeyError:
        raise UserError(f"unknown sampler {name!r} (known: {', '.join(SAMPLERS)})") from None
    module, _, factory = module.partition(":")
    return getattr(importlib.import_module(module), factory or "make")(context)


__all__ = [
    "SAMPLERS",
    "ModelTable",
    "SamplerContext",
    "make_sampler",
]
