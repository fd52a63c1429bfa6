"""The local ``triton`` runtime: each replica is NVIDIA's Triton Inference Server.

What the manifests deploy is Triton; this runtime measures Triton on this machine too. The
``nvidia-pytriton`` wheel (``pip install 'autoconf[triton]'``) carries the real ``tritonserver``
binary and its Python backend, but no ONNX Runtime backend: ONNX Runtime runs inside the served
callable (pytriton's ``@batch``), in the replica's Python process, one session per model
instance. Triton's dynamic batcher (max batch size, max queue delay) and instance group (count)
come from :func:`stress._manifests.triton_model_settings`, the values the manifests'
``config.pbtxt`` holds; ONNX Runtime gets its intra-op threads from there too, with spinning off.

A replica is ``python -m stress._triton MODEL --port P ...`` in its own process group (the
deployer's), which starts ``tritonserver``, which starts the Python backend's stub: tearing down
means killing the whole group. Two facts of these machines (``docs``: field notes):

- the stub links ``libpython3.11.so``; without ``LD_LIBRARY_PATH`` holding the running
  interpreter's own ``LIBDIR`` it loads Debian's copy and fails with ``'_thread.RLock' object
  has no attribute '_recursion_count'`` (:func:`triton_env`);
- SIGTERM to the Python process leaves ``tritonserver`` in a graceful-shutdown countdown
  (``exit_timeout_secs``, 30 s by default): it is set to 1 s here, and the deployer kills the
  group after its grace period.

Served over Triton's own KServe v2 HTTP/JSON endpoint (``/v2/models/{name}/infer``), the one
the load generator posts to; readiness is Triton's ``/v2/health/ready``.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import signal
import socket
import sys
import sysconfig
from pathlib import Path
from typing import Any

from ._api import DeploymentSpec
from ._manifests import triton_model_settings

logger = logging.getLogger(__name__)

#: Seconds Triton waits for in-flight requests when told to stop (its default is 30).
EXIT_TIMEOUT_S = 1


def unavailable_reason() -> str | None:
    """Why this machine cannot run the ``triton`` runtime (one line), or ``None`` if it can."""
    if importlib.util.find_spec("pytriton") is None:
        return "the triton runtime needs nvidia-pytriton (pip install 'autoconf[triton]')"
    import pytriton

    server = Path(pytriton.__file__).parent / "tritonserver" / "bin" / "tritonserver"
    if not server.is_file():
        return f"nvidia-pytriton has no tritonserver binary at {server}"
    if not sys.platform.startswith("linux"):
        return f"the triton runtime runs on Linux only, not {sys.platform}"
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    lib = sysconfig.get_config_var("LDLIBRARY") or ""
    if not lib.endswith(".so") or not (Path(libdir) / lib).is_file():
        return (
            f"Triton's Python backend stub needs a shared libpython; {sys.executable} has "
            f"{lib or 'none'} in {libdir or '?'}"
        )
    return None


def triton_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """``base`` (the environment) with the running interpreter's ``LIBDIR`` first on
    ``LD_LIBRARY_PATH``, so Triton's stub loads this interpreter's libpython, not the system's."""
    env = dict(os.environ if base is None else base)
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    paths = [p for p in env.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p and p != libdir]
    env["LD_LIBRARY_PATH"] = os.pathsep.join([libdir, *paths])
    return env


def replica_command(
    spec: DeploymentSpec, port: int, host: str, device: str, parent_pid: int, workspace: Path
) -> list[str]:
    """The command line of one Triton replica of ``spec`` serving HTTP on ``host:port``."""
    s = triton_model_settings(spec)
    return [
        sys.executable, "-m", "stress._triton", str(spec.model_path),
        "--port", str(port), "--host", host,
        "--name", spec.model_name,
        "--max-batch-size", str(s.max_batch_size),
        "--max-queue-delay-us", str(s.max_queue_delay_us),
        "--instances", str(s.instance_count),
        "--threads", str(s.intra_op_threads),
        "--device", device,
        "--workspace", str(workspace),
        "--parent-pid", str(parent_pid),
    ]  # fmt: skip


