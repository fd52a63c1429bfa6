"""``autoconf manifests plan.yaml [--model-uri URI --namespace NS --image IMAGE --kserve]``:
render a plan's Kubernetes manifests again, without searching again."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .._errors import UserError
from ._plan_args import add_manifest_flags, manifest_settings


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "manifests",
        help="render a plan's Kubernetes manifests (model storage, namespace, image, KServe)",
        description="Render the plan's config as Kubernetes manifests into OUT/manifests/, "
        "checked against the Kubernetes (and KServe) schemas; no search is run.",
    )
    p.add_argument("plan", help="plan.yaml written by autoconf search")
    add_manifest_flags(p, "a KServe InferenceService instead of the Deployment, Service and HPA")
    p.add_argument("--out", metavar="DIR", help="write DIR/manifests/ (default: beside the plan)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .._input import out_dir
    from .._plan import read_plan, resolve_relative
    from .._search._manifests import write_manifests

    plan_path = Path(args.plan)
    plan = read_plan(plan_path)
    settings = manifest_settings(args, default_uri=plan.model.uri)
    out = out_dir(args.out) if args.out else plan_path.resolve().parent
    model = resolve_relative(plan.model.path, plan_path) or Path(plan.model.path)
    paths, note = write_manifests(
        out, model, plan.to_config(), plan, settings, _profile(plan), plan_path
    )
    if note:
        raise UserError(note)
    print(f"wrote {len(paths)} manifests into {out / 'manifests'}")
    return 0


def _profile(plan: Any) -> Any:
    """The model's kops profile as the plan recorded it (param and activation bytes), if any."""
    import kops

    data = plan.provenance.kops_profile
    if not data:
        return None
    try:
        return kops.ModelProfile.from_dict(data)
    except (KeyError, TypeError, ValueError):
        return None
