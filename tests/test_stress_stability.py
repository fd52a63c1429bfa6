"""The stability rule, late sends, interference and the capacity search's use of them.

Fast: synthetic window series and raw generator records, and the capacity search against
deterministic doubles (in-memory deployments whose figures are known functions of the rate).
The live check (a real server, real Locust) is marked slow.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

import stress
from stress._capacity import MAX_REMEASURES, capacity_search, needs_remeasure, saturated_rps
from stress._interference import CpuSnapshot, interference
from stress._load import LATE_SEND_MS, _unstable_reasons, generator_processes, merge_results
from stress._local import core_sets
from stress._stability import (
    WindowStats,
    judge,
    measurement_seconds,
    quantile_ci,
    window_percentile,
    window_seconds,
)


def _window(thr: float, lat_ms: float, n: int = 200, seed: int = 0) -> WindowStats:
    """A window whose latencies are lognormal around ``lat_ms`` (sigma 0.3)."""
    sample = np.sort(lat_ms * np.exp(np.random.default_rng(seed).normal(0.0, 0.3, n)))
    q = window_percentile([n])
    value, lo, hi = quantile_ci(sample, q)
    return WindowStats(0, 1, n, n, 0, thr, value, q, (lo, hi), float(np.median(sample)))


def test_windows_hold_enough_requests_and_the_percentile_fits_them() -> None:
    # Sized by the requests they hold: 50 at low rates, never under 0.5 s at high ones.
    assert window_seconds(1000) == 0.5 and window_seconds(20) == pytest.approx(2.5)
    assert window_seconds(50) == 1.0
    # A measurement needs 3 windows and, for a capacity step, 200 requests.
    assert measurement_seconds(1500, 200) == pytest.approx(1.5)
    assert measurement_seconds(50, 200) == pytest.approx(4.0)
    assert window_percentile([50, 80]) == 75.0  # 12 requests above p75 of 50
    assert window_percentile([200]) == 95.0 and window_percentile([1000]) == 99.0


def test_stable_series() -> None:
    v = judge([_window(100, 5.0, seed=s) for s in range(4)])
    assert v.stable and v.reasons == [] and v.throughput_spread == 0.0


def test_unstable_throughput() -> None:
    v = judge([_window(t, 5.0, seed=s) for s, t in enumerate([100, 100, 85, 100])])
    assert not v.stable and v.throughput_spread == pytest.approx(100 / 85 - 1)
    assert len(v.reasons) == 1 and "throughput spread 18%" in v.reasons[0]


def test_unstable_latency_beyond_sampling_noise() -> None:
    v = judge([_window(100, m, seed=s) for s, m in enumerate([5.0, 5.0, 7.0, 9.0])])
    assert not v.stable and v.latency_spread > 0.5 and "latency spread" in v.reasons[0]


def test_latency_noise_alone_is_not_instability() -> None:
    """Stationary latencies whose window percentiles differ by > 10 % by chance only."""
    flagged = 0
    spread_over = 0
    for s in range(50):
        v = judge([_window(100, 5.0, n=50, seed=3 * s + k) for k in range(3)])
        spread_over += v.latency_spread > 0.10
        flagged += not v.stable
    assert spread_over > 10  # the raw 10 % rule would flag these
    assert flagged <= 3


def test_too_few_windows() -> None:
    v = judge([_window(100, 5.0), _window(100, 5.0, seed=1)])
    assert not v.stable and v.reasons == ["too few windows (2 < 3)"]


def _raw(n: int, lag_ms: list[float] | None = None, served_ms: float = 2.0, **kw) -> dict:
    """``n`` requests over 3 s after 1 s of warm-up (6 windows of 0.5 s at 100 req/s), each
    served in ``served_ms`` after its actual send, ``lag_ms`` after its scheduled one."""
    sched = np.linspace(1.0, 3.999, n).tolist()
    lag = lag_ms if lag_ms is not None else [0.3] * n
    rec = {
        "sched_s": sched, "latency_ms": [served_ms + x for x in lag], "service_ms": [served_ms] * n,
        "ok": [1] * n,
        "done_s": [t + 0.002 for t in sched], "aborted": False, "schedule_end_s": 4.0,
        "cap_hits": 0, "censored": 0, "cpu_s": 0.3, "wall_s": 4.0, "send_lag_p50_ms": 0.3,
        "send_lag_p99_ms": 0.5, "send_lag_ms": lag,
    }  # fmt: skip
    rec.update(kw)
    return rec


def test_late_send_share_counts_requests_over_the_threshold() -> None:
    lag = [0.3] * 300
    for i in range(0, 300, 50):  # 6 of 300 = 2 % late
        lag[i] = LATE_SEND_MS + 1.0
    lag[1] = LATE_SEND_MS - 0.1  # within the threshold: on time
    r = merge_results([_raw(300, lag)], 100.0, 3.0, 1.0)
    assert r.late_send_share == pytest.approx(6 / 300)
    assert not r.stable and any("sent over 5 ms late" in x for x in r.unstable_reasons)
    assert r.extra["disturbed"] and r.extra["windows_stable"]
    assert r.extra["reason_kinds"] == ["late"] and r.extra["lag_added_p99"] > 1.0
    on_time = merge_results([_raw(300, [0.3] * 297 + [9.0] * 3)], 100.0, 3.0, 1.0)
    assert on_time.late_send_share == pytest.approx(0.01) and on_time.stable, on_time
    assert len(on_time.windows) == 6 and on_time.to_dict()["windows"][0]["sent"] == 50


def test_late_sends_that_do_not_move_the_p99_are_not_instability() -> None:
    """Latency is timed from the scheduled send, so lateness adds to it: 2 % of requests 6 ms
    late on an 80 ms p99 add < 10 % to it (the figure is the server's), on a 40 ms one > 10 %."""
    lag = [0.3] * 300
    for i in range(0, 300, 50):
        lag[i] = LATE_SEND_MS + 1.0
    slow = merge_results([_raw(300, lag, served_ms=80.0)], 100.0, 3.0, 1.0)
    assert slow.late_send_share == pytest.approx(0.02) and slow.stable, slow.unstable_reasons
    assert slow.extra["lag_added_p99"] < 0.10
    assert slow.extra["p99_from_send_ms"] == pytest.approx(80.0)
    fast = merge_results([_raw(300, lag, served_ms=40.0)], 100.0, 3.0, 1.0)
    assert not fast.stable and "adding" in fast.unstable_reasons[0]


def test_a_generator_that_cannot_keep_its_schedule_is_generator_limited() -> None:
    r = merge_results([_raw(300, [8.0] * 300, send_lag_p50_ms=8.0)], 100.0, 3.0, 1.0)
    assert r.generator_saturated and not r.stable
    assert r.extra["reason_kinds"] == ["generator"] and "generator-limited" in r.unstable_reasons[0]


def test_generator_processes_fit_the_cores_they_are_pinned_to() -> None:
    """Two gevent loops on one core wait for each other's time slices: one per core."""
    assert generator_processes(1500.0, cores=[0]) == 1
    assert generator_processes(1500.0, cores=[0, 1]) == 2
    assert generator_processes(300.0, cores=[0, 1]) == 1
    assert generator_processes(1500.0, 3, cores=[0]) == 3  # an explicit count wins


def test_starved_generator_is_flagged() -> None:
    r = merge_results([_raw(300, cpu_s=3.9, wall_s=4.0)], 100.0, 3.0, 1.0)
    assert r.generator_cpu_headroom == pytest.approx(0.025)
    assert not r.stable and any("headroom" in x for x in r.unstable_reasons)
    # Its own work filled its core: the generator's limit, not other processes'.
    assert "generator" in r.extra["reason_kinds"] and "starved" not in r.extra["reason_kinds"]
    assert _unstable_reasons(False, [], 0.0, 0.0, False, 0.05, None, own_headroom=0.6) == [
        ("starved", "load generator CPU headroom 5% (< 10 %): it was starved")
    ]


def _snap(t, busy, steal, total, pid_ticks) -> CpuSnapshot:
    return CpuSnapshot(t=t, busy=busy, steal=steal, total=total, pid_ticks=pid_ticks, load_1m=1.0)


def test_interference_tells_other_processes_from_the_servers() -> None:
    a = _snap(0, {0: 0, 1: 0}, {0: 0, 1: 0}, {0: 0, 1: 0}, {10: 0})
    # Core 1 (the server's): 100 ticks, 90 busy of which the server 40 -> others took 50 %.
    b = _snap(1, {0: 20, 1: 90}, {0: 0, 1: 0}, {0: 100, 1: 100}, {10: 40})
    i = interference(a, b, server_cores=[1], server_pids=[10], generator_cores=[0])
    assert i.foreign_server_share == pytest.approx(0.5) and i.idle_share_generator_cores == 0.8
    assert any("other processes took 50%" in x for x in i.reasons())
    quiet = _snap(1, {0: 20, 1: 45}, {0: 0, 1: 0}, {0: 100, 1: 100}, {10: 40})
    assert interference(a, quiet, [1], [10], [0]).reasons() == []
    steal = _snap(1, {0: 20, 1: 45}, {0: 10, 1: 10}, {0: 100, 1: 100}, {10: 40})
    assert "CPU steal 10%" in interference(a, steal, [1], [10], [0]).reasons()[0]


def test_proc_snapshot_reads_this_machine() -> None:
    s = CpuSnapshot.take([__import__("os").getpid()])
    if not Path("/proc/stat").exists():
        pytest.skip("no /proc on this OS")
    assert s.total and s.load_1m is not None and s.pid_ticks


def test_local_cores_leave_the_generator_its_own() -> None:
    sets, gen = core_sets(2, 1, allowed=[0, 1, 2, 3])
    assert gen == [0] and sets == [[1], [2]]
    with pytest.raises(stress.DeployError, match="need 3 cores; this machine offers 2"):
        core_sets(2, 1, allowed=[0, 1])
    sets, gen = core_sets(2, 1, allowed=[0, 1], oversubscribe=True)
    assert sets == [[0], [1]] and gen == [0, 1]


# -- the capacity search and unstable steps ----------------------------------------------------


class Scripted(stress.Deployment):
    """Not a server: a knee at ``mu`` req/s (p99 ``base_ms`` below it, 10x the SLO above), and
    per-rate overrides: ``disturbed`` rates come back unstable the first time they are measured."""

    def __init__(self, mu, base_ms=5.0, disturbed=(), mu_after=None, switch_at=2) -> None:
        super().__init__(stress.DeploymentSpec(model_path=Path("double.onnx")))
        self.mu, self.base_ms, self.disturbed = mu, base_ms, set(disturbed)
        self.mu_after, self.switch_at, self.rates = mu_after, switch_at, []

    def open_loop(self, rate_rps, duration_s, warmup_s=1.0, abort_p99_ms=None):
        self.rates.append(rate_rps)
        mu = (
            self.mu if self.mu_after is None or len(self.rates) <= self.switch_at else self.mu_after
        )
        over = rate_rps > mu
        p99 = 10 * 50.0 if over else self.base_ms
        served = min(rate_rps, mu)
        aborted = bool(abort_p99_ms and over)
        # A step cut short (its p99 clearly over the SLO) stops within ~50 ms: too few
        # completions to measure the server's rate by.
        r = stress.LoadResult(
            target_rps=rate_rps, duration_s=0.04 if aborted else duration_s, sent=100,
            completed=100, errors=0, throughput_rps=served, p50_ms=p99 / 2,
            p95_ms=p99, p99_ms=p99, max_ms=p99, error_rate=0.0, aborted_early=aborted,
            extra={"offered_rps": rate_rps},
        )  # fmt: skip
        if rate_rps in self.disturbed:
            self.disturbed.discard(rate_rps)
            r.stable, r.extra["disturbed"] = False, True
            r.unstable_reasons = ["other processes took 60% of the server's 1 core(s) (> 25%)"]
            if not over:  # disturbed: the server looked slower than it is
                r.p99_ms = r.p95_ms = r.max_ms = 10 * 50.0
        return r

    def teardown(self) -> None:
        pass


def test_a_disturbed_step_is_measured_again() -> None:
    dep = Scripted(1000.0, disturbed={50.0})
    cap = capacity_search(dep, 50.0, max_steps=5)
    assert dep.rates[:2] == [50.0, 50.0]  # the disturbed failure was re-measured ...
    assert cap.remeasured == 1 and cap.steps[0].extra["superseded"]
    assert 900 <= cap.capacity_rps <= 1000 and cap.stable, cap.unstable_reasons  # ... and passed


def test_an_unstable_step_that_stays_so_flags_the_capacity() -> None:
    class AlwaysNoisy(Scripted):
        def open_loop(self, *a, **kw):
            r = super().open_loop(*a, **kw)
            r.stable, r.unstable_reasons = False, ["throughput spread 20% over the last 3 windows"]
            return r

    dep = AlwaysNoisy(1000.0)
    cap = capacity_search(dep, 50.0, max_steps=5)
    assert cap.remeasured == MAX_REMEASURES and len(dep.rates) == 5 + MAX_REMEASURES
    assert not cap.stable and "was not stable: throughput spread" in cap.unstable_reasons[0]
    assert cap.to_dict()["stable"] is False and cap.to_dict()["steps"][0]["stable"] is False


def test_capacity_is_not_the_start_rate_when_the_server_slows_after_the_probe() -> None:
    """The Quickstart's trial 1: 50.0 req/s recorded (the start rate) on a config that serves
    ~1,000. The probe measured the server on a quieter machine (~2,400 served) than the
    bisection that followed (~1,000): every step in the bracket below 2,400 failed, each
    reopening went only 0.7x lower, and the search ended on its start rate, unflagged."""
    dep = Scripted(2400.0, mu_after=1000.0, switch_at=2)
    cap = capacity_search(dep, 50.0, max_steps=5)
    assert dep.rates[:2] == [50.0, 3200.0]
    assert cap.capacity_rps > 50.0 and cap.capacity_rps in dep.rates, dep.rates
    assert cap.capacity_rps <= 1000.0
    # What it could not bracket in five steps, it says.
    if not cap.stable:
        assert any("not bracketed" in r for r in cap.unstable_reasons)


@pytest.mark.slow
def test_live_step_reports_stability(tmp_path: Path) -> None:
    import kops
    from stress._local import LocalDeployer

    model = kops.zoo.build("tiny_mlp", tmp_path / "tiny_mlp.onnx")
    spec = stress.DeploymentSpec(model_path=model, batch_size=8, cpu_cores=1, max_queue_delay_ms=1)
    with LocalDeployer(oversubscribe=True, max_windows=8).deploy(spec) as dep:
        r = dep.open_loop(100, 3.0, warmup_s=0.5)
    d = r.to_dict()
    # 0.5 s windows of 50 requests at 100 req/s: 6 for the 3 s asked, up to 8 while unstable.
    assert 6 <= len(d["windows"]) <= 8 and d["windows"][-1]["sent"] == 50
    kinds = {"aborted", "windows", "late", "generator", "starved", "interference"}
    assert set(r.extra["reason_kinds"]) <= kinds
    assert math.isfinite(r.throughput_spread) and math.isfinite(r.latency_spread)
    assert 0.0 <= r.late_send_share <= 1.0 and r.generator_cpu_headroom is not None
    assert r.stable == (not r.unstable_reasons)
    if Path("/proc/stat").exists():
        assert d["interference"]["busy_share"] is not None
    # On a quiet machine with room for the generator the measurement is stable; on a busy one
    # it says why not.
    assert r.stable or all(isinstance(x, str) and x for x in r.unstable_reasons)


class _Late(Scripted):
    """Steps whose only flaw is the generator's lateness (no starvation, no other processes);
    ``p99_send_ms`` is the failing steps' p99 timed from the actual send."""

    def __init__(self, mu, p99_send_ms, kinds=("late",)) -> None:
        super().__init__(mu)
        self.p99_send_ms, self.kinds = p99_send_ms, list(kinds)

    def open_loop(self, rate_rps, duration_s, warmup_s=1.0, abort_p99_ms=None):
        r = super().open_loop(rate_rps, duration_s, warmup_s, abort_p99_ms)
        r.stable, r.extra["disturbed"] = False, True
        r.unstable_reasons = [f"a {k} reason" for k in self.kinds]
        r.extra["reason_kinds"] = (["aborted"] if r.aborted_early else []) + self.kinds
        r.extra["p99_from_send_ms"] = self.base_ms if rate_rps <= self.mu else self.p99_send_ms
        return r


def test_lateness_alone_neither_repeats_a_pass_nor_flags_the_capacity() -> None:
    """A pass despite the generator's lag passes without it; a failure that holds without the
    lag (p99 from the actual send over the SLO) is the server's."""
    dep = _Late(1000.0, p99_send_ms=400.0)
    cap = capacity_search(dep, 50.0, max_steps=5)
    assert cap.remeasured == 0 and cap.stable and not cap.generator_limited, cap.unstable_reasons
    assert 900 <= cap.capacity_rps <= 1000


def test_a_failure_only_the_generators_lag_explains_is_generator_limited() -> None:
    dep = _Late(1000.0, p99_send_ms=20.0)  # without the lag, the failing steps met the SLO
    cap = capacity_search(dep, 50.0, max_steps=5)
    assert cap.generator_limited and cap.to_dict()["generator_limited"] is True
    # Such a failure is measured again (its lag may pass); one that holds without it is not.
    late = dep.open_loop(2000.0, 1.0, abort_p99_ms=50.0)
    assert needs_remeasure(late, passed=False, probe=False, slo_p99_ms=50.0)
    late.extra["p99_from_send_ms"] = 400.0
    assert not needs_remeasure(late, passed=False, probe=False, slo_p99_ms=50.0)


def test_a_starved_generator_still_flags_the_capacity() -> None:
    dep = _Late(1000.0, p99_send_ms=20.0, kinds=("late", "starved"))
    cap = capacity_search(dep, 50.0, max_steps=5)
    assert not cap.stable and not cap.generator_limited
    assert any("was not stable" in r for r in cap.unstable_reasons)


def test_a_probe_the_generator_itself_limited_bounds_the_bracket() -> None:
    """One generator process filling its core serves ~2,000 of a 3,200 req/s probe: that rate
    bounds what can be measured here, so the bisection stays below it (it went above it, and
    every step failed on the generator)."""
    r = stress.LoadResult(
        target_rps=3200.0, duration_s=1.5, sent=3000, completed=2900, errors=0,
        throughput_rps=1900.0, p50_ms=200.0, p95_ms=300.0, p99_ms=350.0, max_ms=400.0,
        error_rate=0.0, generator_saturated=True, stable=False,
        extra={"offered_rps": 3200.0, "generator_cpu_share": 0.97, "reason_kinds": ["generator"]},
    )  # fmt: skip
    assert saturated_rps(r) == 1900.0
    r.extra["reason_kinds"] = ["generator", "interference"]  # other processes on the cores
    assert saturated_rps(r) is None
