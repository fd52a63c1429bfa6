"""Local deployments: ``replicas`` model-server processes on this machine.

Each replica is ``python -m stress.server`` on a free port, with ``ceil(cpu_cores)`` intra-op
threads (ONNX Runtime's thread pool not spinning, so an idle worker does not burn the core a
batcher or another replica needs) and pinned to as many cores of its own
(``os.sched_setaffinity``, where the OS allows). :data:`GENERATOR_CORES` cores stay reserved for
the load generator, which is pinned to them: a deployment that needs more cores than the machine
has beside the generator is refused with a :class:`DeployError` (``oversubscribe=True`` wraps
the replicas around the cores instead, and every measurement says so). Every server runs in its own process
group and is stopped on teardown, at interpreter exit, on SIGTERM/SIGINT and, through
``PR_SET_PDEATHSIG`` (set by the server itself), even when the parent dies hard. A server that exits while the load runs
(a crash, an OOM kill) stops the measurement with a :class:`DeployError`.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import logging
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from ._api import Deployer, Deployment, DeploymentSpec, LoadResult
from ._errors import DeployError, StressError
from ._lifetime import remove, scratch
from ._load import DEFAULT_INFLIGHT_CAP, input_signature
from ._load import open_loop as _open_loop
from ._stability import MAX_WINDOWS

logger = logging.getLogger(__name__)

_LIVE: set[LocalDeployment] = set()
_LIVE_LOCK = threading.Lock()
_HANDLERS_INSTALLED = False


def _teardown_all() -> None:
    """Tear down every live deployment (at exit, on SIGTERM); one failure does not stop the
    rest, and each is logged."""
    with _LIVE_LOCK:
        live = list(_LIVE)
    for dep in live:
        try:
            dep.teardown()
        except Exception:
            logger.exception("teardown of local deployment %s failed", dep.spec.model_name)


def _on_sigterm(signum: int, frame: Any) -> None:
    _teardown_all()
    previous = _PREVIOUS.get(signum)
    if callable(previous):
        previous(signum, frame)
    else:
        raise SystemExit(128 + signum)


_PREVIOUS: dict[int, Any] = {}


def _install_handlers() -> None:
    """atexit + SIGTERM/SIGHUP handlers that stop every live server (SIGINT already raises
    KeyboardInterrupt, which unwinds through the deployments' context managers)."""
    global _HANDLERS_INSTALLED
    if _HANDLERS_INSTALLED:
        return
    _HANDLERS_INSTALLED = True
    atexit.register(_teardown_all)
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGHUP):
            with contextlib.suppress(ValueError, OSError):
                _PREVIOUS[sig] = signal.getsignal(sig)
                signal.signal(sig, _on_sigterm)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


#: What can serve a local replica: the project's own server (the default) or Triton.
RUNTIMES = ("server", "triton")

#: Cores kept for the load generator on a local deployment (the servers never run there).
GENERATOR_CORES = 1


def core_sets(
    replicas: int,
    cpu_cores: float,
    reserve: int = GENERATOR_CORES,
    oversubscribe: bool = False,
    allowed: list[int] | None = None,
) -> tuple[list[list[int]], list[int]]:
    """The cores each replica is pinned to, and the cores left to the load generator.

    Replicas take consecutive blocks of ``ceil(cpu_cores)`` cores after the ``reserve`` cores
    kept for the generator. Too few cores raise :class:`DeployError` (one line) unless
    ``oversubscribe``: then the replicas wrap around all the cores, the generator's included.
    """
    if allowed is None:
        allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    per = max(1, math.ceil(cpu_cores))
    if not allowed:
        return [[] for _ in range(replicas)], []
    need = replicas * per
    if need + reserve <= len(allowed):
        gen, free = allowed[:reserve], allowed[reserve:]
        return [sorted(free[r * per : (r + 1) * per]) for r in range(replicas)], gen
    if not oversubscribe:
        raise DeployError(
            f"{replicas} replica(s) x {per} core(s) and {reserve} core(s) for the load generator "
            f"need {need + reserve} cores; this machine offers {len(allowed)} (pass "
            "oversubscribe=True to share cores, measurements then marked unstable)"
        )
    sets = [
        sorted({allowed[(r * per + j) % len(allowed)] for j in range(per)}) for r in range(replicas)
    ]
    used = {c for cs in sets for c in cs}
    return sets, [c for c in allowed if c not in used] or allowed


