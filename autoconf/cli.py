"""The ``autoconf`` command line: one subcommand per module in ``autoconf._commands``.

Each command module has ``register(subparsers)``, which adds its parser and sets ``func``.
Exit codes: 0 the plan holds / was written, 1 it does not hold / no config met the SLO (the
commands return it), 2 bad input (one line, never a traceback), 3 an internal error (one line;
the traceback is logged at debug level: rerun with ``-v``), 130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import sys

from ._commands import bench, cleanup, kops, manifests, prior, search, stress, validate
from ._errors import AutoconfError
from ._secrets import redact, redact_logging

logger = logging.getLogger("autoconf")

#: Subcommands, in the order ``autoconf --help`` lists them.
COMMANDS: list[str] = [
    "kops",
    "search",
    "validate",
    "manifests",
    "bench",
    "cleanup",
    "stress",
    "prior",
]
_MODULES = {
    "kops": kops,
    "search": search,
    "validate": validate,
    "manifests": manifests,
    "bench": bench,
    "cleanup": cleanup,
    "stress": stress,
    "prior": prior,
}

EXIT_BAD_INPUT = 2
EXIT_INTERNAL_ERROR = 3
EXIT_INTERRUPTED = 130


def error_exit_codes() -> list[tuple[type[BaseException], int]]:
    """The error roots of the three packages and their exit codes, most specific first."""
    import kops as kops_pkg
    import stress as stress_pkg

    return [
        (stress_pkg.DeployError, 1),  # a deployment that failed under test
        (stress_pkg.StressError, EXIT_BAD_INPUT),
        (kops_pkg.KopsError, EXIT_BAD_INPUT),
        (AutoconfError, EXIT_BAD_INPUT),
    ]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="autoconf",
        description="Find the cheapest serving configuration of an ONNX model within its latency SLO.",
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"autoconf {__version__}")
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_const",
        const="DEBUG",
        dest="log_level",
        help="log everything (same as --log-level DEBUG)",
    )
    parser.add_argument(
        "--log-level",
        default="WARNING",
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="log messages of this level and above on stderr (default WARNING)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        _MODULES[name].register(sub)
    return parser


def _exit_code(exc: BaseException) -> int | None:
    for cls, code in error_exit_codes():
        if isinstance(exc, cls):
            return int(getattr(exc, "exit_code", code))
    return None


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="autoconf: %(levelname)s: %(name)s: %(message)s"
    )
    redact_logging()
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("autoconf: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        code = _exit_code(exc)
        if code is not None:
            print(f"autoconf: error: {redact(str(exc))}", file=sys.stderr)
            return code
        logger.debug("internal error", exc_info=True)
        print(
            f"autoconf: internal error: {type(exc).__name__}: {redact(str(exc))} "
            "(a bug: rerun with -v for the traceback)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL_ERROR


if __name__ == "__main__":
    sys.exit(main())
