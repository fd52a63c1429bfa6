"""Stopping rules, by name (like ``optuna.terminator``): one base class, :class:`StoppingRule`,
and a ``make(context)`` factory per rule in ``STOPPING_RULES``. The search consults the rule of
its sampler's name when one is registered (``meta``), else ``never``."""

from __future__ import annotations

import importlib

from .._errors import UserError
from ._base import StoppingContext, StoppingRule

#: name -> "module" holding ``make(context: StoppingContext) -> StoppingRule``.
STOPPING_RULES: dict[str, str] = {
    "never": "autoconf.stopping._never",
    "meta": "autoconf.stopping._posterior",
}


def rule_for_sampler(sampler: str | None) -> str:
    """The stopping rule of a sampler: the one registered under its name, else ``never``."""
    return sampler if sampler in STOPPING_RULES else "never"


def make_stopping_rule(name: str, context: StoppingContext) -> StoppingRule:
    try:
        module = STOPPING_RULES[name]
    except KeyError:
        raise UserError(
            f"unknown stopping rule {name!r} (known: {', '.join(STOPPING_RULES)})"
        ) from None
    return importlib.import_module(module).make(context)


__all__ = [
    "STOPPING_RULES",
    "StoppingContext",
    "StoppingRule",
    "make_stopping_rule",
    "rule_for_sampler",
]
