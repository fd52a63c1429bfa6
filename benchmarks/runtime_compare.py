"""The same configs on both local runtimes: the project's own server and Triton Inference Server.

For each config (``kops.zoo`` ``tiny_mlp``; ``--batch-sizes``, 1 replica, 1 core,
``max_queue_delay_ms=1``) and each runtime (``server``: :mod:`stress._server`; ``triton``:
:mod:`stress._triton`, ``nvidia-pytriton``), one fresh local deployment measures

- the capacity: highest rate with p99 <= ``--slo-p99-ms`` (``stress.capacity_search``);
- p50/p99 at a fixed ``--rate`` (open loop);
- the per-request overhead: p50 at a low ``--low-rate`` (requests arrive alone) minus ONNX
  Runtime's own median time for one row in this process (the model's compute).

Runtimes alternate within each config so drift in the machine's load hits both alike. The
machine may be shared: the load average at the start of each cell is recorded; read with it.

Usage: ``python benchmarks/runtime_compare.py [--batch-sizes 1 8] [--out results/stress]``
writes ``runtimes.json`` and ``runtimes.md`` there.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import stress
from stress._capacity import upper_bound
from stress._local import LocalDeployer
from stress._triton import unavailable_reason

RUNTIMES = ("server", "triton")


def _load() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def _num(x: float) -> float | None:
    return x if isinstance(x, (int, float)) and math.isfinite(x) else None


def ort_ms(model: Path, repeats: int = 300) -> float:
    """ONNX Runtime's median time (ms) for one row of ``model``, one thread, in this process."""
    from stress._server import make_session

    session = make_session(str(model), 1, "cpu")
    x = np.random.default_rng(0).standard_normal((1, 128)).astype(np.float32)
    for _ in range(20):
        session.run(None, {"input": x})
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        session.run(None, {"input": x})
        times.append((time.perf_counter() - t) * 1000.0)
    return float(np.median(times))


def one_cell(model: Path, runtime: str, batch_size: int, args: argparse.Namespace) -> dict:
    """Capacity, fixed-rate and low-rate figures of one config on one fresh deployment."""
    spec = stress.DeploymentSpec(
        model_path=model, batch_size=batch_size, replicas=1, cpu_cores=1, max_queue_delay_ms=1
    )
    load0 = _load()
    started = time.monotonic()
    with LocalDeployer(runtime=runtime, ready_timeout_s=120).deploy(spec) as dep:
        ready_s = time.monotonic() - started
        low = dep.open_loop(args.low_rate, args.step_s * 2, warmup_s=1.0)
        fixed = dep.open_loop(args.rate, args.step_s, warmup_s=1.0)
        cap = stress.capacity_search(
            dep, args.slo_p99_ms, max_steps=args.max_steps, duration_s=args.step_s
        )
    return {
        "runtime": runtime,
        "batch_size": batch_size,
        "ready_s": round(ready_s, 2),
        "load_avg_start": load0,
        "capacity_rps": cap.capacity_rps,
        "capacity_upper_rps": upper_bound(cap),
        "capacity_stable": cap.stable,
        "fixed": {
            "rate_rps": args.rate,
            "throughput_rps": fixed.throughput_rps,
            "p50_ms": _num(fixed.p50_ms),
            "p99_ms": _num(fixed.p99_ms),
            "errors": fixed.errors,
            "stable": fixed.stable,
        },
        "low": {
            "rate_rps": args.low_rate,
            "p50_ms": _num(low.p50_ms),
            "p99_ms": _num(low.p99_ms),
            "errors": low.errors,
            "stable": low.stable,
        },
        "unstable_reasons": sorted(
            {*cap.unstable_reasons, *fixed.unstable_reasons, *low.unstable_reasons}
        ),
        "seconds": round(time.monotonic() - started, 1),
    }


