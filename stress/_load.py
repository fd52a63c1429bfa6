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
import logging
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ._api import LoadResult, StressError
from ._interference import MIN_GENERATOR_HEADROOM, CpuSnapshot, Interference, interference
from ._lifetime import remove, scratch
from ._stability import (
    MAX_WINDOWS,
    STABLE_SPREAD,
    STABLE_WINDOWS,
    WindowStats,
    judge,
    quantile_ci,
    window_percentile,
    window_seconds,
)

log = logging.getLogger(__name__)

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
#: A request sent more than this after its scheduled instant was sent late ...
LATE_SEND_MS = 5.0
#: ... and more than this share of late sends marks a measurement (perf_analyzer's 1 %: the
#: guard against coordinated omission, where a late generator hides the server's queueing).
MAX_LATE_SHARE = 0.01


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


def generator_processes(
    rate_rps: float, processes: int | None = None, cores: list[int] | None = None
) -> int:
    """How many generator processes a rate needs: at most one per core they may run on
    (``cores``, the cores they are pinned to; else this process's usable cores).

    Two gevent loops pinned to one core gain no CPU and wait for each other's time slices:
    at 1,500 req/s on one core two processes sent 51 % of requests > 5 ms late, one 3 %.
    """
    if processes:
        return max(1, int(processes))
    if cores:
        usable = len(cores)
    elif hasattr(os, "sched_getaffinity"):
        usable = len(os.sched_getaffinity(0))
    else:
        usable = os.cpu_count() or 1
    return max(1, min(usable, math.ceil(rate_rps / RATE_PER_PROCESS)))


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
    server_pids: list[int] | None = None,
    server_cores: list[int] | None = None,
    max_windows: int = MAX_WINDOWS,
) -> LoadResult:
    """Drive Poisson arrivals at ``rate_rps`` over ``endpoints`` for ``duration_s`` after
    ``warmup_s`` of unmeasured warm-up, and return exact figures.

    The measured time is cut into windows (:func:`stress._stability.window_seconds`, at least
    :data:`STABLE_WINDOWS`); while the last ones disagree (:func:`stress._stability.judge`) or
    were disturbed (:mod:`stress._interference`), one more window runs, up to ``max_windows``
    in all; the figures cover the last ``duration_s`` worth of windows.
    ``cpu_affinity`` pins the generator processes (e.g. to the cores the servers do not use);
    ``server_pids``/``server_cores`` (servers pinned there) let other processes' load on those
    cores be told from the servers' own. ``check_alive`` is polled while the load runs; whatever
    it raises (a :class:`DeployError` for a server that died) stops the generators and propagates.
    """
    if rate_rps <= 0 or duration_s <= 0 or warmup_s < 0:
        raise StressError("rate and duration must be positive (warm-up non-negative)")
    if not endpoints:
        raise StressError("no endpoints to load")
    n = generator_processes(rate_rps, processes, cpu_affinity)
    window_s = window_seconds(rate_rps)
    first_windows = max(STABLE_WINDOWS, round(duration_s / window_s))
    limit = max(int(max_windows), first_windows)
    tmp = scratch("stress-load-")
    gen = _Generators(tmp, n, check_alive)
    watch = CpuWatch(server_pids, server_cores, cpu_affinity)
    segments: list[list[dict]] = []
    windows: list[tuple[float, float]] = []
    t0: float | None = None
    ok = False
    try:
        gen.start(endpoints, signature, dims, rate_rps, inflight_cap, timeout_s, seed, abort_p99_ms)
        if cpu_affinity:
            for p in gen.procs:
                with contextlib.suppress(OSError):
                    os.sched_setaffinity(p.pid, cpu_affinity)
        watch.pids = list(server_pids or []) + [p.pid for p in gen.procs]
        gen.wait_ready()
        while True:
            k = first_windows if not segments else 1
            warm = warmup_s if not segments else 0.0
            start_at = time.time() + 0.2
            t0 = start_at if t0 is None else t0
            offset = start_at - t0
            bounds = [offset + warm + j * window_s for j in range(k + 1)]
            results = gen.run_segment(
                start_at, k * window_s, warm, k, timeout_s, watch, [t0 + b for b in bounds]
            )
            segments.append([_shift(r, offset) for r in results])
            windows += [(bounds[j], bounds[j + 1]) for j in range(k)]
            result = merge_results(
                [r for seg in segments for r in seg], rate_rps, duration_s, warmup_s,
                windows=windows, keep=first_windows, watch=watch, t0=t0,
            )  # fmt: skip
            result.generator_processes = n
            if result.aborted_early or result.extra["windows_stable"] or len(windows) >= limit:
                break
            log.info(
                "unstable at %g req/s (%s): one more window", rate_rps, result.unstable_reasons
            )
        ok = True
    finally:
        gen.close(graceful=ok)
    return result


