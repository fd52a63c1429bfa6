"""The ``sim`` backend: answers from the simulated GPU cluster of :mod:`autoconf._simulator`
(every number a model's assumption, none a measurement of real hardware)."""

from __future__ import annotations

from typing import Any

from .._errors import UserError
from .._simulator import SimModel, simulate_configs
from .._types import Config, Load, Measurement
from ._base import Backend


class SimBackend(Backend):
    """Simulated GPU serving (see the module docstring). Option: ``seed`` (default 0)."""

    name = "sim"

    def evaluate(self, profile: Any, config: Config, load: Load) -> Measurement:
        if not self.space.contains(config):
            raise UserError(
                f"config {config.key()} is outside the search space {self.space.name!r}"
            )
        model = SimModel.from_profile(profile)
        seed = int(self.options.get("seed", 0))
        return simulate_configs(model, self.space, [config], load, seed)[0]
