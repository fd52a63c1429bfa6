"""Open-loop load from the caller's side: start Locust generator processes, merge what they saw.

Locust never loads in this process (it gevent-patches whatever imports it): each generator is
``python -m stress._locustfile CONFIG.json``, a Poisson arrival process at its share of the rate
conditioned on its count: exactly ``round(share x duration)`` arrivals at sorted uniform times
in the measured window, so a step offers its target rate, not a Poisson draw around it (the
superposition of such processes is again uniform times given the summed count).
The processes start together on a common clock after a READY/GO handshake, so their slow
imports do not eat into the measurement.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ._api import LoadResult, StressError

#: Arrivals/s one generator process is given at most before the load is split over several.
#: About a third of the ceiling measured in results/stress/ (one core), to leave headroom.
RATE_PER_PROCESS = 400.0
#: A generator is the bottleneck when the typical request leaves this late (median of
#: scheduled -> actual send: systematically behind, not a scheduler hiccup) ...
SATURATED_SEND_LAG_P50_MS = 5.0
#: ... or its backlog reached this (p99 of the send lag) ...
SATURATED_SEND_LAG_P99_MS = 100.0
#: ... or uses this share of a core.
SATURATED_CPU_SHARE = 0.9
#: Default cap on requests in flight per generator process.
DEFAULT_INFLIGHT_CAP = 256


def input_signature(model_path: str | Path) -> list[dict]:
    """The model's graph inputs as plain dicts (name, dtype, shape, value_range).

    Uses ``kops.input_signature`` (which knows token-id ranges from embedding tables); falls
    back to reading the graph inputs with ``onnx`` when kops is unavailable.
    """
    try:
        import kops

        specs = kops.input_signature(model_path)
        return [
            {
                "name": s.name,
                "dtype": s.dtype,
                "shape": list(s.shape),
                "value_range": list(s.value_range) if s.value_range else None,
            }
            for s in specs
        ]
    except (ImportError, AttributeError):
        pass
    import onnx
    from onnx import helper

    try:
        model = onnx.load(str(model_path), load_external_data=False)
    except Exception as exc:
        raise StressError(f"{model_path}: not a readable ONNX model ({exc})") from None
    inits = {i.name for i in model.graph.initializer}
    out = []
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        tt = vi.type.tensor_type
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(tt.elem_type)).name
        shape = [
            d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in tt.shape.dim
        ]
        out.append({"name": vi.name, "dtype": dtype, "shape": shape, "value_range": None})
    return out


def generator_processes(rate_rps: float, processes: int | None = None) -> int:
    """How many generator processes a rate needs (at most the usable cores)."""
    if processes:
        return max(1, int(processes))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(cores or 1, math.ceil(rate_rps / RATE_PER_PROCESS)))


def open_loop(
    endpoints: list[str],
    signature: list[dict],
    rate_rps: float,
    duration_s: float,
    warmup_s: float = 1.0,
    abort_p99_ms: float | None = None,
    *,
    inflight_cap: int = DEFAULT_INFLIGHT_CAP,
    timeout_s: float = 30.0,
    processes: int | None = None,
    dims: dict[str, int] | None = None,
    seed: int = 0,
    check_alive: Callable[[], None] | None = None,
    cpu_affinity: list[int] | None = None,
) -> LoadResult:
    """Drive Poisson arrivals at ``rate_rps`` over ``endpoints`` for ``duration_s`` after
    ``warmup_s`` of unmeasured warm-up, and return exact figures.

    ``cpu_affinity`` pins the generator processes (e.g. to the cores the servers do not use).
    ``check_alive`` is polled while the load runs; whatever it raises (a :class:`DeployError`
    for a server that died) stops the generators and propagates.
    """
    if rate_rps <= 0 or duration_s <= 0 or warmup_s < 0:
        raise StressError("rate and duration must be positive (warm-up non-negative)")
    if not endpoints:
        raise StressError("no endpoints to load")
    n = generator_processes(rate_rps, processes)
    tmp = Path(tempfile.mkdtemp(prefix="stress-load-"))
    procs: list[subprocess.Popen] = []
    outs: list[Path] = []
    err_files: list = []

    def last_err(i: int) -> str:
        err_files[i].flush()
        lines = Path(err_files[i].name).read_text(errors="replace").strip().splitlines()
        return lines[-1] if lines else ""

    try:
        for i in range(n):
            cfg = {
                "endpoints": endpoints,
                "signature": signature,
                "dims": dims or {},
                "rate_rps": rate_rps / n,
                "duration_s": duration_s,
                "warmup_s": warmup_s,
                "abort_p99_ms": abort_p99_ms,
                "inflight_cap": inflight_cap,
                "timeout_s": timeout_s,
                "seed": seed * 1000 + i,
                "handshake": True,
            }
            proc, out, err = _spawn_generator(tmp, i, cfg, cpu_affinity)
            procs.append(proc)
            outs.append(out)
            err_files.append(err)
        for i, p in enumerate(procs):
            line = p.stdout.readline() if p.stdout else ""
            if line.strip() != "READY":
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(timeout=5)
                raise StressError("load generator failed to start: " + (last_err(i) or "no output"))
        _run_generators(procs, outs, warmup_s + duration_s + timeout_s + 30.0, check_alive)
        results = []
        for i, (p, o) in enumerate(zip(procs, outs)):
            if not o.exists():
                raise StressError(
                    "load generator exited without a result: "
                    + (last_err(i) or f"rc={p.returncode}")
                )
            results.append(json.loads(o.read_text()))
    finally:
        _stop_generators(procs, err_files, tmp)
    return merge_results(results, rate_rps, duration_s, warmup_s)


def _spawn_generator(
    tmp: Path, i: int, cfg: dict[str, Any], cpu_affinity: list[int] | None
) -> tuple[subprocess.Popen, Path, Any]:
    """Start generator process ``i`` with ``cfg``; it answers READY, then waits for GO."""
    out = tmp / f"result-{i}.json"
    cfg_path = tmp / f"config-{i}.json"
    cfg_path.write_text(json.dumps({**cfg, "out": str(out)}))
    err = open(tmp / f"stderr-{i}.log", "w")  # noqa: SIM115 - closed by _stop_generators
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "stress._locustfile", str(cfg_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,  # a file: a pipe nobody reads could fill and block
            text=True,
            start_new_session=True,
        )
    except BaseException:
        err.close()
        raise
    if cpu_affinity:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(proc.pid, cpu_affinity)
    return proc, out, err


def _run_generators(
    procs: list[subprocess.Popen],
    outs: list[Path],
    max_s: float,
    check_alive: Callable[[], None] | None,
) -> None:
    """Start every generator at the same instant and wait (at most ``max_s``) for them all,
    stopping them all once one saw the SLO clearly violated."""
    start_at = time.time() + 0.2
    for p in procs:
        assert p.stdin is not None
        p.stdin.write(f"GO {start_at}\n")
        p.stdin.flush()
    stopping = False
    deadline = start_at + max_s
    while any(p.poll() is None for p in procs):
        if check_alive is not None:
            check_alive()
        if not stopping and any(_aborted(o) for o in outs):
            # One process saw the SLO clearly violated: the others stop too.
            stopping = True
            for p in procs:
                if p.poll() is None:
                    p.terminate()
        if time.time() > deadline:
            raise StressError("load generator did not finish in time")
        time.sleep(0.1)
    if check_alive is not None:
        check_alive()


def _stop_generators(procs: list[subprocess.Popen], err_files: list[Any], tmp: Path) -> None:
    """Kill what still runs, close every pipe and log, remove the run's folder."""
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()
        for f in (p.stdin, p.stdout):
            if f:
                f.close()
    for f in err_files:
        f.close()
    for f in tmp.iterdir():
        f.unlink()
    tmp.rmdir()