@functools.lru_cache(maxsize=1)
def local_gpus() -> list[str]:
    """The names of this machine's NVIDIA GPUs that ONNX Runtime can use (CUDA provider and
    ``nvidia-smi`` both present); empty otherwise."""
    import shutil

    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers() or not shutil.which(
        "nvidia-smi"
    ):
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        logger.warning("nvidia-smi failed (%s): no local GPU assumed", exc)
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def _gpu_matches(gpu_type: str, names: list[str]) -> bool:
    """A catalog GPU type (``T4``, ``A100-40GB``) names one of ``names`` (``Tesla T4``,
    ``NVIDIA A100-SXM4-40GB``): its first part is a word of the name (``L4`` is not ``L40S``)."""
    key = gpu_type.lower().split("-")[0]
    return any(key in n.lower().replace("-", " ").split() for n in names)


class LocalDeployment(Deployment):
    """Running server processes for one spec; tear down with :meth:`teardown` (or ``with``)."""

    def __init__(self, spec: DeploymentSpec, deployer: LocalDeployer) -> None:
        super().__init__(spec)
        self.deployer = deployer
        self.procs: list[subprocess.Popen] = []
        self.ports: list[int] = []
        self.cores: list[list[int]] = []
        self.generator_cores: list[int] = []
        self.oversubscribed = False
        self.pinned = False
        self._logs: list[Path] = []
        self._tmp = scratch("stress-local-")
        self._down = False
        self.signature = input_signature(spec.model_path)

    @property
    def endpoints(self) -> list[str]:
        host = self.deployer.host
        return [f"http://{host}:{p}/v2/models/{self.spec.model_name}/infer" for p in self.ports]

    def start(self) -> None:
        spec = self.spec
        self.cores, self.generator_cores = core_sets(
            spec.replicas, spec.cpu_cores, oversubscribe=self.deployer.oversubscribe
        )
        used = [c for cs in self.cores for c in cs]
        self.oversubscribed = len(set(used)) < len(used) or bool(
            set(used) & set(self.generator_cores)
        )
        threads = max(1, math.ceil(spec.cpu_cores))
        device = "cuda" if spec.uses_gpu else "cpu"
        ports = list(self.deployer.ports or [])
        for i in range(spec.replicas):
            port = ports[i] if i < len(ports) else free_port(self.deployer.host)
            log = self._tmp / f"replica-{i}.log"
            if self.deployer.runtime == "triton":
                cmd, env = self._triton_command(i, port, device)
            else:
                cmd, env = self._server_command(port, threads, device)
            with open(log, "wb") as fh:
                proc = subprocess.Popen(
                    cmd,
                    stdout=fh,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,  # its own process group, killed as a whole
                    env=env,
                )
            self.procs.append(proc)
            self.ports.append(port)
            self._logs.append(log)
            if self.cores[i]:
                try:
                    os.sched_setaffinity(proc.pid, self.cores[i])
                    self.pinned = True
                except OSError:
                    pass
        self.wait_ready(self.deployer.ready_timeout_s)

    def _server_command(self, port: int, threads: int, device: str) -> tuple[list[str], dict]:
        """The project's own server (:mod:`stress._server`) for one replica, and its environment."""
        spec = self.spec
        cmd = [
            sys.executable, "-m", "stress.server", str(spec.model_path),
            "--port", str(port), "--host", self.deployer.host,
            "--name", spec.model_name,
            "--max-batch-size", str(spec.batch_size),
            "--max-queue-delay-ms", str(spec.max_queue_delay_ms),
            "--threads", str(threads), "--device", device,
            "--parent-pid", str(os.getpid()),
        ]  # fmt: skip
        if spec.memory_mb:
            cmd += ["--memory-mb", str(int(spec.memory_mb))]
        return cmd, dict(os.environ, OMP_NUM_THREADS=str(threads))

    def _triton_command(self, i: int, port: int, device: str) -> tuple[list[str], dict]:
        """Triton Inference Server (:mod:`stress._triton`) for replica ``i``, and its environment."""
        from . import _triton

        cmd = _triton.replica_command(
            self.spec, port, self.deployer.host, device, os.getpid(), self._tmp / f"triton-{i}"
        )
        threads = _triton.triton_model_settings(self.spec).intra_op_threads
        return cmd, _triton.triton_env(dict(os.environ, OMP_NUM_THREADS=str(threads)))

    def _last_log_line(self, i: int) -> str:
        try:
            lines = [
                ln for ln in self._logs[i].read_text(errors="replace").splitlines() if ln.strip()
            ]
        except OSError:
            return ""
        return lines[-1].strip() if lines else ""

    def wait_ready(self, timeout_s: float) -> None:
        """Poll every replica's readiness until all answer 200: ``/v2/health/ready`` on the own
        server; the model's ``/v2/models/{name}/ready`` on Triton, whose server is ready (no model
        loaded yet) before pytriton loads the model."""
        path = "/v2/health/ready"
        if self.deployer.runtime == "triton":
            path = f"/v2/models/{self.spec.model_name}/ready"
        deadline = time.monotonic() + timeout_s
        pending = set(range(len(self.procs)))
        while pending:
            for i in sorted(pending):
                self._check_replica(i, "before it was ready")
                url = f"http://{self.deployer.host}:{self.ports[i]}{path}"
                try:
                    with urllib.request.urlopen(url, timeout=1.0) as resp:
                        if resp.status == 200:
                            pending.discard(i)
                except (urllib.error.URLError, OSError):
                    pass
            if pending and time.monotonic() > deadline:
                raise DeployError(
                    f"replica(s) {sorted(pending)} not ready after {timeout_s:g} s "
                    f"({self._last_log_line(min(pending)) or 'no output'})"
                )
            if pending:
                time.sleep(0.05)

    def _check_replica(self, i: int, when: str) -> None:
        rc = self.procs[i].poll()
        if rc is None:
            return
        how = f"exit code {rc}"
        if rc < 0:
            name = signal.Signals(-rc).name
            how = f"killed by {name}" + (" (out of memory?)" if rc == -signal.SIGKILL else "")
        last = self._last_log_line(i)
        raise DeployError(
            f"replica {i} (pid {self.procs[i].pid}) died {when}: {how}"
            + (f": {last}" if last else "")
        )

    def check_alive(self) -> None:
        """Raise :class:`DeployError` if any server process has exited."""
        for i in range(len(self.procs)):
            self._check_replica(i, "under test")

    def open_loop(
        self,
        rate_rps: float,
        duration_s: float,
        warmup_s: float = 1.0,
        abort_p99_ms: float | None = None,
    ) -> LoadResult:
        if self._down:
            raise StressError("deployment already torn down")
        self.check_alive()
        result = _open_loop(
            self.endpoints,
            self.signature,
            rate_rps,
            duration_s,
            warmup_s,
            abort_p99_ms,
            inflight_cap=self.deployer.inflight_cap,
            timeout_s=self.deployer.request_timeout_s,
            processes=self.deployer.generator_processes,
            dims=self.deployer.dims,
            check_alive=self.check_alive,
            cpu_affinity=self.generator_cores if self.pinned else None,
            server_pids=[p.pid for p in self.procs],
            server_cores=sorted({c for cs in self.cores for c in cs}) if self.pinned else None,
            max_windows=self.deployer.max_windows,
        )
        if self.oversubscribed:
            result.stable = False
            result.extra["oversubscribed"] = True
            result.unstable_reasons.append(
                "oversubscribed: replicas and the load generator share cores"
            )
        result.extra.update(
            runtime=self.deployer.runtime,
            replicas=len(self.procs),
            pinned=self.pinned,
            cores=self.cores,
            generator_cores=self.generator_cores,
        )
        return result

    def teardown(self) -> None:
        """SIGTERM every server's process group, SIGKILL what is left after a grace period
        (Triton's ``tritonserver`` and stub may outlive the group's leader: the group is killed
        whatever the leader did)."""
        if self._down:
            return
        self._down = True
        for p in self.procs:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + 5.0
        for p in self.procs:
            try:
                p.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait()
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(p.pid, signal.SIGKILL)  # members that outlived the leader
        remove(self._tmp)
        with _LIVE_LOCK:
            _LIVE.discard(self)

    def __hash__(self) -> int:
        return id(self)

    def __eq__(self, other: object) -> bool:
        return self is other


