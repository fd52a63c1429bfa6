"""What else takes the cores a measurement runs on: CPU steal, other processes, the load average.

:class:`CpuSnapshot` reads ``/proc/stat`` (per core), ``/proc/loadavg`` and the CPU times of the
processes under test (``/proc/PID/stat``); :func:`interference` compares two snapshots. With the
server replicas pinned to known cores (local deployments), the CPU those cores spent on anything
but the servers is other processes' load on the measured cores, which is exactly what makes a
fresh deployment of one config serve less. Where ``/proc`` is absent (not Linux) every figure is
``None`` and nothing is flagged from it.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

#: CPU steal above this share of the measured cores' time marks a measurement (a busy host).
MAX_STEAL_SHARE = 0.05
#: Other processes using more than this share of the server replicas' cores mark it.
MAX_FOREIGN_SHARE = 0.25
#: The load generator is starved below this share of CPU left to it.
MIN_GENERATOR_HEADROOM = 0.10


@dataclass
class CpuSnapshot:
    """Cumulative CPU counters at one instant (clock ticks)."""

    t: float
    busy: dict[int, int] = field(default_factory=dict)  # per core: user+nice+system+irq+softirq
    steal: dict[int, int] = field(default_factory=dict)
    total: dict[int, int] = field(default_factory=dict)
    pid_ticks: dict[int, int] = field(default_factory=dict)  # utime+stime per watched process
    load_1m: float | None = None

    @classmethod
    def take(cls, pids: list[int] | None = None) -> CpuSnapshot:
        snap = cls(t=time.monotonic())
        try:
            with open("/proc/stat") as fh:
                for line in fh:
                    if not line.startswith("cpu") or line.startswith("cpu "):
                        continue
                    name, *vals = line.split()
                    v = [int(x) for x in vals[:8]] + [0] * max(0, 8 - len(vals))
                    core = int(name[3:])
                    user, nice, system, idle, iowait, irq, softirq, steal = v[:8]
                    snap.busy[core] = user + nice + system + irq + softirq
                    snap.steal[core] = steal
                    snap.total[core] = user + nice + system + idle + iowait + irq + softirq + steal
            with open("/proc/loadavg") as fh:
                snap.load_1m = float(fh.read().split()[0])
        except (OSError, ValueError):
            return cls(t=snap.t)
        for pid in pids or []:
            ticks = _pid_ticks(pid)
            if ticks is not None:
                snap.pid_ticks[pid] = ticks
        return snap


def _pid_ticks(pid: int) -> int | None:
    """utime + stime of a process (all its threads), or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return None


@dataclass
class Interference:
    """Between two snapshots: shares of the cores' time, and other processes' use in cores."""

    steal_share: float | None
    busy_share: float | None  # all cores
    foreign_server_share: float | None  # others' CPU on the server cores / those cores' time
    server_cores: int
    idle_share_generator_cores: float | None
    load_1m_start: float | None
    load_1m_end: float | None

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    def reasons(self) -> list[str]:
        """Why the cores were not the measurement's alone (empty when they were)."""
        out = []
        if self.steal_share is not None and self.steal_share > MAX_STEAL_SHARE:
            out.append(f"CPU steal {self.steal_share:.0%} of the measured cores (> 5 %)")
        if self.foreign_server_share is not None and self.foreign_server_share > MAX_FOREIGN_SHARE:
            out.append(
                f"other processes took {self.foreign_server_share:.0%} of the server's "
                f"{self.server_cores} core(s) (> {MAX_FOREIGN_SHARE:.0%})"
            )
        return out


def interference(
    a: CpuSnapshot,
    b: CpuSnapshot,
    server_cores: list[int] | None = None,
    server_pids: list[int] | None = None,
    generator_cores: list[int] | None = None,
) -> Interference:
    """Compare snapshots ``a`` (earlier) and ``b``. Server CPU is attributed to ``server_cores``
    only when the servers are pinned there (else ``foreign_server_share`` is ``None``)."""
    cores = sorted(set(a.total) & set(b.total))
    if not cores:
        return Interference(None, None, None, len(server_cores or []), None, a.load_1m, b.load_1m)

    def d(kind: dict[int, int], b_kind: dict[int, int], subset: list[int]) -> int:
        return sum(b_kind[c] - kind[c] for c in subset if c in kind and c in b_kind)

    total = d(a.total, b.total, cores)
    measured = sorted(set(server_cores or []) | set(generator_cores or [])) or cores
    m_total = d(a.total, b.total, measured)
    steal = d(a.steal, b.steal, measured) / m_total if m_total > 0 else None
    busy = d(a.busy, b.busy, cores) / total if total > 0 else None
    foreign = None
    if server_cores and server_pids:
        s_total = d(a.total, b.total, server_cores)
        s_busy = d(a.busy, b.busy, server_cores)
        ours = sum(
            b.pid_ticks[p] - a.pid_ticks[p]
            for p in server_pids
            if p in a.pid_ticks and p in b.pid_ticks
        )
        if s_total > 0:
            foreign = max(0.0, (s_busy - ours) / s_total)
    idle_gen = None
    gen = [c for c in (generator_cores or cores) if c in a.total]
    g_total = d(a.total, b.total, gen)
    if g_total > 0:
        g_busy = d(a.busy, b.busy, gen) + d(a.steal, b.steal, gen)
        idle_gen = max(0.0, 1.0 - g_busy / g_total)
    return Interference(
        steal_share=steal,
        busy_share=busy,
        foreign_server_share=foreign,
        server_cores=len(server_cores or []),
        idle_share_generator_cores=idle_gen,
        load_1m_start=a.load_1m,
        load_1m_end=b.load_1m,
    )


def usable_cores() -> list[int]:
    """The cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))