def _shift(raw: dict, offset: float) -> dict:
    """A segment's raw record on the measurement's common clock (its first segment's start)."""
    if not offset:
        return raw
    out = dict(raw)
    for key in ("sched_s", "done_s"):
        out[key] = [x + offset for x in raw[key]]
    out["schedule_end_s"] = raw["schedule_end_s"] + offset
    return out


class CpuWatch:
    """:class:`CpuSnapshot` s taken at the window boundaries of one measurement."""

    def __init__(self, server_pids, server_cores, generator_cores) -> None:
        self.server_pids = list(server_pids or [])
        self.server_cores = list(server_cores or [])
        self.generator_cores = list(generator_cores or [])
        self.pids: list[int] = list(self.server_pids)
        self.snaps: list[tuple[float, CpuSnapshot]] = []  # (wall-clock time, snapshot)

    def take(self) -> None:
        self.snaps.append((time.time(), CpuSnapshot.take(self.pids)))

    def between(self, start: float, end: float) -> Interference | None:
        """Interference from the snapshot nearest ``start`` to the one nearest ``end``."""
        if len(self.snaps) < 2:
            return None
        a = min(self.snaps, key=lambda s: abs(s[0] - start))
        b = min(self.snaps, key=lambda s: abs(s[0] - end))
        if b[0] - a[0] < 0.5 * (end - start):
            return None
        return interference(
            a[1], b[1], self.server_cores, self.server_pids, self.generator_cores or None
        )


class _Generators:
    """The Locust generator processes of one measurement (READY/GO handshake, segments)."""

    def __init__(self, tmp: Path, n: int, check_alive: Callable[[], None] | None) -> None:
        self.tmp, self.n, self.check_alive = tmp, n, check_alive
        self.procs: list[subprocess.Popen] = []
        self.err_files: list = []
        self.segment = 0

    def last_err(self, i: int) -> str:
        self.err_files[i].flush()
        lines = Path(self.err_files[i].name).read_text(errors="replace").strip().splitlines()
        return lines[-1] if lines else ""

    def start(self, endpoints, signature, dims, rate_rps, cap, timeout_s, seed, abort_ms) -> None:
        for i in range(self.n):
            cfg = {
                "endpoints": endpoints, "signature": signature, "dims": dims or {},
                "rate_rps": rate_rps / self.n, "abort_p99_ms": abort_ms, "inflight_cap": cap,
                "timeout_s": timeout_s, "seed": seed * 1000 + i, "handshake": True,
                "parent_pid": os.getpid(),
            }  # fmt: skip
            cfg_path = self.tmp / f"config-{i}.json"
            cfg_path.write_text(json.dumps(cfg))
            err = open(self.tmp / f"stderr-{i}.log", "w")  # noqa: SIM115 - closed in close()
            self.err_files.append(err)
            self.procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "stress._locustfile", str(cfg_path)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=err,  # a file: a pipe nobody reads could fill and block
                    text=True,
                    start_new_session=True,
                )
            )

    def wait_ready(self) -> None:
        for i, p in enumerate(self.procs):
            line = p.stdout.readline() if p.stdout else ""
            if line.strip() != "READY":
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(timeout=5)
                raise StressError(
                    "load generator failed to start: " + (self.last_err(i) or "no output")
                )

    def run_segment(
        self, start_at, duration_s, warmup_s, windows, timeout_s, watch: CpuWatch, bounds
    ) -> list[dict]:
        """Run one segment on every process; snapshot the CPU at each window boundary."""
        self.segment += 1
        outs = [self.tmp / f"result-{i}-{self.segment}.json" for i in range(self.n)]
        for p, out in zip(self.procs, outs):
            assert p.stdin is not None
            p.stdin.write(f"GO {start_at} {duration_s} {warmup_s} {windows} {out}\n")
            p.stdin.flush()
        pending = [b for b in bounds if not watch.snaps or b > watch.snaps[-1][0]]
        stopping = False
        deadline = start_at + warmup_s + duration_s + timeout_s + 30.0
        while not all(o.exists() for o in outs):
            now = time.time()
            while pending and now >= pending[0]:
                watch.take()
                pending.pop(0)
            if self.check_alive is not None:
                self.check_alive()
            for i, p in enumerate(self.procs):
                if p.poll() is not None and not outs[i].exists():
                    raise StressError(
                        "load generator exited without a result: "
                        + (self.last_err(i) or f"rc={p.returncode}")
                    )
            if not stopping and any(_aborted(o) for o in outs):
                # One process saw the SLO clearly violated: the others stop too.
                stopping = True
                for p in self.procs:
                    if p.poll() is None:
                        p.send_signal(15)
            if now > deadline:
                raise StressError("load generator did not finish in time")
            wake = min([now + 0.1] + pending[:1])
            time.sleep(max(0.005, wake - time.time()))
        if pending:
            watch.take()  # a boundary not reached: the step stopped early
        if self.check_alive is not None:
            self.check_alive()
        return [json.loads(o.read_text()) for o in outs]

    def close(self, graceful: bool) -> None:
        for p in self.procs:
            if p.stdin:
                with contextlib.suppress(OSError):
                    p.stdin.close()  # EOF: the process leaves its segment loop
        for p in self.procs:
            try:
                p.wait(timeout=5 if graceful else 0.01)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            if p.stdout:
                p.stdout.close()
        for f in self.err_files:
            f.close()
        remove(self.tmp)


