"""Argument parsing shared by the subcommands: durations, latencies and KEY=VALUE options."""

from __future__ import annotations

import argparse
import math
import re
import sys
from typing import Any

import yaml

from .._errors import UserError
from .._input import MAX_DURATION_S, MAX_LATENCY_MS

_UNITS_S = {"ms": 1e-3, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
_DURATION = re.compile(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(ms|s|min|m|h)?\s*")


def parse_duration_s(
    text: str,
    option: str,
    unit_hint: str = "s",
    allow_zero: bool = False,
    what: str = "a duration (e.g. 10s, 500ms, 2m)",
    maximum_s: float = MAX_DURATION_S,
) -> float:
    """``"10s"``, ``"500ms"``, ``"2m"`` -> seconds (> 0, at most ``maximum_s``). The unit is
    required (a bare ``50`` could be seconds or milliseconds); the error suggests ``unit_hint``."""
    m = _DURATION.fullmatch(str(text))
    if not m:
        raise UserError(f"{option}: cannot read {text!r} as {what}")
    if m.group(2) is None:
        raise UserError(f"{option}: give a unit, e.g. {m.group(1)}{unit_hint} (got {text!r})")
    value = float(m.group(1)) * _UNITS_S[m.group(2)]
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise UserError(f"{option}: must be > 0, got {text!r}")
    if value > maximum_s:
        raise UserError(f"{option}: at most {maximum_s:g} s, got {text!r}")
    return value


def parse_latency_ms(text: str, option: str = "--slo-p99") -> float:
    """``"50ms"`` or ``"0.05s"`` -> milliseconds (> 0); a bare ``50`` is refused (hint: 50ms)."""
    what = "a latency (e.g. 50ms, 0.2s)"
    return parse_duration_s(text, option, "ms", what=what, maximum_s=MAX_LATENCY_MS / 1000) * 1000.0


def parse_options(pairs: list[str], option: str) -> dict[str, Any]:
    """Repeated ``KEY=VALUE`` flags -> a dict; values read as YAML scalars (``2`` -> int)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UserError(f"{option}: expected KEY=VALUE, got {pair!r}")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            out[key.strip()] = value
    return out


class _DeprecatedAppend(argparse._AppendAction):
    """``append``, with a note on stderr when the deprecated spelling is used."""

    def __call__(self, parser, namespace, values, option_string=None):  # type: ignore[override]
        if option_string in DEPRECATED:
            print(
                f"autoconf: {option_string} is deprecated; use {DEPRECATED[option_string]}",
                file=sys.stderr,
            )
        super().__call__(parser, namespace, values, option_string)


#: deprecated option spelling -> the one every command uses
DEPRECATED = {"--option": "--backend-option"}


def add_backend_options(parser: argparse.ArgumentParser, help: str) -> None:
    """``--backend-option KEY=VALUE`` (repeatable), the same on every command; ``--option`` is
    kept as a deprecated alias (``stress`` used it)."""
    parser.add_argument(
        "--backend-option",
        "--option",
        dest="backend_option",
        action=_DeprecatedAppend,
        default=[],
        metavar="KEY=VALUE",
        help=help + " (--option: deprecated alias)",
    )


def add_backend_flag(parser: argparse.ArgumentParser, help: str, **kw: Any) -> None:
    """``--backend`` with the registry's names as its choices (listed in ``--help``)."""
    from ..backends import BACKENDS

    parser.add_argument("--backend", choices=BACKENDS, help=help, **kw)


def sampler_help(default: str) -> str:
    from ..samplers import SAMPLERS

    return f"one of {', '.join(SAMPLERS)} ({default})"
