"""Argument parsing shared by the subcommands: durations, latencies and KEY=VALUE options."""

from __future__ import annotations

import argparse
import math
import re
from typing import Any

import yaml

from .._errors import UserError
from .._input import MAX_DURATION_S, MAX_LATENCY_MS

_UNITS_S = {"ms": 1e-3, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
_DURATION = re.compile(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(ms|s|min|m|h)?\s*")


def parse_duration_s(
    text: str,
    option: str,
    default_unit: str = "s",
    allow_zero: bool = False,
    what: str = "a duration (e.g. 10s, 500ms, 2m)",
    maximum_s: float = MAX_DURATION_S,
) -> float:
    """``"10s"``, ``"500ms"``, ``"2m"`` or a bare number in ``default_unit`` -> seconds (> 0,
    at most ``maximum_s``)."""
    m = _DURATION.fullmatch(str(text))
    if not m:
        raise UserError(f"{option}: cannot read {text!r} as {what}")
    value = float(m.group(1)) * _UNITS_S[m.group(2) or default_unit]
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise UserError(f"{option}: must be > 0, got {text!r}")
    if value > maximum_s:
        raise UserError(f"{option}: at most {maximum_s:g} s, got {text!r}")
    return value


def parse_latency_ms(text: str, option: str = "--slo-p99") -> float:
    """``"50ms"``, ``"50"`` (ms) or ``"0.05s"`` -> milliseconds (> 0)."""
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


def add_options_flag(parser: argparse.ArgumentParser, flag: str, help: str) -> None:
    """A repeatable ``FLAG KEY=VALUE`` argument, read later with :func:`parse_options`."""
    parser.add_argument(flag, action="append", default=[], metavar="KEY=VALUE", help=help)