def _aborted(out: Path) -> bool:
    try:
        return bool(json.loads(out.read_text()).get("aborted"))
    except (OSError, ValueError):
        return False


def merge_results(
    results: list[dict],
    rate_rps: float,
    duration_s: float,
    warmup_s: float,
    *,
    windows: list[tuple[float, float]] | None = None,
    keep: int | None = None,
    watch: CpuWatch | None = None,
    t0: float | None = None,
) -> LoadResult:
    """One :class:`LoadResult` from the generator processes' raw records.

    ``windows`` are the measurement windows on the records' clock (default: the measured time
    ``[warmup_s, warmup_s + duration_s)`` cut by :func:`window_seconds`); the figures cover the
    last ``keep`` of them. Percentiles are over the successful requests scheduled in those
    windows; errors, timeouts and arrivals dropped at the in-flight cap count in ``error_rate``.
    Throughput counts successful completions inside them. ``watch`` (snapshots on the wall clock,
    ``t0`` the records' zero) adds the interference figures.
    """
    sched = np.concatenate([np.asarray(r["sched_s"], dtype=float) for r in results])
    lat = np.concatenate([_floats(r["latency_ms"]) for r in results])
    svc = np.concatenate([_floats(r["service_ms"]) for r in results])
    lag = np.concatenate(
        [_floats(r.get("send_lag_ms") or [None] * len(r["sched_s"])) for r in results]
    )
    ok = np.concatenate([np.asarray(r["ok"], dtype=bool) for r in results])
    done = np.concatenate([np.asarray(r["done_s"], dtype=float) for r in results])
    aborted = any(r["aborted"] for r in results)
    complete, span = _spans(results, rate_rps, duration_s, warmup_s, windows, keep, aborted)
    measured = _within(sched, span)
    good = measured & ok
    n = int(measured.sum())
    errors = int((measured & ~ok).sum())
    window = sum(b - a for a, b in span)
    completed_in_window = int((ok & _within(done, span)).sum())
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
    stats = window_stats(complete, sched, lat, ok, done, lag, watch, t0)
    verdict = judge(stats)
    late_share, lag_added, p99_send = _lateness(lat, lag, measured, good)
    inter = watch.between(t0 + span[0][0], t0 + span[-1][1]) if watch and t0 is not None else None
    headroom = 1.0 - min(1.0, cpu_share)
    if inter is not None and inter.idle_share_generator_cores is not None:
        headroom = min(headroom, inter.idle_share_generator_cores)
    kinds = _unstable_reasons(
        aborted, verdict.reasons, late_share, lag_added, saturated, headroom, inter,
        own_headroom=1.0 - min(1.0, cpu_share),
    )  # fmt: skip
    reasons = [text for _, text in kinds]
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
        stable=not reasons,
        throughput_spread=verdict.throughput_spread,
        latency_spread=verdict.latency_spread,
        windows=[w.to_dict() for w in stats],
        late_send_share=late_share,
        generator_cpu_headroom=headroom,
        unstable_reasons=reasons,
        interference=inter.to_dict() if inter is not None else {},
        extra={
            "offered_rps": n / window if window > 0 else 0.0,
            "censored": sum(r["censored"] for r in results),
            "send_lag_p50_ms": lag_p50,
            "send_lag_p99_ms": lag_p99,
            "generator_cpu_share": cpu_share,
            "service_p50_ms": float(np.nanpercentile(good_svc, 50)) if good_svc.size else None,
            "service_p99_ms": float(np.nanpercentile(good_svc, 99)) if good_svc.size else None,
            "windows_stable": verdict.stable,
            "p99_from_send_ms": p99_send,
            "lag_added_p99": lag_added,
            # What each unstable reason is about (see _unstable_reasons), for the capacity search.
            "reason_kinds": [kind for kind, _ in kinds],
            # Other processes or the hypervisor took the cores measured on.
            "interfered": bool(inter is not None and inter.reasons()),
            # Something else may have set the figures: re-measuring can help.
            "disturbed": len(reasons) > len(verdict.reasons) + int(aborted),
        },
    )