def run(args: argparse.Namespace) -> dict:
    import kops

    model = kops.zoo.build("tiny_mlp", Path(tempfile.mkdtemp()) / "tiny_mlp.onnx")
    compute_ms = ort_ms(model)
    reason = unavailable_reason()
    runtimes = [r for r in RUNTIMES if r != "triton" or not reason]
    cells = []
    for rep in range(args.repeats):
        for bs in args.batch_sizes:
            order = runtimes if rep % 2 == 0 else runtimes[::-1]
            for rt in order:
                cell = one_cell(model, rt, bs, args)
                cell["repeat"] = rep + 1
                p50 = cell["low"]["p50_ms"]
                cell["overhead_ms"] = None if p50 is None else round(p50 - compute_ms, 3)
                cells.append(cell)
                print(f"{rt} bs={bs}: capacity {cell['capacity_rps']:.0f} req/s, p99@"
                      f"{args.rate:g} {cell['fixed']['p99_ms']} ms, overhead "
                      f"{cell['overhead_ms']} ms, load {cell['load_avg_start']}", flush=True)  # fmt: skip
    return {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {"cores": len(os.sched_getaffinity(0)), "platform": platform.platform()},
        "model": "kops.zoo tiny_mlp (input [batch, 128] float32)",
        "config": "replicas=1, cpu_cores=1, max_queue_delay_ms=1",
        "slo_p99_ms": args.slo_p99_ms,
        "ort_compute_ms_one_row": round(compute_ms, 4),
        "triton_unavailable": reason,
        "load_avg_end": _load(),
        "cells": cells,
    }


def _f(x: float | None, fmt: str = ",.1f") -> str:
    return "-" if x is None else format(x, fmt)


def markdown(res: dict) -> str:
    lines = [
        "# Local runtimes side by side (`benchmarks/runtime_compare.py`)",
        "",
        f"Command: `{res['command']}`  ",
        f"Model: {res['model']}; {res['config']}; p99 SLO {res['slo_p99_ms']:g} ms; "
        f"{res['machine']['cores']} cores. ONNX Runtime alone: "
        f"{res['ort_compute_ms_one_row']:.3f} ms per row (overhead = p50 at the low rate minus "
        "this).  ",
        f"Load average at the end: {'/'.join(f'{x:.1f}' for x in res['load_avg_end'])}.",
    ]
    if res["triton_unavailable"]:
        lines.append(f"\nTriton not measured: {res['triton_unavailable']}.")
    lines += [
        "",
        "| runtime | batch | capacity req/s (upper) | p50 / p99 ms at fixed rate | p50 ms at low rate"
        " | overhead ms | start s | load avg (1/5/15) | stable (cap/fixed/low) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in res["cells"]:
        fx, lo = c["fixed"], c["low"]
        upper = f" ({c['capacity_upper_rps']:,.0f})" if c["capacity_upper_rps"] else ""
        lines.append(
            f"| {c['runtime']} | {c['batch_size']} | {c['capacity_rps']:,.0f}{upper} | "
            f"{_f(fx['p50_ms'], '.2f')} / {_f(fx['p99_ms'], '.2f')} at {fx['rate_rps']:g} | "
            f"{_f(lo['p50_ms'], '.2f')} at {lo['rate_rps']:g} | {_f(c['overhead_ms'], '.2f')} | "
            f"{c['ready_s']:.1f} | {'/'.join(f'{x:.1f}' for x in c['load_avg_start'])} | "
            f"{c['capacity_stable']}/{fx['stable']}/{lo['stable']} |"
        )
    reasons = sorted({r for c in res["cells"] for r in c["unstable_reasons"]})
    if reasons:
        lines += ["", "Why measurements were marked unstable:", ""]
        lines += [f"- {r}" for r in reasons]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--slo-p99-ms", type=float, default=50.0)
    ap.add_argument("--rate", type=float, default=100.0, help="the fixed rate, requests/s")
    ap.add_argument("--low-rate", type=float, default=10.0, help="the low rate, requests/s")
    ap.add_argument("--step-s", type=float, default=3.0)
    ap.add_argument("--max-steps", type=int, default=5)
    ap.add_argument("--out", default="results/stress")
    args = ap.parse_args()
    res = run(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "runtimes.json").write_text(json.dumps(res, indent=1))
    (out / "runtimes.md").write_text(markdown(res))
    print(markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
