"""The ``replay`` backend: answers from tables of configs measured earlier (Falcon tables or
autoconf tables, see :mod:`autoconf.datasets`). A config of the space without a row is
answered as a failed measurement ("not in table")."""

from __future__ import annotations

from typing import Any

from .._errors import UserError
from .._space import SearchSpace
from .._types import Config, Load, Measurement
from ..datasets import load_tables
from ._base import Backend


class ReplayBackend(Backend):
    """Looks measurements up in tables. ``tables``: a directory, or a list of ModelTables.

    The model is found by name (``profile`` may be the name itself or anything with a ``name``).
    The load is not re-simulated: a table answers for the load it was measured at.
    """

    name = "replay"

    def __init__(self, space: SearchSpace, **options: Any) -> None:
        super().__init__(space, **options)
        source = options.get("tables")
        if source is None:
            raise UserError("the replay backend needs tables=<directory>")
        tables = source if isinstance(source, list) else load_tables(source)
        self.tables = {t.name: t for t in tables}

    def evaluate(self, profile: Any, config: Config, load: Load) -> Measurement:
        name = profile if isinstance(profile, str) else getattr(profile, "name", None)
        table = self.tables.get(str(name))
        if table is None:
            raise UserError(f"no table for model {name!r} (have: {', '.join(self.tables)})")
        if not table.space.contains(config):
            raise UserError(f"config {config.key()} is outside the table's space")
        found = table.results.get(config)
        if found is None:
            return Measurement.failed("not in table", table.space.cost_per_hour(config))
        return found
