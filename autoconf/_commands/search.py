"""``autoconf search MODEL.onnx --slo-p99 50ms [--qps 200] ...``: find, re-measure and emit a plan."""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path
from typing import Any

from .._errors import UserError
from .._input import out_dir, rate_rps
from .._secrets import redact
from .._variants import parse_drop, parse_precisions
from ._args import (
    add_backend_flag,
    add_backend_options,
    parse_duration_s,
    parse_latency_ms,
    parse_options,
    sampler_help,
)
from ._plan_args import add_dim_flag, add_manifest_flags, dims, manifest_settings

#: ``--example`` defaults: a tiny model, a loose SLO and a short budget that finish in a few
#: minutes on a laptop with the local backend. Without ``--qps`` the example looks for the most
#: requests/s per dollar under the SLO (each trial finds its capacity).
EXAMPLE_MODEL = "tiny_mlp"
EXAMPLE_SLO = "50ms"
EXAMPLE_BUDGET = 5
EXAMPLE_DURATION_S = 3.0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "search",
        help="find the cheapest serving config of a model within a p99 SLO",
        description="Profile the model, search configs with a prior-warmed Bayesian optimizer, "
        "stress-test each, re-measure the best at the target load and write plan.yaml, "
        "manifests/, report.html and trials.csv into --out.",
    )
    p.add_argument("model", nargs="?", help="the ONNX model file (not with --example)")
    p.add_argument(
        "--example",
        action="store_true",
        help=f"generate an example model ({EXAMPLE_MODEL}) into --out and search it "
        f"(defaults: --slo-p99 {EXAMPLE_SLO} --budget "
        f"{EXAMPLE_BUDGET} --duration {EXAMPLE_DURATION_S:g}s)",
    )
    p.add_argument("--slo-p99", metavar="LATENCY", help="p99 latency SLO, e.g. 50ms or 0.2s")
    p.add_argument(
        "--qps",
        type=float,
        metavar="RPS",
        help="target load in requests/s (default: the most requests/s per dollar)",
    )
    p.add_argument(
        "--space",
        metavar="NAME|FILE",
        help="search space: a shipped name or a YAML file (default: cpu-local)",
    )
    add_backend_flag(p, "where configs are measured (default local)", default="local")
    p.add_argument(
        "--budget",
        type=int,
        metavar="N",
        help="at most N configs measured, resumed ones included (default 20)",
    )
    p.add_argument(
        "--parallel",
        type=int,
        default=1,
        metavar="K",
        help="K workers sharing one study; never two on the same config (default 1)",
    )
    p.add_argument(
        "--storage",
        metavar="URL",
        help="Optuna storage URL (default sqlite:///OUT/study.db; postgresql://... "
        "for a shared team store)",
    )
    p.add_argument(
        "--out",
        default=None,
        metavar="DIR",
        help="output directory (default autoconf-out, or autoconf-example)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted search; finished stress tests are not re-run",
    )
    p.add_argument(
        "--join",
        action="store_true",
        help="search one study together with other processes sharing --storage: creates the "
        "study or joins it, whichever comes first (never a config measured twice)",
    )
    p.add_argument(
        "--sampler", metavar="NAME", help=sampler_help("default meta where available, else tpe")
    )
    p.add_argument(
        "--knowledge",
        metavar="URL|PATH",
        help="knowledge base that warms the prior and learns from this search "
        "(default ~/.autoconf/knowledge.db; 'none' to disable)",
    )
    p.add_argument(
        "--duration", metavar="TIME", help="load per stress test, e.g. 10s (default 10s)"
    )
    p.add_argument("--seed", type=int, default=0)
    add_backend_options(p, "passed to the backend (repeatable)")
    _add_variant_flags(p)
    add_dim_flag(p, "used for the profile and the requests, and kept in the plan")
    add_manifest_flags(
        p,
        "a KServe InferenceService instead of the Deployment, Service and HPA (needs --model-uri)",
    )
    p.add_argument("--no-progress", action="store_true", help="no live display: one line per trial")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    p.set_defaults(func=run)


def _add_variant_flags(p: argparse.ArgumentParser) -> None:
    """``--precisions``, ``--max-accuracy-drop``, ``--sample-inputs``: model variants."""
    p.add_argument(
        "--precisions",
        metavar="LIST",
        help="model variants to search, e.g. fp32,fp16,int8 (replaces the space's precision "
        "dimension; FP16 and INT8 files are built with ONNX Runtime's tools and cached)",
    )
    p.add_argument(
        "--max-accuracy-drop",
        metavar="SHARE",
        help="a variant whose outputs drift further from FP32's is left out, e.g. 1%% "
        "(1 - top-1 agreement for class logits, else relative error; default 1%%)",
    )
    p.add_argument(
        "--sample-inputs",
        metavar="FILE.npz",
        help="inputs for the accuracy check and INT8 calibration: one array per model input, "
        "samples on the first axis (default: generated from the input signature)",
    )


