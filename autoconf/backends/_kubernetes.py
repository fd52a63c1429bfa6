"""The ``kubernetes`` backend: live measurements of Triton deployments in a cluster."""

from __future__ import annotations

from typing import Any

from .._deployment import LABELS
from .._space import SearchSpace
from ._live import LiveBackend

#: Options given as strings on a command line, and the types the deployer wants.
_NUMERIC = {
    "parallelism": int,
    "load_workers": int,
    "inflight_cap": int,
    "default_memory_mb": int,
    "rollout_timeout_s": float,
    "unschedulable_grace_s": float,
    "load_startup_timeout_s": float,
    "poll_s": float,
    "rate_per_worker": float,
    "request_timeout_s": float,
}


class KubernetesBackend(LiveBackend):
    """Deploys each config as a Triton Deployment + Service in a cluster, measures it with
    in-cluster Locust Jobs and deletes it (the ``kubernetes`` deployer of ``stress``).

    Deployer options: ``kubeconfig``, ``context``, ``namespace``, ``image``, ``model_uri``,
    ``gpu_label``, ``gpu_product_labels`` (``{T4: Tesla-T4, ...}`` or ``T4=Tesla-T4,...``),
    ``parallelism`` (deployments live at once), ``rollout_timeout_s``,
    ``unschedulable_grace_s``, ``load_workers``, ``locust_image``. The study name labels every
    object, so ``autoconf cleanup --study NAME`` finds leftovers.
    """

    name = "kubernetes"
    deployer_name = "kubernetes"
    sizes_memory = True

    def __init__(self, space: SearchSpace, **options: Any) -> None:
        for key, kind in _NUMERIC.items():
            if options.get(key) is not None:
                options[key] = kind(options[key])
        labels = options.get("gpu_product_labels")
        if isinstance(labels, str):
            pairs = (p.split("=", 1) for p in labels.split(",") if "=" in p)
            options["gpu_product_labels"] = {k.strip(): v.strip() for k, v in pairs}
        options["labels"] = LABELS
        super().__init__(space, **options)

    def cleanup(self) -> list[str]:
        """Delete every object left in the cluster by this backend's study."""
        return self.deployer.cleanup(self.study)
