"""``autoconf validate plan.yaml``: exit 0 when the plan's SLO and load still hold, 1 when not."""

from __future__ import annotations

import argparse
import sys

from ._args import add_backend_flag, add_backend_options, parse_duration_s, parse_options
from ._plan_args import add_dim_flag, dims


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "validate",
        help="re-measure a plan at its target load (CI: exit 0 holds, 1 does not, 2 bad input)",
        description="Re-measure the plan's config at its target load and check the p99 SLO, "
        "the served load and the error rate.",
    )
    p.add_argument("plan", help="plan.yaml written by autoconf search")
    add_backend_flag(p, "where to measure (default: the plan's backend)")
    add_backend_options(p, "passed to the backend (repeatable)")
    p.add_argument(
        "--duration", metavar="TIME", help="load duration, e.g. 10s (default: the plan's)"
    )
    p.add_argument("--junit", metavar="FILE", help="also write a JUnit XML result")
    add_dim_flag(p, "default: the dims the plan was measured at")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .._input import out_file
    from .._validate import validate_plan, write_junit

    if args.junit:  # checked before measuring, not after
        out_file(args.junit, "--junit")
    result = validate_plan(
        args.plan,
        backend=args.backend,
        backend_options=parse_options(args.backend_option, "--backend-option"),
        duration_s=parse_duration_s(args.duration, "--duration") if args.duration else None,
        dims=dims(args),
    )
    m = result.measurement
    plan = result.plan
    line = (
        f"{plan.to_config().key()} on {result.backend}: p99 "
        f"{m.p99_ms if m.p99_ms is not None else float('nan'):,.1f} ms (SLO "
        f"{plan.slo.p99_ms:g}), {m.throughput_rps or 0:,.1f} requests/s (target "
        f"{plan.load.target_rps:g}), errors {100 * m.error_rate:.1f} %"
    )
    if args.junit:
        write_junit(args.junit, result)
    if result.holds:
        print(f"holds: {line}")
        return 0
    print(f"does not hold: {line}: {'; '.join(result.reasons)}", file=sys.stderr)
    return 1
