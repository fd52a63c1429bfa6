"""A search space cut to what a backend can host: configs it would refuse are left out before the
search, with a note, instead of failing one by one at deploy time.

The space stays a product of per-dimension value lists (what samplers and the surrogate expect),
so a refused config is removed by dropping dimension values: greedily the value whose removal
keeps the most hostable configs, until no refused config is left. On a 2-core machine, where one
core is the load generator's, ``cpu-local`` keeps ``replicas=1, cpu_cores=1`` only.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable

from ._errors import UserError
from ._space import SearchSpace
from ._types import Config

log = logging.getLogger(__name__)


def trim_space(
    space: SearchSpace, refusal: Callable[[Config], str | None], backend: str
) -> tuple[SearchSpace, list[str]]:
    """``space`` without the configs ``refusal`` gives a reason for, and one note per value
    dropped. Raises :class:`UserError` (one line) when no config is left."""
    refused = {}
    for c in space.configs():
        reason = refusal(c)
        if reason is not None:
            refused[c] = reason
    if not refused:
        return space, []
    values = {d: space.values(d) for d in space.dimension_names}
    if len(refused) == space.size():
        first = next(iter(refused.values()))
        raise UserError(
            f"the {backend} backend cannot host any config of space {space.name!r}: {first}"
        )
    notes = []
    while True:
        inside = [c for c in refused if all(getattr(c, d) in values[d] for d in values)]
        if not inside:
            break
        d, v = _best_drop(values, inside, refused)
        if d is None:
            raise UserError(
                f"the {backend} backend cannot host space {space.name!r}: {refused[inside[0]]}"
            )
        why = next(r for c, r in refused.items() if getattr(c, d) == v and c in inside)
        values[d] = [x for x in values[d] if x != v]
        notes.append(f"{backend} backend: {d}={v} left out of space {space.name!r} ({why})")
    dims = {
        d: (values[d] if values[d] != space.values(d) else space.dimensions[d])
        for d in space.dimensions
    }
    trimmed = space.model_copy(update={"dimensions": dims})
    notes.append(
        f"space {space.name!r} trimmed to {trimmed.size()} of {space.size()} configs "
        "this machine can host beside the load generator"
    )
    for n in notes:
        log.warning(n)
    return trimmed, notes


def _best_drop(
    values: dict[str, list], inside: list[Config], refused: dict[Config, str]
) -> tuple[str | None, object]:
    """The value of a refused config still ``inside`` the product whose removal keeps the most
    hostable configs (ties: the larger value, the later dimension); ``(None, None)`` when no
    dimension has a value to spare. Values whose change alone makes a refused config hostable
    (cores, replicas: not the batch size) are preferred."""
    causes = {
        (d, getattr(c, d))
        for c in inside
        for d, vals in values.items()
        if any(Config(**{**c.to_dict(), d: x}) not in refused for x in vals if x != getattr(c, d))
    }
    best: tuple[str | None, object] = (None, None)
    best_key: tuple[int, int, int] | None = None
    for d, vals in values.items():
        if len(vals) < 2:
            continue
        for i, v in enumerate(vals):
            if not any(getattr(c, d) == v for c in inside):
                continue
            if causes and (d, v) not in causes:
                continue
            rest = {**values, d: [x for x in vals if x != v]}
            kept = sum(
                1 for combo in itertools.product(*rest.values()) if _ok(rest, combo, refused)
            )
            key = (kept, i, list(values).index(d))
            if best_key is None or key > best_key:
                best, best_key = (d, v), key
    return best


def _ok(values: dict[str, list], combo: tuple, refused: dict[Config, str]) -> bool:
    return Config(**dict(zip(values, combo))) not in refused