def _inputs(args: argparse.Namespace) -> tuple[Path, Path, str, float | None, int, float]:
    """(model, out, SLO, qps, budget, duration) from the flags, ``--example``'s defaults applied
    (its model written into ``out``)."""
    if args.example:
        if args.model:
            raise UserError("--example generates its own model: give no MODEL with it")
        out = out_dir(args.out or "autoconf-example")
        import kops.zoo

        model = out / f"{EXAMPLE_MODEL}.onnx"
        if not model.exists():
            kops.zoo.build_tiny_mlp(model)  # onnx.helper: no torch on a core install
        previous = out / "study.db"
        if previous.exists() and not args.resume and not args.storage:
            msg = f"{out}/ holds a previous example run: replacing it with a fresh one"
            if not args.quiet:
                print(f"{msg} (--resume continues it instead)", file=sys.stderr)
            previous.unlink()
        slo = args.slo_p99 or EXAMPLE_SLO
        qps = args.qps
        budget = args.budget if args.budget is not None else EXAMPLE_BUDGET
        duration = (
            parse_duration_s(args.duration, "--duration") if args.duration else EXAMPLE_DURATION_S
        )
    else:
        if not args.model:
            raise UserError("give a MODEL.onnx (or --example)")
        if not args.slo_p99:
            raise UserError("--slo-p99 is required, e.g. --slo-p99 50ms")
        out = Path(args.out or "autoconf-out")
        model = Path(args.model)
        slo, qps = args.slo_p99, args.qps
        budget = args.budget if args.budget is not None else 20
        duration = parse_duration_s(args.duration, "--duration") if args.duration else 10.0
    return model, out, slo, qps, budget, duration


def run(args: argparse.Namespace) -> int:
    from .._search import SearchOptions, run_search

    model, out, slo, qps, budget, duration = _inputs(args)
    if qps is not None:
        rate_rps(qps, "--qps")
    precisions = parse_precisions(args.precisions) if args.precisions is not None else None
    max_drop = parse_drop(args.max_accuracy_drop) if args.max_accuracy_drop is not None else None
    opts = SearchOptions(
        model_path=model,
        slo_p99_ms=parse_latency_ms(slo),
        target_rps=qps,
        space=args.space,
        backend=args.backend,
        backend_options=parse_options(args.backend_option, "--backend-option"),
        budget=budget,
        parallel=args.parallel,
        storage=args.storage,
        out_dir=out,
        resume=args.resume,
        join=args.join,
        sampler=args.sampler,
        seed=args.seed,
        knowledge=args.knowledge,
        duration_s=duration,
        command=redact("autoconf " + shlex.join(sys.argv[1:])),
        progress=not args.no_progress,
        quiet=args.quiet,
        dims=dims(args),
        manifest=manifest_settings(args),
        precisions=precisions,
        max_accuracy_drop=max_drop,
        sample_inputs=Path(args.sample_inputs) if args.sample_inputs else None,
    )
    if args.quiet:  # warnings too: nothing but errors
        logging.getLogger().setLevel(logging.ERROR)
    result = run_search(opts)
    return _print_outcome(args, result, out)


def _print_outcome(args: argparse.Namespace, result: Any, out: Path) -> int:
    """What the user reads once the search ends; the exit code (0 a plan, 1 none)."""
    if args.quiet and result.outcome == "plan":
        return 0
    if not args.quiet:
        print(
            f"study: {result.study_name} ({result.new_evaluations} configs measured now, "
            f"{len(result.records)} in all)"
        )
        for note in result.notes:
            print(f"note: {note}", file=sys.stderr)
    if result.outcome == "plan" and result.chosen is not None and result.validation is not None:
        v = result.validation
        print(
            f"plan: {result.chosen.key()}  ${v.cost_per_hour:,.4f}/h  "
            f"p99 {v.p99_ms or 0:,.1f} ms at {v.throughput_rps or 0:,.1f} requests/s "
            + ("(simulated)" if args.backend == "sim" else "(re-measured)")
        )
        print(
            f"wrote {result.plan_path}, {len(result.manifests)} manifests, "
            f"{result.report_path}, {out / 'trials.csv'}"
        )
        return 0
    what = (
        "no config met the SLO at the target load"
        if result.outcome == "infeasible"
        else "no feasible config held when re-measured and the budget is spent"
    )
    print(f"autoconf: {what}; closest configs:", file=sys.stderr)
    for r in result.closest():
        m = r.measurement
        status = (
            "failed: " + (m.error or "")
            if not m.ok
            else (f"p99 {m.p99_ms or 0:,.1f} ms, {m.throughput_rps or 0:,.1f} requests/s")
        )
        print(f"  {r.config.key()}  ${m.cost_per_hour:,.4f}/h  {status}", file=sys.stderr)
    print(f"see {result.report_path}", file=sys.stderr)
    return 1
