"""Writes the plan's Kubernetes manifests (rendered by ``autoconf._manifests``, checked against
the real schemas), for a search and for ``autoconf manifests plan.yaml``.

Manifests that could not start (a model too big for a ConfigMap and no ``--model-uri``) are
not written: the caller is told in one line how to render them.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import yaml

from .._deployment import deployment_spec, model_memory_mb
from .._manifests import ManifestSettings
from .._plan import Plan, served_model_path
from .._types import Config

#: The files a previous render wrote (``00-configmap.yaml``...): removed before a new one, so
#: that ``kubectl apply -f manifests/`` never applies a stale object beside the new ones.
_WRITTEN = "[0-9][0-9]-*.yaml"


def render_hint(plan_path: Path, settings: ManifestSettings) -> str:
    """The command that renders the manifests once the model (the file the plan serves: its
    variant file where it names one) is stored somewhere."""
    args = ["autoconf", "manifests", str(plan_path), "--model-uri", "s3://BUCKET/PATH/model.onnx"]
    if settings.namespace != "default":
        args += ["--namespace", settings.namespace]
    if settings.image:
        args += ["--image", settings.image]
    if settings.kserve:
        args.append("--kserve")
    return shlex.join(args).replace("s3://BUCKET/PATH/model.onnx", "URI")


def write_manifests(
    out: Path,
    model_path: Path,
    config: Config,
    plan: Plan,
    settings: ManifestSettings | None = None,
    profile: Any = None,
    plan_path: Path | None = None,
) -> tuple[list[Path], str | None]:
    """Render the plan's manifests into ``out/manifests`` and check them against the real
    schemas; returns the files written and, when none could be, the one line saying why and
    how to render them. ``model_path`` is the model as exported; a plan with another precision
    serves its variant file instead (``model.variant_file``, beside the plan), under the
    model's name, from a storage URI other than the FP32 model's (``model.uri``). Memory is sized from ``profile`` (the FP32 model's: an over-estimate for a
    variant, never an under-estimate)."""
    import stress

    from .._manifests import render_plan_manifests

    settings = settings or ManifestSettings()
    plan_path = plan_path or out / "plan.yaml"
    mdir = out / "manifests"
    for old in mdir.glob(_WRITTEN) if mdir.is_dir() else []:
        old.unlink()
    served = served_model_path(plan, plan_path, model_path)
    if served is None:
        return [], (
            f"no manifests written: the plan serves the {plan.model.precision} variant of "
            f"{model_path.name} and its file (model.variant_file) is not beside {plan_path.name}"
        )
    if served != model_path and settings.model_uri and settings.model_uri == plan.model.uri:
        hint = render_hint(plan_path, settings)
        return [], (
            f"no manifests written: the plan serves the {plan.model.precision} variant and "
            f"{settings.model_uri} is where the FP32 model is stored (model.uri); store "
            f"{served.name} and run: {hint}"
        )
    spec = deployment_spec(
        config,
        served,
        model_name=Path(model_path).stem,
        memory_mb=model_memory_mb(profile, config),
    )
    missing = settings.missing(spec)
    if missing is not None:
        hint = render_hint(plan_path, settings)
        what = (
            "it" if served == model_path else f"{served.name} (the {plan.model.precision} variant)"
        )
        return [], f"no manifests written: {missing}; store {what} and run: {hint}"
    docs = render_plan_manifests(
        spec,
        image=settings.image,
        namespace=settings.namespace,
        kserve=settings.kserve,
        options=settings.options(),
        target_rps=plan.load.target_rps,
        slo_p99_ms=plan.slo.p99_ms,
    )
    stress.validate_manifests(docs)
    mdir.mkdir(exist_ok=True)
    paths = []
    for i, doc in enumerate(docs):
        kind = str(doc.get("kind", "object")).lower()
        p = mdir / f"{i:02d}-{kind}.yaml"
        p.write_text(yaml.safe_dump(doc, sort_keys=False))
        paths.append(p)
    return paths, None