def _aborted(out: Path) -> bool:
    try:
        return bool(json.loads(out.read_text()).get("aborted"))
    except (OSError, ValueError):
        return False


def merge_results(
    results: list[dict], rate_rps: float, duration_s: float, warmup_s: float
) -> LoadResult:
    """One :class:`LoadResult` from the generator processes' raw records.

    Percentiles are over the successful requests scheduled after the warm-up; errors, timeouts
    and arrivals dropped at the in-flight cap count in ``error_rate``. Throughput counts
    successful completions inside the measurement window.
    """
    sched = np.concatenate([np.asarray(r["sched_s"], dtype=float) for r in results])
    lat = np.concatenate(
        [np.asarray([np.nan if x is None else x for x in r["latency_ms"]], float) for r in results]
    )
    svc = np.concatenate(
        [np.asarray([np.nan if x is None else x for x in r["service_ms"]], float) for r in results]
    )
    ok = np.concatenate([np.asarray(r["ok"], dtype=bool) for r in results])
    done = np.concatenate([np.asarray(r["done_s"], dtype=float) for r in results])
    aborted = any(r["aborted"] for r in results)
    window_end = warmup_s + duration_s
    if aborted:
        window_end = max(warmup_s + 1e-3, min(r["schedule_end_s"] for r in results))
    measured = (sched >= warmup_s) & (sched < window_end)
    good = measured & ok
    n = int(measured.sum())
    errors = int((measured & ~ok).sum())
    window = window_end - warmup_s
    completed_in_window = int((ok & (done >= warmup_s) & (done < window_end)).sum())
    good_lat = lat[good]

    def pct(q: float) -> float:
        return float(np.percentile(good_lat, q)) if good_lat.size else float("nan")

    cpu_share = max(r["cpu_s"] / max(r["wall_s"], 1e-9) for r in results)
    lag_p99 = max(r["send_lag_p99_ms"] for r in results)
    lag_p50 = max(r.get("send_lag_p50_ms", 0.0) for r in results)
    saturated = (
        lag_p50 > SATURATED_SEND_LAG_P50_MS
        or lag_p99 > SATURATED_SEND_LAG_P99_MS
        or cpu_share > SATURATED_CPU_SHARE
    )
    good_svc = svc[good]
    return LoadResult(
        target_rps=rate_rps,
        duration_s=window,
        sent=n,
        completed=int(good.sum()),
        errors=errors,
        throughput_rps=completed_in_window / window if window > 0 else 0.0,
        p50_ms=pct(50),
        p95_ms=pct(95),
        p99_ms=pct(99),
        max_ms=float(good_lat.max()) if good_lat.size else float("nan"),
        error_rate=errors / n if n else 1.0,
        inflight_cap_hits=sum(r["cap_hits"] for r in results),
        generator_saturated=saturated,
        generator_processes=len(results),
        aborted_early=aborted,
        extra={
            "offered_rps": n / window if window > 0 else 0.0,
            "censored": sum(r["censored"] for r in results),
            "send_lag_p50_ms": lag_p50,
            "send_lag_p99_ms": lag_p99,
            "generator_cpu_share": cpu_share,
            "service_p50_ms": float(np.nanpercentile(good_svc, 50)) if good_svc.size else None,
            "service_p99_ms": float(np.nanpercentile(good_svc, 99)) if good_svc.size else None,
        },
    )