def _spans(
    results: list[dict],
    rate_rps: float,
    duration_s: float,
    warmup_s: float,
    windows: list[tuple[float, float]] | None,
    keep: int | None,
    aborted: bool,
) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """The complete windows (judged by the stability rule) and the span the figures cover (the
    last ``keep`` windows; an aborted run's windows up to where its schedule stopped)."""
    if windows is None:
        k = max(1, round(duration_s / window_seconds(rate_rps)))
        w = duration_s / k
        windows = [(warmup_s + j * w, warmup_s + (j + 1) * w) for j in range(k)]
    keep = len(windows) if keep is None else keep
    if not aborted:
        return windows, windows[-keep:]
    end = max(windows[0][0] + 1e-3, min(r["schedule_end_s"] for r in results))
    return [w for w in windows if w[1] <= end], [(a, min(b, end)) for a, b in windows if a < end]


def _lateness(
    lat: np.ndarray, lag: np.ndarray, measured: np.ndarray, good: np.ndarray
) -> tuple[float, float, float | None]:
    """The share of measured requests sent over LATE_SEND_MS late, how much the send lag added
    to the p99 (p99 from the scheduled instant / p99 from the actual send - 1), and the latter.

    Latency is timed from the scheduled instant, so a late send cannot hide the server's
    queueing (the coordinated omission perf_analyzer's 1 % late rule guards against, its latency
    being timed from the actual send): the lag is *added* to the figure. What lateness can do
    here is make the figure partly the generator's; ``lag_added`` says by how much.
    """
    sent_lag = lag[measured & np.isfinite(lag)]
    late_share = float((sent_lag > LATE_SEND_MS).mean()) if sent_lag.size else 0.0
    both = good & np.isfinite(lag)
    if not both.any():
        return late_share, 0.0, None
    p99_sched = float(np.percentile(lat[both], 99))
    p99_send = float(np.percentile(lat[both] - np.maximum(lag[both], 0.0), 99))
    added = p99_sched / p99_send - 1.0 if p99_send > 0 else 0.0
    return late_share, added, p99_send


