"""Flags shared by the commands that profile a model or render its manifests: ``--dim`` (on
``search``, ``stress``, ``validate``, ``kops``) and ``--model-uri``, ``--namespace``,
``--image``, ``--kserve`` (on ``search`` and ``manifests``)."""

from __future__ import annotations

import argparse
from typing import Any

from .. import _input


def add_dim_flag(p: argparse.ArgumentParser, default_note: str) -> None:
    p.add_argument(
        "--dim",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help=f"value of one of the model's symbolic input dims (repeatable), e.g. --dim "
        f"height=224; an unknown name is an error; {default_note}",
    )


def dims(args: argparse.Namespace) -> dict[str, int]:
    from .._dims import parse_dims

    return parse_dims(args.dim)


def add_manifest_flags(p: argparse.ArgumentParser, kserve_help: str) -> None:
    p.add_argument(
        "--model-uri",
        metavar="URI",
        help="where the pods get the model: s3://, gs://, https:// or pvc://CLAIM/PATH (a "
        "file, or a folder with model.onnx); needed above ~900 KiB (no ConfigMap holds it)",
    )
    p.add_argument(
        "--namespace", default="default", help="namespace of the manifests (default default)"
    )
    p.add_argument(
        "--image", metavar="IMAGE:TAG", help="Triton image and tag (default the tested one)"
    )
    p.add_argument("--kserve", action="store_true", help=kserve_help)


def manifest_settings(args: argparse.Namespace, default_uri: str | None = None) -> Any:
    """The checked :class:`autoconf._manifests.ManifestSettings` of the flags."""
    from .._manifests import ManifestSettings

    return ManifestSettings(
        model_uri=_input.model_uri(args.model_uri) or default_uri,
        namespace=_input.namespace(args.namespace),
        image=_input.image(args.image),
        kserve=bool(args.kserve),
    )