# -- the replica process -------------------------------------------------------------------------


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _tensor_specs(args_list: list[Any]) -> list[Any]:
    """pytriton tensor specs of ONNX Runtime inputs/outputs, without the batch dimension."""
    import numpy as np
    from pytriton.model_config import Tensor

    from ._server import _ORT_TO_NUMPY

    return [
        Tensor(
            name=t.name,
            dtype=np.dtype(_ORT_TO_NUMPY.get(t.type, "float32")).type,
            shape=tuple(d if isinstance(d, int) and d > 0 else -1 for d in t.shape[1:]),
        )
        for t in args_list
    ]


def _infer_func(session: Any):
    """A ``@batch`` callable running ``session`` on the batch Triton's batcher formed."""
    import numpy as np
    from pytriton.decorators import batch

    from ._server import _ORT_TO_NUMPY

    dtypes = {i.name: _ORT_TO_NUMPY.get(i.type, "float32") for i in session.get_inputs()}
    names = [o.name for o in session.get_outputs()]

    @batch
    def infer(**inputs: Any) -> dict[str, Any]:
        feed = {k: np.asarray(v, dtype=dtypes[k]) for k, v in inputs.items() if k in dtypes}
        return dict(zip(names, session.run(None, feed)))

    return infer


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m stress._triton", description="One Triton replica of an ONNX model."
    )
    p.add_argument("model", help="path to the ONNX model")
    p.add_argument("--port", type=int, required=True, help="Triton's HTTP port")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--name", default="model")
    p.add_argument("--max-batch-size", type=int, default=1)
    p.add_argument("--max-queue-delay-us", type=int, default=2000)
    p.add_argument("--instances", type=int, default=1, help="model instances (instance group)")
    p.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads each")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu")
    p.add_argument("--workspace", required=True, help="pytriton's folder (model store, sockets)")
    p.add_argument("--parent-pid", type=int, help="exit when this process (the deployer) dies")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ._lifetime import bind_to_parent
    from ._server import make_session

    if args.parent_pid:
        bind_to_parent(args.parent_pid)
    reason = unavailable_reason()
    if reason:
        print(f"stress._triton: {reason}", file=sys.stderr)
        return 2
    from pytriton.model_config import DynamicBatcher, ModelConfig
    from pytriton.triton import Triton, TritonConfig

    try:
        sessions = [
            make_session(args.model, args.threads, args.device) for _ in range(args.instances)
        ]
    except Exception as exc:  # a model ONNX Runtime cannot load: one line, non-zero exit
        print(f"stress._triton: cannot load {args.model}: {exc}".splitlines()[0], file=sys.stderr)
        return 2
    config = TritonConfig(
        http_address=args.host,
        http_port=args.port,
        grpc_address=args.host,
        grpc_port=_free_port(args.host),
        allow_metrics=False,
        exit_timeout_secs=EXIT_TIMEOUT_S,
        log_verbose=0,
    )
    # SIGTERM (the deployer's teardown) stops like Ctrl-C: Triton.serve() stops the server.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with Triton(config=config, workspace=args.workspace) as triton:
        triton.bind(
            model_name=args.name,
            infer_func=[_infer_func(s) for s in sessions],  # one per instance of the group
            inputs=_tensor_specs(sessions[0].get_inputs()),
            outputs=_tensor_specs(sessions[0].get_outputs()),
            config=ModelConfig(
                max_batch_size=args.max_batch_size,
                batcher=DynamicBatcher(max_queue_delay_microseconds=args.max_queue_delay_us),
            ),
            strict=True,
        )
        print(
            f"stress._triton: serving {args.name} on {args.host}:{args.port} "
            f"({args.instances} instance(s), {args.threads} thread(s) each)",
            flush=True,
        )
        triton.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
