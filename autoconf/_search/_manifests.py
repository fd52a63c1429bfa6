"""Writes the plan's Kubernetes manifests (rendered by ``autoconf._manifests``, checked against the real schemas)."""

from __future__ import annotations

from pathlib import Path

import yaml

from .._plan import Plan
from .._types import Config


def write_manifests(
    out: Path, model_path: Path, config: Config, plan: Plan, kserve: bool = False
) -> tuple[list[Path], str | None]:
    """Render the plan's Kubernetes manifests and check them against the real schemas."""
    import stress

    from .._deployment import deployment_spec
    from .._manifests import render_plan_manifests

    spec = deployment_spec(config, model_path)
    docs = render_plan_manifests(
        spec, kserve=kserve, target_rps=plan.load.target_rps, slo_p99_ms=plan.slo.p99_ms
    )
    stress.validate_manifests(docs)
    mdir = out / "manifests"
    mdir.mkdir(exist_ok=True)
    paths = []
    for i, doc in enumerate(docs):
        kind = str(doc.get("kind", "object")).lower()
        p = mdir / f"{i:02d}-{kind}.yaml"
        p.write_text(yaml.safe_dump(doc, sort_keys=False))
        paths.append(p)
    return paths, None