class LocalDeployer(Deployer):
    """Deploys specs as server processes on this machine (the embedded default backend).

    ``ready_timeout_s`` bounds the start-up; ``ports`` fixes the replicas' ports (free ports by
    default); ``generator_processes`` forces the number of Locust processes (by rate otherwise);
    ``dims`` sets symbolic input dimensions (e.g. ``{"sequence": 128}``) of the requests;
    ``oversubscribe`` lets a deployment share cores (with the generator, between replicas) on a
    machine too small for it instead of refusing it; ``max_windows`` bounds the windows a
    measurement adds while unstable (:mod:`stress._stability`); ``runtime`` picks what serves
    each replica: ``"server"`` (default), the project's own server (:mod:`stress._server`), or
    ``"triton"``, Triton Inference Server from ``nvidia-pytriton`` (:mod:`stress._triton`).
    """

    name = "local"

    def __init__(
        self,
        ready_timeout_s: float = 60.0,
        host: str = "127.0.0.1",
        ports: list[int] | None = None,
        generator_processes: int | None = None,
        inflight_cap: int = DEFAULT_INFLIGHT_CAP,
        request_timeout_s: float = 30.0,
        dims: dict[str, int] | None = None,
        oversubscribe: bool = False,
        max_windows: int = MAX_WINDOWS,
        runtime: str = "server",
    ) -> None:
        if runtime not in RUNTIMES:
            raise StressError(f"unknown local runtime {runtime!r} (known: {', '.join(RUNTIMES)})")
        self.runtime = runtime
        self.ready_timeout_s = float(ready_timeout_s)
        self.host = host
        self.ports = ports
        self.generator_processes = generator_processes
        self.inflight_cap = int(inflight_cap)
        self.request_timeout_s = float(request_timeout_s)
        self.dims = dims
        self.oversubscribe = bool(oversubscribe)
        self.max_windows = int(max_windows)

    def deploy(self, spec: DeploymentSpec) -> LocalDeployment:
        if not Path(spec.model_path).is_file():
            raise StressError(f"no such model file: {spec.model_path}")
        if spec.replicas < 1 or spec.batch_size < 1 or spec.cpu_cores <= 0:
            raise StressError("replicas and batch_size must be >= 1 and cpu_cores > 0")
        if self.runtime == "triton":
            from ._triton import unavailable_reason

            reason = unavailable_reason()
            if reason:
                raise DeployError(reason)
        _install_handlers()
        dep = LocalDeployment(spec, self)
        with _LIVE_LOCK:
            _LIVE.add(dep)
        try:
            dep.start()
        except BaseException:
            dep.teardown()
            raise
        return dep

    def refusal(self, spec: DeploymentSpec) -> str | None:
        """Too few cores beside the load generator's (unless ``oversubscribe``), or a GPU type
        this machine does not have."""
        try:
            core_sets(spec.replicas, spec.cpu_cores, oversubscribe=self.oversubscribe)
        except DeployError as exc:
            return str(exc)
        if spec.uses_gpu:
            names = local_gpus()
            if not _gpu_matches(str(spec.gpu_type), names):
                have = ", ".join(names) or "none usable by ONNX Runtime"
                return f"GPU type {spec.gpu_type} is not on this machine (GPUs: {have})"
        return None

    def cleanup(self, study: str | None = None) -> list[str]:
        """Stop this deployer's deployments still running in this process (of ``study``).

        Servers of a process that died are gone already: they die with their parent.
        """
        with _LIVE_LOCK:
            mine = [
                d
                for d in _LIVE
                if d.deployer is self and (study is None or d.spec.labels.get("study") == study)
            ]
        removed = []
        for dep in mine:
            dep.teardown()
            removed.append(f"{dep.spec.model_name}: {len(dep.procs)} server process(es)")
        return removed
