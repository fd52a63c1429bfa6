"""A fast, honest test double for search tests: an M/M/1-like latency model per replica.

It stands in for a real backend where a test must control timing (interrupts, parallel workers,
a config that fails its re-measurement). It records every call so tests can prove that no
config is measured twice and none concurrently.
"""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path
from typing import Any

from autoconf import Config, Load, Measurement
from autoconf.backends import Backend


class QueueDouble(Backend):
    """p99 = base * sqrt(batch) / (1 - utilisation); capacity grows with replicas, cores and batch.

    Options: ``sleep_s`` per evaluation; ``interrupt_after`` raises KeyboardInterrupt on that
    evaluation (counted over all instances); the first ``fail_long_runs`` long runs (the
    re-measurements) fail; ``slowdown`` multiplies latency (a regressed deployment).
    """

    name = "queue-double"
    calls: list[tuple[Config, Load]] = []
    in_flight: set[Config] = set()
    overlaps: list[Config] = []
    closed = 0
    long_runs_failed = 0
    _lock = threading.Lock()

    @classmethod
    def reset(cls) -> None:
        cls.calls, cls.in_flight, cls.overlaps, cls.closed = [], set(), [], 0
        cls.long_runs_failed = 0

    def evaluate(self, profile: Any, config: Config, load: Load) -> Measurement:
        cls = type(self)
        with cls._lock:
            if config in cls.in_flight:
                cls.overlaps.append(config)
            cls.in_flight.add(config)
            cls.calls.append((config, load))
            n = len(cls.calls)
        try:
            if self.options.get("interrupt_after") == n:
                raise KeyboardInterrupt
            time.sleep(float(self.options.get("sleep_s", 0.0)))
            cost = self.space.cost_per_hour(config)
            if load.duration_s > 1.5 and cls.long_runs_failed < int(
                self.options.get("fail_long_runs", 0)
            ):
                cls.long_runs_failed += 1
                return Measurement.failed("crashed under the long run", cost)
            cap = config.replicas * config.cpu_cores * 30 * math.sqrt(config.batch_size)
            rps = load.target_rps or cap * 0.95
            util = min(rps / cap, 0.99)
            p99 = (
                float(self.options.get("slowdown", 1.0))
                * 5
                * math.sqrt(config.batch_size)
                / (1 - util)
            )
            return Measurement(
                ok=True,
                cost_per_hour=cost,
                throughput_rps=min(rps, cap),
                p50_ms=p99 / 3,
                p95_ms=p99 / 1.5,
                p99_ms=p99,
                capacity_rps=cap if load.target_rps is None else None,
            )
        finally:
            with cls._lock:
                cls.in_flight.discard(config)

    def close(self) -> None:
        type(self).closed += 1


class FakeProfile:
    """What search needs of a kops profile when the backend does not read it."""

    name = "fake"

    def features(self) -> None:
        return None

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name}


def install_queue_double(monkeypatch, tmp_path: Path) -> Path:
    """Register :class:`QueueDouble` as backend ``double`` and a :class:`FakeProfile` for every
    model; returns a model file the double never reads."""
    import autoconf._search as search
    import autoconf.backends as backends

    QueueDouble.reset()
    monkeypatch.setitem(backends.BACKENDS, "double", "search_doubles:QueueDouble")
    monkeypatch.setattr(search, "profile_model", lambda path, dims=None: FakeProfile())
    model = tmp_path / "model.onnx"
    model.write_bytes(b"not read by the double")
    return model
