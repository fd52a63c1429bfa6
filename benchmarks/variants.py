"""Model variants side by side: each precision's accuracy drop against FP32 and its live capacity
per dollar on the local backend, for a few ``kops.zoo`` models.

For each model, :func:`autoconf._variants.check_variants` builds the FP16 and INT8 variants
(cached, ONNX Runtime's tools) and measures their drop on generated sample inputs (top-1
agreement for class logits, else relative error); then one config (``--batch-size``, 1 replica,
1 core, queue delay 2 ms, ``cpu-local`` prices) of every variant that could be built is measured
live by the ``local`` backend, as a search would (a fresh deployment, a capacity search under
``--slo-p99-ms``), plus ONNX Runtime's own median time for one row in this process (one thread).
A variant over ``--max-accuracy-drop`` is measured here anyway (marked): the point is to show
both columns side by side; a search would leave it out.

The machine may be shared: the load average at the start of each measurement is recorded.

Usage: ``python benchmarks/variants.py [--models tiny_mlp tiny_cnn bert_like] [--out
results/variants]`` writes ``variants.json`` and ``variants.md`` there.
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
from typing import Any

import numpy as np

import kops
from autoconf import _variants
from autoconf._space import load_space
from autoconf._types import Config, Load
from autoconf.backends import get_backend

PRECISIONS = ["fp32", "fp16", "int8"]
#: Symbolic dims the zoo models are measured at (the token models' sequence kept short).
DIMS = {"batch": 1, "sequence": 32}


def _load() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def _num(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and math.isfinite(x) else None


def ort_ms(path: Path, feed: dict[str, np.ndarray], repeats: int = 200) -> float:
    """ONNX Runtime's median time (ms) for one row of ``path``, one thread, in this process."""
    session = _variants._session(path)
    for _ in range(10):
        session.run(None, feed)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        session.run(None, feed)
        times.append((time.perf_counter() - t) * 1000.0)
    return float(np.median(times))


def _dims(model: Path) -> dict[str, int]:
    names = kops.symbolic_dims(model)
    return {k: v for k, v in DIMS.items() if k in names}


def one_model(name: str, folder: Path, args: argparse.Namespace) -> list[dict]:
    """Every variant of zoo model ``name``: accuracy, kops profile, and live capacity."""
    model = kops.zoo.build(name, folder / f"{name}.onnx")
    dims = _dims(model)
    samples = _variants.generated_samples(model, dims, n=args.samples)
    checked = _variants.check_variants(model, PRECISIONS, max_drop=1.0, samples=samples, dims=dims)
    space = _variants.with_precisions(load_space(None), PRECISIONS)
    load = Load(slo_p99_ms=args.slo_p99_ms, duration_s=args.step_s * 2)
    one_row = {k: a[:1] for k, a in samples.items()}
    profile = kops.profile(model, dims)
    rows = []
    options = {"dims": dims, "oversubscribe": True, "warmup_s": 1.0, "unstable_retries": 0}
    with get_backend("local", space, max_steps=args.max_steps, **options) as backend:
        backend.model_variants = {p: v.path for p, v in checked.items() if v.path is not None}
        for p in PRECISIONS:
            v = checked[p]
            row: dict[str, Any] = {"model": name, "precision": p, "dims": dims}
            if v.accuracy is None:
                row["error"] = v.reason
                rows.append(row)
                print(f"{name} {p}: {v.reason}", flush=True)
                continue
            drop = v.accuracy.drop
            row["accuracy"] = {**v.accuracy.to_dict(), "within_bound": drop <= args.bound}
            assert v.path is not None
            vp = kops.profile(v.path, dims)
            row["kops"] = {
                "flops": vp.total_flops,
                "param_bytes": vp.param_bytes,
                "unknown_ops": dict(vp.unknown_ops),
                "file_bytes": v.path.stat().st_size,
            }
            row["ort_ms_one_row"] = round(ort_ms(v.path, one_row), 4)
            config = Config(
                batch_size=args.batch_size,
                gpu_type="cpu",
                replicas=1,
                cpu_cores=1,
                max_queue_delay_ms=2,
                precision=p,
            )
            row["load_avg_start"] = _load()
            started = time.monotonic()
            m = backend.evaluate(profile, config, load)
            row["seconds"] = round(time.monotonic() - started, 1)
            row["config"] = config.key()
            row["cost_per_hour"] = m.cost_per_hour
            row["ok"] = m.ok
            row["error"] = m.error
            row["capacity_rps"] = _num(m.capacity_rps)
            row["p99_ms"] = _num(m.p99_ms)
            row["capacity_per_dollar"] = _num(m.rps_per_cost) if m.ok else None
            row["stable"] = m.stable
            row["unstable_reasons"] = list(m.unstable_reasons)
            rows.append(row)
            print(
                f"{name} {p}: drop {drop:.4f} ({v.accuracy.metric}), capacity "
                f"{row['capacity_rps']} req/s, ort {row['ort_ms_one_row']} ms, load "
                f"{row['load_avg_start']}",
                flush=True,
            )
    return rows


