"""A small model server: one ONNX model, ONNX Runtime, dynamic batching, Open Inference Protocol v2.

What a local deployment runs per replica (``python -m stress.server MODEL.onnx --port P``).
It speaks the subset of the KServe v2 / Triton HTTP protocol the load generator uses:

- ``GET  /v2/health/live``  200 once the process serves HTTP;
- ``GET  /v2/health/ready`` 200 once the model is loaded and one warm-up inference ran;
- ``GET  /v2/models/{name}`` model metadata (inputs, outputs, platform);
- ``POST /v2/models/{name}/infer`` JSON tensors in, JSON tensors out.

Requests are batched like Triton's dynamic batcher: the first queued request opens a batch that
closes when ``max_batch_size`` rows are collected or ``max_queue_delay_ms`` has passed, whichever
comes first. One inference runs at a time, with ``threads`` intra-op threads; the CUDA execution
provider is used when ONNX Runtime offers it (unless ``--device cpu``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from aiohttp import web

from ._lifetime import bind_to_parent


def _json_codec() -> tuple[Callable[[bytes], Any], Callable[[Any], bytes]]:
    """``(loads, dumps)`` for the v2 protocol's flat float lists: orjson when installed (~5x
    faster), else the standard library's json."""
    try:
        import orjson
    except ImportError:  # pragma: no cover - depends on the environment
        return json.loads, lambda obj: json.dumps(obj, default=lambda a: a.tolist()).encode()
    return orjson.loads, lambda obj: orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY)


_loads, _dumps = _json_codec()

#: v2 datatype names <-> numpy dtypes.
V2_TO_NUMPY = {
    "BOOL": "bool",
    "UINT8": "uint8",
    "INT8": "int8",
    "INT16": "int16",
    "INT32": "int32",
    "INT64": "int64",
    "FP16": "float16",
    "FP32": "float32",
    "FP64": "float64",
}
NUMPY_TO_V2 = {v: k for k, v in V2_TO_NUMPY.items()}
_ORT_TO_NUMPY = {
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(float16)": "float16",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(int16)": "int16",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(bool)": "bool",
}


