"""Values of a model's symbolic input dims (``--dim NAME=VALUE``): parsed and checked once,
then used for the kops profile, the request bodies and kept in the plan.

A name the model does not have is refused (exit 2) with the model's symbolic dims listed: a
mistyped ``--dim seq=512`` must not be silently ignored while ``sequence`` stays at 128.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from ._errors import UserError
from ._input import MAX_DIM, number


def parse_dims(items: Iterable[str], option: str = "--dim") -> dict[str, int]:
    """``["batch=8", "height=224"]`` -> ``{"batch": 8, "height": 224}`` (each in [1, MAX_DIM])."""
    dims: dict[str, int] = {}
    for item in items:
        name, sep, value = str(item).partition("=")
        name = name.strip()
        if not sep or not name or not value.strip():
            raise UserError(f"{option} {item!r}: expected NAME=VALUE, e.g. {option} sequence=256")
        dims[name] = int(number(value.strip(), f"{option} {name}", maximum=MAX_DIM, integer=True))
    return dims


def check_dims(model_path: str | Path, dims: Mapping[str, int] | None) -> dict[str, int]:
    """``dims`` with every name checked against the model's symbolic input dims; an unknown
    name raises :class:`UserError` listing the ones it has."""
    import kops

    given = dict(dims or {})
    if not given:
        return given
    known = kops.symbolic_dims(model_path)
    unknown = [k for k in given if k not in known]
    if unknown:
        has = ", ".join(known) if known else "none (all its input shapes are fixed)"
        raise UserError(
            f"--dim {unknown[0]}: not a symbolic input dimension of {Path(model_path).name} "
            f"(its symbolic dims: {has})"
        )
    return given


def resolved_dims(model_path: str | Path, dims: Mapping[str, int] | None) -> dict[str, int]:
    """Every symbolic dim of the model valued: the checked ``dims``, else kops' defaults (batch
    1, sequence 128); a dim with no default and no value raises :class:`UserError`."""
    import kops

    given = check_dims(model_path, dims)
    try:
        return dict(kops.profile(model_path, given).dims)
    except kops.KopsError as exc:
        raise UserError(str(exc)) from None