def _unstable_reasons(
    aborted: bool,
    window_reasons: list[str],
    late_share: float,
    lag_added: float,
    saturated: bool,
    headroom: float,
    inter: Interference | None,
    own_headroom: float = 1.0,
) -> list[tuple[str, str]]:
    """Why a measurement cannot be trusted as it is (empty: it is stable), each with its kind:
    ``aborted``, ``windows`` (the spread rule), ``late`` (the generator's send lag moved the
    figures), ``generator`` (it could not meet its schedule at all: generator-limited),
    ``starved`` (its cores had no CPU left), ``interference`` (other processes or steal on the
    servers' cores).

    Late sends count when over MAX_LATE_SHARE of requests were late *and* their lag added more
    than the rule's STABLE_SPREAD to the p99 (:func:`_lateness`): below that the figure is the
    server's whatever the generator's jitter. Where it is above, the capacity search still
    trusts a step that *passed* (the lag only made it look slower) and calls a failure caused
    by the lag alone generator-limited (:mod:`stress._capacity`).
    """
    kinds = [("aborted", "cut short: the SLO was clearly exceeded")] if aborted else []
    kinds += [("windows", r) for r in window_reasons]
    if saturated:
        kinds.append(
            ("generator", "generator-limited: the load generator could not keep to its schedule "
             "(median send lag > 5 ms, a backlog, or > 90 % of a core): the figures understate "
             "the server")
        )  # fmt: skip
    elif late_share > MAX_LATE_SHARE and lag_added > STABLE_SPREAD:
        kinds.append(
            ("late", f"{late_share:.1%} of requests sent over {LATE_SEND_MS:g} ms late (> "
             f"{MAX_LATE_SHARE:.0%}), adding {lag_added:.0%} to the p99 (> {STABLE_SPREAD:.0%}): "
             "the load generator fell behind its schedule")
        )  # fmt: skip
    if headroom < MIN_GENERATOR_HEADROOM:
        # Its own work filling its core is its limit; other processes filling it, starvation.
        own = own_headroom < MIN_GENERATOR_HEADROOM
        kinds.append(
            ("generator" if own else "starved",
             f"load generator CPU headroom {headroom:.0%} (< 10 %): "
             + ("it used its core" if own else "it was starved"))
        )  # fmt: skip
    if inter is not None:
        kinds += [("interference", r) for r in inter.reasons()]
    return kinds


def window_stats(
    windows: list[tuple[float, float]],
    sched: np.ndarray,
    lat: np.ndarray,
    ok: np.ndarray,
    done: np.ndarray,
    lag: np.ndarray,
    watch: CpuWatch | None = None,
    t0: float | None = None,
) -> list[WindowStats]:
    """Per-window figures: arrivals scheduled in the window, completions inside it, and its
    latency percentile (:func:`stress._stability.window_percentile`) with its 95 % interval."""
    sel = [(sched >= a) & (sched < b) for a, b in windows]
    q = window_percentile([int(s.sum()) for s in sel[-STABLE_WINDOWS:]])
    out = []
    for (a, b), s in zip(windows, sel):
        good = np.sort(lat[s & ok])
        value, lo, hi = quantile_ci(good, q)
        inter = watch.between(t0 + a, t0 + b) if watch and t0 is not None else None
        out.append(
            WindowStats(
                start_s=a,
                end_s=b,
                sent=int(s.sum()),
                completed=int((ok & (done >= a) & (done < b)).sum()),
                errors=int((s & ~ok).sum()),
                throughput_rps=float((ok & (done >= a) & (done < b)).sum() / (b - a)),
                latency_ms=value,
                latency_percentile=q,
                latency_ci_ms=(lo, hi),
                p50_ms=float(np.percentile(good, 50)) if good.size else float("nan"),
                late_sends=int((lag[s] > LATE_SEND_MS).sum()),
                steal_share=inter.steal_share if inter else None,
                busy_share=inter.busy_share if inter else None,
                foreign_cores=inter.foreign_server_share if inter else None,
            )
        )
    return out


def _floats(xs: list) -> np.ndarray:
    return np.asarray([np.nan if x is None else x for x in xs], dtype=float)


def _within(t: np.ndarray, intervals: list[tuple[float, float]]) -> np.ndarray:
    mask = np.zeros(t.shape, dtype=bool)
    for a, b in intervals:
        mask |= (t >= a) & (t < b)
    return mask
