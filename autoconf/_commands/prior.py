"""``autoconf prior``: fill the knowledge base and train the prior from it.

``autoconf prior import SOURCE --store KB`` copies tables (a DATASET spec or a directory of
tables) into the knowledge base; ``autoconf prior train --from STORE|DATASET ... --out PRIOR``
writes the prior (safetensors + ``PRIOR.json`` metadata); ``autoconf prior shipped`` lists the
knowledge that ships with the package (``--build DIR`` rebuilds it, for maintainers).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("prior", help="knowledge base import and prior training")
    sub = p.add_subparsers(dest="prior_command", required=True, metavar="ACTION")
    imp = sub.add_parser("import", help="copy tables into a knowledge base")
    imp.add_argument("source", metavar="DATASET", help="falcon:DIR, sim:zoo, or a table directory")
    imp.add_argument("--store", required=True, metavar="KB", help="sqlite:///FILE or a .db path")
    imp.set_defaults(func=run_import)
    tr = sub.add_parser("train", help="train the prior from stores and datasets")
    tr.add_argument(
        "--from",
        dest="sources",
        action="append",
        required=True,
        metavar="STORE|DATASET",
        help="a knowledge base (.db file or sqlite:///FILE) or a DATASET; repeatable",
    )
    tr.add_argument("--space", default=None, help="search space to train for (default: largest)")
    tr.add_argument("--out", required=True, metavar="PRIOR", help="output file (.safetensors)")
    tr.set_defaults(func=run_train)
    sh = sub.add_parser("shipped", help="the knowledge that ships with the package")
    sh.add_argument(
        "--build",
        metavar="DIR",
        help="rebuild the shipped files into DIR (the simulated zoo; minutes without a cache)",
    )
    sh.add_argument("--falcon", metavar="DIR", help="with --build: the Falcon tables to ship")
    sh.set_defaults(func=run_shipped)


def _is_store(source: str) -> bool:
    return source.startswith("sqlite:///") or Path(source).suffix in (".db", ".sqlite")


def _tables(source: str):
    from .._errors import UserError
    from ..prior import KnowledgeBase

    if _is_store(source):
        path = source.removeprefix("sqlite:///")
        if not Path(path).is_file():
            raise UserError(f"knowledge base {path!r} not found")
        with KnowledgeBase(source) as kb:
            return kb.tables()
    from .._bench import load_dataset

    return load_dataset(source)


def run_import(args: argparse.Namespace) -> int:
    from ..prior import KnowledgeBase, import_tables

    tables = _tables(args.source)
    with KnowledgeBase(args.store) as kb:
        n = import_tables(kb, tables)
    print(f"imported {n} measurements of {len(tables)} models into {args.store}")
    return 0


def run_train(args: argparse.Namespace) -> int:
    from .._errors import UserError
    from .._input import out_file
    from ..prior import train_prior

    out_file(args.out, "--out")  # checked before training, not after
    tables = [t for source in args.sources for t in _tables(source)]
    space = None
    if args.space is not None:
        match = [t.space for t in tables if t.space.name == args.space]
        if not match:
            raise UserError(f"--space {args.space!r}: no training table in that space")
        space = match[0]
    prior = train_prior(tables, space)
    path = prior.save(args.out)
    print(
        f"prior for space {prior.space_name!r} ({prior.kind}) from {prior.n_models} models, "
        f"{len(prior.config_keys)} configs -> {path} (+ {path.name}.json)"
    )
    return 0


def run_shipped(args: argparse.Namespace) -> int:
    from .._errors import UserError
    from ..prior._shipped import build_shipped, describe

    if args.build:
        for path in build_shipped(args.build, args.falcon):
            print(f"wrote {path}")
        return 0
    if args.falcon:
        raise UserError("--falcon goes with --build")
    for d in describe():
        state = "used by default" if d["stale"] is None else f"NOT used: {d['stale']}"
        print(
            f"{d['space']}: {len(d['models'])} models x {d['configs']} configs from {d['source']} "
            f"(sim version {d['sim_version']}, kops features {d['feature_version']}, "
            f"{d['bytes'] / 1e6:.1f} MB): {state}"
        )
    return 0
