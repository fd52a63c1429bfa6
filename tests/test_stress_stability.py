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
from stress._capacity import MAX_REMEASURES, capacity_search
from stress._interference import CpuSnapshot, interference
from stress._load import LATE_SEND_MS, merge_results
from stress._local import core_sets
from stress._stability import WindowStats, judge, quantile_ci, window_percentile, window_seconds


def _window(thr: float, lat_ms: float, n: int = 200, seed: int = 0) -> WindowStats:
    """A window whose latencies are lognormal around ``lat_ms`` (sigma 0.3)."""
    sample = np.sort(lat_ms * np.exp(np.random.default_rng(seed).normal(0.0, 0.3, n)))
    q = window_percentile([n])
    value, lo, hi = quantile_ci(sample, q)
    return WindowStats(0, 1, n, n, 0, thr, value, q, (lo, hi), float(np.median(sample)))


def test_windows_hold_enough_requests_and_the_percentile_fits_them() -> None:
    assert window_seconds(1000) == 1.0 and window_seconds(20) == pytest.approx(2.5)
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


def _raw(n: int, lag_ms: list[float] | None = None, **kw) -> dict:
    sched = np.linspace(1.0, 3.999, n).tolist()  # 1 s warm-up, then 3 windows of 1 s
    rec = {
        "sched_s": sched, "latency_ms": [2.0] * n, "service_ms": [2.0] * n, "ok": [1] * n,
        "done_s": [t + 0.002 for t in sched], "aborted": False, "schedule_end_s": 4.0,
        "cap_hits": 0, "censored": 0, "cpu_s": 0.3, "wall_s": 4.0, "send_lag_p50_ms": 0.3,
        "send_lag_p99_ms": 0.5, "send_lag_ms": lag_ms if lag_ms is not None else [0.3] * n,
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
    on_time = merge_results([_raw(300, [0.3] * 297 + [9.0] * 3)], 100.0, 3.0, 1.0)
    assert on_time.late_send_share == pytest.approx(0.01) and on_time.stable, on_time
    assert len(on_time.windows) == 3 and on_time.to_dict()["windows"][0]["sent"] == 100


def test_starved_generator_is_flagged() -> None:
    r = merge_results([_raw(300, cpu_s=3.9, wall_s=4.0)], 100.0, 3.0, 1.0)
    assert r.generator_cpu_headroom == pytest.approx(0.025)
    assert not r.stable and any("headroom" in x for x in r.unstable_reasons)


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
    with LocalDeployer(oversubscribe=True, max_windows=5).deploy(spec) as dep:
        r = dep.open_loop(100, 3.0, warmup_s=0.5)
    d = r.to_dict()
    assert 3 <= len(d["windows"]) <= 5 and d["windows"][-1]["sent"] == 100
    assert math.isfinite(r.throughput_spread) and math.isfinite(r.latency_spread)
    assert 0.0 <= r.late_send_share <= 1.0 and r.generator_cpu_headroom is not None
    assert r.stable == (not r.unstable_reasons)
    if Path("/proc/stat").exists():
        assert d["interference"]["busy_share"] is not None
    # On a quiet machine with room for the generator the measurement is stable; on a busy one
    # it says why not.
    assert r.stable or all(isinstance(x, str) and x for x in r.unstable_reasons)
