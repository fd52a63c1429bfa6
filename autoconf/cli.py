"""The ``autoconf`` command line: one subcommand per module in ``autoconf._commands``.

Each command module has ``register(subparsers)``, which adds its parser and sets ``func``.
Errors a user can fix end as one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys

from ._errors import UserError

#: Subcommands, in the order ``autoconf --help`` lists them.
COMMANDS: list[str] = ["kops", "search", "validate", "bench", "cleanup", "stress", "prior"]


def _user_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [UserError]
    for module, name in (("kops", "KopsError"), ("stress", "StressError")):
        with contextlib.suppress(ImportError, AttributeError):
            errors.append(getattr(importlib.import_module(module), name))
    return tuple(errors)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="autoconf",
        description="Find the cheapest serving configuration of an ONNX model within its latency SLO.",
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"autoconf {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"autoconf._commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except _user_errors() as exc:
        print(f"autoconf: error: {exc}", file=sys.stderr)
        return int(getattr(exc, "exit_code", 2))
    except KeyboardInterrupt:
        print("autoconf: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
