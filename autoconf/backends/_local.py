"""The ``local`` backend: live measurements of server processes on this machine (no cluster)."""

from __future__ import annotations

from ._live import LiveBackend


class LocalBackend(LiveBackend):
    """Deploys each config as ``replicas`` ONNX Runtime server processes pinned to this machine's
    cores (the ``local`` deployer of ``stress``) and measures it with Locust open-loop load.

    Deployer options: ``ready_timeout_s``, ``generator_processes``, ``inflight_cap``,
    ``request_timeout_s``, ``dims`` (symbolic input dimensions of the requests), ``runtime``
    (``server``, the project's own server, default; ``triton``, Triton Inference Server from
    ``nvidia-pytriton``: ``--backend-option runtime=triton``).
    """

    name = "local"
    deployer_name = "local"
