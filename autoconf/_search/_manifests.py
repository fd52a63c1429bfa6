"""The plan's Kubernetes manifests, rendered by ``stress`` and checked against the real schemas."""

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

    render = getattr(stress, "render_plan_manifests", None)
    if render is None:
        return [], "manifests not written: this stress version has no render_plan_manifests"
    spec = stress.DeploymentSpec(
        model_path=model_path,
        model_name=model_path.stem,
        batch_size=config.batch_size,
        replicas=config.replicas,
        cpu_cores=config.cpu_cores,
        max_queue_delay_ms=config.max_queue_delay_ms
        if config.max_queue_delay_ms is not None
        else 2.0,
        instances_per_gpu=config.instances_per_gpu or 1,
        gpu_type=config.gpu_type,
        labels={"app.kubernetes.io/managed-by": "autoconf"},
    )
    docs = render(spec, kserve=kserve, target_rps=plan.load.target_rps, slo_p99_ms=plan.slo.p99_ms)
    validate = getattr(stress, "validate_manifests", None)
    if validate is not None:
        validate(docs)
    mdir = out / "manifests"
    mdir.mkdir(exist_ok=True)
    paths = []
    for i, doc in enumerate(docs):
        kind = str(doc.get("kind", "object")).lower()
        p = mdir / f"{i:02d}-{kind}.yaml"
        p.write_text(yaml.safe_dump(doc, sort_keys=False))
        paths.append(p)
    return paths, None