def run(args: argparse.Namespace) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="variants-bench-"))
    started = time.monotonic()
    load0 = _load()
    rows = [r for name in args.models for r in one_model(name, folder, args)]
    return {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {"cores": len(os.sched_getaffinity(0)), "platform": platform.platform()},
        "slo_p99_ms": args.slo_p99_ms,
        "bound": args.bound,
        "samples": args.samples,
        "load_avg_start": load0,
        "load_avg_end": _load(),
        "seconds": round(time.monotonic() - started, 1),
        "rows": rows,
    }


def _f(x: float | None, fmt: str = ",.1f") -> str:
    return "-" if x is None else format(x, fmt)


def markdown(res: dict) -> str:
    la = "/".join(f"{x:.1f}" for x in res["load_avg_start"])
    lb = "/".join(f"{x:.1f}" for x in res["load_avg_end"])
    lines = [
        "# Model variants: accuracy drop and capacity per dollar (`benchmarks/variants.py`)",
        "",
        f"Command: `{res['command']}`  ",
        f"{res['machine']['cores']} cores ({res['machine']['platform']}), shared with other "
        f"agents' work while it ran: load average {la} at the start, {lb} at the end (1/5/15 "
        "min); one measurement per cell (an unstable one is not measured again, its flag is "
        "shown), so read capacities as +-20% or worse.  ",
        f"Accuracy: against FP32 on {res['samples']} generated samples (random weights, random "
        f"inputs); bound {res['bound'] * 100:g}%. Capacity: highest rate with p99 <= "
        f"{res['slo_p99_ms']:g} ms on the local backend (1 replica, 1 core); per dollar at "
        "`cpu-local` prices.",
        "",
        "| model | precision | accuracy drop (metric) | within bound | capacity req/s | "
        "req/s per $/h | ORT ms/row | file KiB | load avg at start | stable |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in res["rows"]:
        acc = r.get("accuracy")
        if acc is None:
            lines.append(f"| {r['model']} | {r['precision']} | infeasible: {r['error']} |||||||")
            continue
        metric = "top-1" if acc["metric"] == _variants.TOP1 else "rel. error"
        cap = r["capacity_rps"] if r["ok"] else None
        lines.append(
            f"| {r['model']} | {r['precision']} | {acc['drop'] * 100:.2f}% ({metric}) | "
            f"{'yes' if acc['within_bound'] else 'no'} | "
            f"{_f(cap, ',.0f') if r['ok'] else 'failed: ' + str(r['error'])} | "
            f"{_f(r['capacity_per_dollar'], ',.0f')} | {_f(r['ort_ms_one_row'], '.3f')} | "
            f"{r['kops']['file_bytes'] / 1024:,.0f} | "
            f"{'/'.join(f'{x:.1f}' for x in r['load_avg_start'])} | {r['stable']} |"
        )
    reasons = sorted({x for r in res["rows"] for x in r.get("unstable_reasons", [])})
    if reasons:
        lines += ["", "Why measurements were marked unstable:", ""]
        lines += [f"- {x}" for x in reasons]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["tiny_mlp", "tiny_cnn", "bert_like"])
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--slo-p99-ms", type=float, default=50.0)
    ap.add_argument("--bound", type=float, default=0.01, help="accuracy bound shown, a fraction")
    ap.add_argument("--samples", type=int, default=256)
    ap.add_argument("--step-s", type=float, default=2.0)
    ap.add_argument("--max-steps", type=int, default=5)
    ap.add_argument("--out", default="results/variants")
    ap.add_argument("--render", metavar="JSON", help="only re-write the .md of a variants.json")
    args = ap.parse_args()
    res = json.loads(Path(args.render).read_text()) if args.render else run(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not args.render:
        (out / "variants.json").write_text(json.dumps(res, indent=1))
    (out / "variants.md").write_text(markdown(res))
    print(markdown(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
