"""``autoconf kops MODEL.onnx``: profile a model's key operators from its graph alone."""

from __future__ import annotations

import argparse
import json
import sys

import kops


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "kops",
        help="characterize an ONNX model: key operators, FLOPs, parameters, activation memory",
        description="Profile an ONNX model from its graph alone (weights are never read).",
    )
    p.add_argument("model", help="path of the .onnx file")
    p.add_argument(
        "--dim",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="value of a symbolic dimension (repeatable; an unknown name is an error); "
        "defaults: batch 1, sequence 128",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.set_defaults(func=run)


def parse_dims(items: list[str]) -> dict[str, int]:
    """``["batch=8", "sequence=256"]`` -> ``{"batch": 8, "sequence": 256}``."""
    dims: dict[str, int] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise kops.KopsError(f"--dim {item!r}: expected NAME=VALUE")
        try:
            dims[name.strip()] = int(value)
        except ValueError:
            raise kops.KopsError(f"--dim {item!r}: VALUE must be an integer") from None
    return dims


def run(args: argparse.Namespace) -> int:
    from .._dims import check_dims

    prof = kops.profile(args.model, check_dims(args.model, parse_dims(args.dim)))
    if args.json:
        json.dump(prof.to_dict(), sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0
    _print_table(prof)
    return 0


def _fmt(x: float) -> str:
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.2f} {unit}"
    return f"{x:.0f}"


def _print_table(prof: kops.ModelProfile) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:  # piped or redirected: don't squeeze the table into 80 columns
        console.width = 120
    dims = ", ".join(
        f"{k}={v}" + (" (default)" if k in prof.default_dims else "") for k, v in prof.dims.items()
    )
    console.print(f"[bold]{prof.name}[/bold]  {prof.path}")
    console.print(f"dims: {dims or 'none (static shapes)'}")
    console.print(
        f"FLOPs {_fmt(prof.total_flops)}  params {_fmt(prof.total_params)} "
        f"({_fmt(prof.param_bytes)}B)  activations {_fmt(prof.activation_bytes)}B  "
        f"intensity {prof.arithmetic_intensity:.1f} FLOP/B  "
        f"est. {prof.est_time_s * 1e6:.1f} us on the reference device"
    )
    table = Table(title=f"op types (key operators: {', '.join(prof.key_operators)})")
    for col in ("op type", "count", "FLOPs", "bytes", "est. time (us)", "share", "key"):
        table.add_column(col, justify="left" if col == "op type" else "right", no_wrap=True)
    for op, s in prof.op_types.items():
        table.add_row(
            op,
            str(s.count),
            _fmt(s.flops),
            _fmt(s.bytes),
            f"{s.est_time_s * 1e6:.2f}",
            f"{s.share:.1%}",
            "*" if op in prof.key_operators else "",
        )
    console.print(table)
    for w in prof.warnings:
        console.print(f"[yellow]warning:[/yellow] {w}")