def make_session(model_path: str, threads: int = 1, device: str = "auto"):
    """An ONNX Runtime session as every local runtime runs it: ``threads`` intra-op threads that
    do not spin, sequential execution, the CUDA provider when asked for (or offered, ``auto``)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, int(threads))
    opts.inter_op_num_threads = 1
    # ONNX Runtime's pool threads spin after each op by default: on a replica's own cores
    # that burns the CPU its batcher and HTTP loop need, and with shared cores the other
    # replicas'. Off: the threads sleep when there is no work.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    available = ort.get_available_providers()
    providers = ["CPUExecutionProvider"]
    if device in ("auto", "cuda") and "CUDAExecutionProvider" in available:
        providers.insert(0, "CUDAExecutionProvider")
    elif device == "cuda":
        raise SystemExit("stress.server: --device cuda but ONNX Runtime has no CUDA provider")
    return ort.InferenceSession(model_path, opts, providers=providers)


class BadRequest(Exception):
    """A request the server answers with HTTP 400."""


@dataclass
class _Pending:
    inputs: dict[str, np.ndarray]
    rows: int
    future: asyncio.Future
    arrived: float = field(default_factory=time.perf_counter)

    def key(self) -> tuple:
        """Requests batch together only when their non-batch dimensions agree."""
        return tuple((n, a.shape[1:], a.dtype.str) for n, a in sorted(self.inputs.items()))


class ModelServer:
    """The ONNX Runtime session, the dynamic batcher and the HTTP routes."""

    def __init__(
        self,
        model_path: str,
        name: str = "model",
        max_batch_size: int = 1,
        max_queue_delay_ms: float = 2.0,
        threads: int = 1,
        device: str = "auto",
    ) -> None:
        self.name = name
        self.max_batch_size = max(1, int(max_batch_size))
        self.max_queue_delay_s = max(0.0, float(max_queue_delay_ms)) / 1000.0
        self.session = make_session(model_path, threads, device)
        self.providers = self.session.get_providers()
        self.inputs = self.session.get_inputs()
        self.outputs = self.session.get_outputs()
        # A model whose batch dimension is a fixed 1 cannot be batched.
        self.batchable = all(
            len(i.shape) > 0 and not (isinstance(i.shape[0], int) and i.shape[0] == 1)
            for i in self.inputs
        )
        self.ready = False
        self.batches = 0
        self.batched_rows = 0
        self._queue: asyncio.Queue[_Pending] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ort")

    # -- inference -----------------------------------------------------------------------------

    def warm_up(self) -> None:
        """Run one inference on zeros so the first real request pays no lazy initialisation."""
        feed = {}
        for i in self.inputs:
            shape = [d if isinstance(d, int) and d > 0 else 1 for d in i.shape]
            feed[i.name] = np.zeros(shape, dtype=_ORT_TO_NUMPY.get(i.type, "float32"))
        self.session.run(None, feed)

    def _run(self, batch: list[_Pending]) -> list[list[np.ndarray]]:
        feed = {
            i.name: np.concatenate([p.inputs[i.name] for p in batch], axis=0)
            if len(batch) > 1
            else batch[0].inputs[i.name]
            for i in self.inputs
        }
        outs = self.session.run(None, feed)
        self.batches += 1
        self.batched_rows += sum(p.rows for p in batch)
        if len(batch) == 1:
            return [outs]
        split, start = [], 0
        for p in batch:
            split.append([o[start : start + p.rows] for o in outs])
            start += p.rows
        return split

    async def _batcher(self) -> None:
        loop = asyncio.get_running_loop()
        queue = self._queue
        assert queue is not None
        carry: _Pending | None = None
        while True:
            first = carry or await queue.get()
            carry = None
            batch, rows = [first], first.rows
            if self.batchable:
                deadline = first.arrived + self.max_queue_delay_s
                key = first.key()
                while rows < self.max_batch_size:
                    try:
                        nxt = queue.get_nowait()
                    except asyncio.QueueEmpty:
                        wait = deadline - time.perf_counter()
                        if wait <= 0:
                            break
                        try:
                            nxt = await asyncio.wait_for(queue.get(), wait)
                        except asyncio.TimeoutError:
                            break
                    if nxt.key() != key or rows + nxt.rows > self.max_batch_size:
                        carry = nxt  # opens the next batch
                        break
                    batch.append(nxt)
                    rows += nxt.rows
            try:
                results = await loop.run_in_executor(self._executor, self._run, batch)
            except Exception as exc:  # an inference error fails the batch, not the server
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(exc)
                continue
            for p, res in zip(batch, results):
                if not p.future.done():
                    p.future.set_result(res)

    # -- protocol ------------------------------------------------------------------------------

    def _decode(self, body: bytes) -> tuple[dict[str, np.ndarray], int]:
        try:
            req = _loads(body)
            tensors = req["inputs"]
        except Exception:
            raise BadRequest("body must be JSON with an 'inputs' list") from None
        by_name = {t.get("name"): t for t in tensors if isinstance(t, dict)}
        inputs: dict[str, np.ndarray] = {}
        rows = None
        for spec in self.inputs:
            t = by_name.get(spec.name)
            if t is None:
                raise BadRequest(f"missing input {spec.name!r}")
            dtype = V2_TO_NUMPY.get(t.get("datatype", ""))
            if dtype is None:
                raise BadRequest(f"input {spec.name!r}: unknown datatype {t.get('datatype')!r}")
            want = _ORT_TO_NUMPY.get(spec.type, dtype)
            try:
                arr = np.asarray(t["data"], dtype=want).reshape(t["shape"])
            except Exception:
                raise BadRequest(f"input {spec.name!r}: data does not match shape") from None
            if arr.ndim != len(spec.shape):
                raise BadRequest(f"input {spec.name!r}: expected rank {len(spec.shape)}")
            inputs[spec.name] = arr
            n = arr.shape[0] if arr.ndim else 1
            if rows is not None and n != rows:
                raise BadRequest("inputs disagree on the batch dimension")
            rows = n
        return inputs, rows or 1

    async def infer(self, request: web.Request) -> web.Response:
        if request.match_info["name"] != self.name:
            return _error(404, f"unknown model {request.match_info['name']!r}")
        if not self.ready:
            return _error(503, "model not ready")
        try:
            inputs, rows = self._decode(await request.read())
        except BadRequest as exc:
            return _error(400, str(exc))
        if self.batchable and rows > self.max_batch_size:
            return _error(400, f"batch of {rows} rows exceeds max_batch_size {self.max_batch_size}")
        fut = asyncio.get_running_loop().create_future()
        assert self._queue is not None
        self._queue.put_nowait(_Pending(inputs, rows, fut))
        try:
            outs = await fut
        except Exception as exc:
            return _error(500, f"inference failed: {exc}")
        body = {
            "model_name": self.name,
            "outputs": [
                {
                    "name": o.name,
                    "shape": list(a.shape),
                    "datatype": NUMPY_TO_V2.get(a.dtype.name, "BYTES"),
                    "data": a.reshape(-1),
                }
                for o, a in zip(self.outputs, outs)
            ],
        }
        return web.Response(body=_dumps(body), content_type="application/json")

    async def metadata(self, request: web.Request) -> web.Response:
        if request.match_info["name"] != self.name:
            return _error(404, f"unknown model {request.match_info['name']!r}")

        def tensor(t) -> dict:
            dtype = _ORT_TO_NUMPY.get(t.type, "float32")
            shape = [d if isinstance(d, int) else -1 for d in t.shape]
            return {"name": t.name, "datatype": NUMPY_TO_V2.get(dtype, "BYTES"), "shape": shape}

        body = {
            "name": self.name,
            "versions": ["1"],
            "platform": "onnxruntime_onnx",
            "inputs": [tensor(t) for t in self.inputs],
            "outputs": [tensor(t) for t in self.outputs],
            "parameters": {
                "max_batch_size": self.max_batch_size,
                "max_queue_delay_ms": self.max_queue_delay_s * 1000.0,
                "providers": self.providers,
                "batches": self.batches,
                "batched_rows": self.batched_rows,
            },
        }
        return web.json_response(body)

    async def live(self, request: web.Request) -> web.Response:
        return web.Response(status=200)

    async def ready_route(self, request: web.Request) -> web.Response:
        return web.Response(status=200 if self.ready else 503)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_get("/v2/health/live", self.live)
        app.router.add_get("/v2/health/ready", self.ready_route)
        app.router.add_get("/v2/models/{name}", self.metadata)
        app.router.add_get("/v2/models/{name}/ready", self.ready_route)
        app.router.add_post("/v2/models/{name}/infer", self.infer)
        return app

    async def serve(self, host: str, port: int) -> None:
        """Bind, start batching, warm up, then report ready; runs until cancelled."""
        sock = bind_socket(host, port)
        self._queue = asyncio.Queue()
        # Torn down after a test, a server has nothing to drain: don't wait aiohttp's default 60 s
        # for connections a killed load generator left half-open.
        runner = web.AppRunner(
            self.app(), access_log=None, handle_signals=False, shutdown_timeout=1.0
        )
        await runner.setup()
        site = web.SockSite(runner, sock)
        await site.start()
        batcher = asyncio.create_task(self._batcher())
        await asyncio.get_running_loop().run_in_executor(self._executor, self.warm_up)
        self.ready = True
        print(f"stress.server: ready on {host}:{port} providers={self.providers}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def on_signal() -> None:
            if stop.is_set():  # a second signal: no more patience
                os._exit(1)
            stop.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal)
        try:
            await stop.wait()
        finally:
            batcher.cancel()
            await runner.cleanup()
            self._executor.shutdown(wait=False, cancel_futures=True)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket with TCP_NODELAY (accepted sockets inherit it on Linux), so small
    JSON responses are not held back by Nagle's algorithm."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise SystemExit(f"stress.server: cannot bind {host}:{port}: {exc.strerror}") from None
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m stress.server", description=__doc__.split("\n")[0])
    p.add_argument("model", help="path to the ONNX model")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--name", default="model", help="model name in the v2 URLs")
    p.add_argument("--max-batch-size", type=int, default=1)
    p.add_argument("--max-queue-delay-ms", type=float, default=2.0)
    p.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--parent-pid", type=int, help="exit when this process (the deployer) dies")
    p.add_argument("--memory-mb", type=int, help="address-space limit (a coarse memory limit)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.parent_pid:
        bind_to_parent(args.parent_pid)
    if args.memory_mb:
        import resource

        limit = args.memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    if not os.path.isfile(args.model):
        print(f"stress.server: no such model file: {args.model}", file=sys.stderr)
        return 2
    try:
        server = ModelServer(
            args.model,
            name=args.name,
            max_batch_size=args.max_batch_size,
            max_queue_delay_ms=args.max_queue_delay_ms,
            threads=args.threads,
            device=args.device,
        )
    except Exception as exc:  # a model ORT cannot load: one line, non-zero exit
        print(f"stress.server: cannot load {args.model}: {exc}".splitlines()[0], file=sys.stderr)
        return 2
    asyncio.run(server.serve(args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
