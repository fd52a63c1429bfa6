"""``autoconf bench``: how many evaluations each sampler needs, on many models."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ._args import sampler_help


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "bench",
        help="benchmark samplers on tables of many models",
        description=(
            "Run each sampler on each evaluation model for N seeds and print, per sampler, the "
            "evaluations needed to reach within 1% / 5% of each model's optimum. DATASET: "
            "falcon:DIR, sim:DIR, sim:zoo (sim:zoo/train, sim:zoo/eval) or a directory of "
            "autoconf tables; --train shipped: the knowledge a new user's search starts from. "
            "The evaluated model's group (FAMILY of FAMILY@VARIANT) is always left out of the "
            "training models: same --train and --eval is leave-one-model(-family)-out."
        ),
    )
    p.add_argument(
        "--train",
        required=True,
        metavar="DATASET",
        help="models the samplers may learn from ('shipped': what a new user gets)",
    )
    p.add_argument(
        "--eval", required=True, metavar="DATASET", dest="eval_set", help="models to search"
    )
    p.add_argument(
        "--samplers",
        default="random,tpe,gp,grid,transfer",
        metavar="NAME,...",
        help=sampler_help("comma-separated; default random,tpe,gp,grid,transfer"),
    )
    p.add_argument(
        "--repeats", type=int, default=10, help="seeds per sampler and model (default 10)"
    )
    p.add_argument(
        "--sampler-repeats",
        default="",
        metavar="NAME=N,...",
        help="fewer seeds for slow samplers, e.g. gp=3",
    )
    p.add_argument("--budget", type=int, default=200, help="evaluations per run (default 200)")
    p.add_argument("--models", default="", help="comma-separated evaluation models (default all)")
    p.add_argument("--json", metavar="FILE", help="write every run as a JSON record")
    p.add_argument("--plot", metavar="PNG", help="write the median regret curves")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .._bench import load_dataset, plot_regret, run_bench, summarize
    from .._errors import UserError
    from ..samplers import SAMPLERS

    samplers = [s.strip() for s in args.samplers.split(",") if s.strip()]
    unknown = [s for s in samplers if s not in SAMPLERS]
    if not samplers or unknown:
        raise UserError(
            f"unknown sampler(s) {', '.join(unknown) or '(none)'} (known: {', '.join(SAMPLERS)})"
        )
    seeds: dict[str, int] = {}
    for part in filter(None, (x.strip() for x in args.sampler_repeats.split(","))):
        name, _, n = part.partition("=")
        if name not in samplers or not n.isdigit() or int(n) < 1:
            raise UserError(f"--sampler-repeats: bad entry {part!r} (NAME=N for a chosen sampler)")
        seeds[name] = int(n)
    train = load_dataset(args.train)
    evaluate = train if args.eval_set == args.train else load_dataset(args.eval_set)
    if args.models:
        wanted = [m.strip() for m in args.models.split(",")]
        missing = [m for m in wanted if m not in {t.name for t in evaluate}]
        if missing:
            raise UserError(f"--models: no table for {', '.join(missing)}")
        evaluate = [t for t in evaluate if t.name in wanted]

    def progress(r) -> None:
        if not args.quiet:
            print(
                f"{r.sampler:>10} {r.model:<28} seed {r.seed:<3} to-optimum {r.evals_to_optimum} "
                f"({r.wall_s:.1f} s)",
                file=sys.stderr,
                flush=True,
            )

    records = run_bench(
        train, evaluate, samplers, args.repeats, args.budget, seeds=seeds, progress=progress
    )
    print(summarize(records), end="")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps([r.to_dict() for r in records]))
    if args.plot:
        plot_regret(records, args.plot, title=f"train {args.train} / eval {args.eval_set}")
    return 0
