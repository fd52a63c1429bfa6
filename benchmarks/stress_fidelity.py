"""Fidelity of the stress harness: is what it measures repeatable and right?

Three figures, written to ``results/stress/fidelity.{md,json}``:

1. **Repeatability**: the capacity (highest rate with p99 <= SLO) of one config measured
   ``--repeats`` times, each on a fresh deployment; coefficient of variation (target <= 5%).
2. **Generator ceiling**: requests/s one Locust generator process sustains on one core, driven
   at a trivial endpoint (a minimal aiohttp app on another core, so the server is not the
   bottleneck), with its CPU share and send lag per rate.
3. **Cross-check against wrk** (an independent C load tool, Debian package ``wrk``) on the same
   model server (a heavier MLP, batch size 1): latency of isolated requests (wrk with one
   connection and exponential think times at the same mean rate vs the harness's open loop at
   20 req/s; wrk back to back for reference) and the saturated throughput (wrk with 32
   connections vs the harness driven at 1.5x wrk's rate).

Usage: ``python benchmarks/stress_fidelity.py [--repeats 5] [--out results/stress]``
(needs ``wrk`` on PATH for part 3; it is skipped, and says so, without it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import psutil

import stress
from stress._capacity import upper_bound
from stress._load import input_signature, open_loop
from stress._local import LocalDeployer, free_port

TRIVIAL_SERVER = textwrap.dedent(
    """
    import socket, sys
    from aiohttp import web
    async def infer(request):
        await request.read()
        return web.Response(body=b'{"outputs":[]}', content_type="application/json")
    app = web.Application()
    app.router.add_post("/v2/models/{name}/infer", infer)
    sock = socket.socket(); sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", int(sys.argv[1]))); sock.listen(1024)
    web.run_app(app, sock=sock, access_log=None, print=None)
    """
)


def _cores() -> tuple[list[int], list[int]]:
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        return allowed, allowed
    return allowed[:1], allowed[1:2]


def _wait_port(port: int, timeout: float = 20.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"port {port} never opened")


def generator_ceiling(rates: list[float], duration_s: float) -> dict:
    """One generator process on one core against a trivial endpoint on another."""
    server_cores, gen_cores = _cores()
    port = free_port()
    srv = subprocess.Popen([sys.executable, "-c", TRIVIAL_SERVER, str(port)])
    try:
        os.sched_setaffinity(srv.pid, server_cores)
        _wait_port(port)
        sig = [{"name": "input", "dtype": "float32", "shape": ["batch", 128], "value_range": None}]
        url = f"http://127.0.0.1:{port}/v2/models/trivial/infer"
        rows = []
        for rate in rates:
            cpu0 = sum(psutil.Process(srv.pid).cpu_times()[:2])
            t0 = time.monotonic()
            r = open_loop([url], sig, rate, duration_s, 1.0, processes=1, cpu_affinity=gen_cores)
            server_share = (sum(psutil.Process(srv.pid).cpu_times()[:2]) - cpu0) / (
                time.monotonic() - t0
            )
            rows.append(
                {
                    "target_rps": rate,
                    "throughput_rps": r.throughput_rps,
                    "p99_ms": r.p99_ms,
                    "error_rate": r.error_rate,
                    "generator_cpu_share": r.extra["generator_cpu_share"],
                    "send_lag_p99_ms": r.extra["send_lag_p99_ms"],
                    "generator_saturated": r.generator_saturated,
                    "server_cpu_share_approx": server_share,
                }
            )
            print(f"  ceiling {rate:>6.0f}/s -> {json.dumps(rows[-1])}", flush=True)
            if r.generator_saturated or r.throughput_rps < 0.95 * rate:
                break
    finally:
        srv.terminate()
        srv.wait()
    sustained = [x for x in rows if not x["generator_saturated"] and x["error_rate"] == 0]
    best = max(sustained, key=lambda x: x["throughput_rps"]) if sustained else None
    return {
        "rows": rows,
        "sustained_rps": best["throughput_rps"] if best else None,
        "rps_per_core_at_sustained": (
            best["throughput_rps"] / max(best["generator_cpu_share"], 1e-9) if best else None
        ),
        "generator_cores": gen_cores,
        "server_cores": server_cores,
    }


def repeat_capacity(model: Path, spec_kw: dict, slo_ms: float, repeats: int, step_s: float) -> dict:
    runs = []
    for i in range(repeats):
        spec = stress.DeploymentSpec(model_path=model, **spec_kw)
        t0 = time.monotonic()
        with LocalDeployer().deploy(spec) as dep:
            cap = stress.capacity_search(dep, slo_ms, max_steps=5, duration_s=step_s)
        runs.append(
            {
                "capacity_rps": cap.capacity_rps,
                "upper_rps": upper_bound(cap),
                "p99_at_capacity_ms": cap.at_capacity.p99_ms if cap.at_capacity else None,
                "steps": [
                    [round(s.target_rps, 1), round(s.p99_ms, 2), s.extra.get("passed")]
                    for s in cap.steps
                ],
                "wall_s": time.monotonic() - t0,
                "loadavg_1m": os.getloadavg()[0],
            }
        )
        print(f"  capacity run {i + 1}: {json.dumps(runs[-1])}", flush=True)
    caps = np.asarray([r["capacity_rps"] for r in runs])
    return {
        "runs": runs,
        "mean_rps": float(caps.mean()),
        "std_rps": float(caps.std(ddof=1)) if len(caps) > 1 else 0.0,
        "cv": float(caps.std(ddof=1) / caps.mean()) if len(caps) > 1 and caps.mean() else None,
    }


_UNIT_MS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def _wrk(
    url: str,
    body: bytes,
    connections: int,
    duration_s: float,
    cores: list[int],
    mean_gap_ms: float | None = None,
) -> dict:
    """wrk's figures; with ``mean_gap_ms`` each connection waits an exponential think time
    before every request (wrk's ``delay()`` hook), so requests meet an idle server."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(
            'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
            f"wrk.body = {json.dumps(body.decode())}\n"
        )
        if mean_gap_ms:
            fh.write(
                "function delay()\n"
                f"  return math.floor(-math.log(1 - math.random()) * {mean_gap_ms})\n"
                "end\n"
            )
        script = fh.name
    cmd = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{int(duration_s)}s",
        "--latency",
        "-s",
        script,
        url,
    ]
    out = subprocess.run(
        ["taskset", "-c", ",".join(map(str, cores)), *cmd], capture_output=True, text=True
    ).stdout
    os.unlink(script)
    pct = {}
    for q, v, unit in re.findall(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M):
        pct[f"p{q}_ms"] = float(v) * _UNIT_MS[unit]
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "connections": connections,
        "rps": rps,
        **pct,
        "non_2xx": int(errors.group(1)) if errors else 0,
    }


def _one_body(signature: list[dict]) -> bytes:
    """One request body exactly as the generator builds them (in a child process: the
    locustfile gevent-patches whoever imports it)."""
    code = (
        "import json, sys; from stress._locustfile import make_bodies; "
        "sys.stdout.write(make_bodies(json.loads(sys.argv[1]), {}, 0, 1)[0].decode())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps(signature)], capture_output=True, check=True
    )
    return out.stdout


def cross_check(model: Path, spec_kw: dict, duration_s: float, light_rps: float) -> dict:
    if not shutil.which("wrk"):
        return {"skipped": "wrk not on PATH (apt-get install -y wrk)"}
    spec = stress.DeploymentSpec(model_path=model, **spec_kw)
    with LocalDeployer().deploy(spec) as dep:
        url = dep.endpoints[0]
        body = _one_body(input_signature(model))
        gen = dep.generator_cores
        light_wrk = _wrk(url, body, 1, duration_s, gen, mean_gap_ms=1000.0 / light_rps)
        hot_wrk = _wrk(url, body, 1, duration_s, gen)
        light = dep.open_loop(light_rps, duration_s, 1.0)
        sat_wrk = _wrk(url, body, 32, duration_s, gen)
        over = dep.open_loop(sat_wrk["rps"] * 1.5, duration_s, 1.0)
    return {
        "light": {
            "wrk_1_connection_think_time": light_wrk,
            "wrk_1_connection_back_to_back": hot_wrk,
            "harness_open_loop": {
                "rate_rps": light_rps,
                "p50_ms": light.p50_ms,
                "p99_ms": light.p99_ms,
                "service_p50_ms": light.extra["service_p50_ms"],
                "service_p99_ms": light.extra["service_p99_ms"],
            },
        },
        "saturated": {
            "wrk_32_connections": sat_wrk,
            "harness_open_loop": {
                "rate_rps": over.target_rps,
                "throughput_rps": over.throughput_rps,
                "error_rate": over.error_rate,
                "generator_saturated": over.generator_saturated,
                "generator_processes": over.generator_processes,
            },
        },
    }


def _repeat_table(title: str, rep: dict) -> list[str]:
    lines = [
        "",
        f"## {title}",
        "",
        "| run | capacity (req/s) | lowest failing rate above | p99 at capacity (ms) "
        "| steps (rate, p99 ms, passed) | load avg |",
        "|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(rep["runs"], 1):
        p99 = f"{r['p99_at_capacity_ms']:.2f}" if r["p99_at_capacity_ms"] else "-"
        lines.append(
            f"| {i} | {r['capacity_rps']:.1f} | {r['upper_rps'] or '-'} | {p99} | {r['steps']} "
            f"| {r['loadavg_1m']:.2f} |"
        )
    cv = rep["cv"]
    lines += [
        "",
        f"Mean {rep['mean_rps']:.1f} req/s, std {rep['std_rps']:.1f}, "
        f"**coefficient of variation {cv * 100:.1f}%** (target <= 5%: "
        f"{'met' if cv is not None and cv <= 0.05 else 'NOT met'}).",
        "",
    ]
    return lines


def _markdown(res: dict) -> str:
    rep, gen, xc = res["repeatability"], res["generator"], res["cross_check"]
    lines = [
        "# Stress harness fidelity",
        "",
        f"Command: `{res['command']}`  ",
        f"Machine: {res['machine']}; load average (1 min) before {res['loadavg_before']:.2f}, "
        f"after {res['loadavg_after']:.2f} (the machine is shared; other work ran).  ",
        f"Model: kops.zoo `tiny_mlp`; config {res['config']}; SLO p99 <= {res['slo_p99_ms']} ms.",
    ]
    lines += _repeat_table("1. Capacity measured repeatedly (fresh deployment each time)", rep)
    if "repeatability_server_bound" in res:
        sb = res["repeatability_server_bound"]
        lines += _repeat_table(
            f"1b. The same for a server-bound config ({sb['model']}, {sb['config']})", sb
        )
    lines += [
        "## 2. Load generator ceiling (one Locust process, one core, trivial endpoint)",
        "",
        "| target req/s | served req/s | generator CPU share | send lag p99 (ms) | saturated | "
        "server CPU share |",
        "|---|---|---|---|---|---|",
    ]
    for r in gen["rows"]:
        lines.append(
            f"| {r['target_rps']:.0f} | {r['throughput_rps']:.0f} | {r['generator_cpu_share']:.2f} "
            f"| {r['send_lag_p99_ms']:.2f} | {r['generator_saturated']} "
            f"| {r['server_cpu_share_approx']:.2f} |"
        )
    if gen["sustained_rps"]:
        lines += [
            "",
            f"Highest rate sustained without saturating: **{gen['sustained_rps']:.0f} req/s**, "
            f"i.e. **{gen['rps_per_core_at_sustained']:.0f} req/s per core of generator CPU** "
            "(served rate / the generator's CPU share at that rate).",
        ]
    lines += ["", "## 3. Cross-check against wrk on the same server", ""]
    if "config" in xc:
        lines += [
            f"Model {xc.get('model')}, config {xc['config']} (server-bound when saturated); "
            "wrk and the harness's generators pinned to the same core.",
            "",
        ]
    if "skipped" in xc:
        lines.append(f"Skipped: {xc['skipped']}")
    else:
        lw, lh = xc["light"]["wrk_1_connection_think_time"], xc["light"]["harness_open_loop"]
        hw = xc["light"]["wrk_1_connection_back_to_back"]
        sw, sh = xc["saturated"]["wrk_32_connections"], xc["saturated"]["harness_open_loop"]
        lines += [
            "| measurement | wrk | harness |",
            "|---|---|---|",
            f"| isolated requests, p50 (ms) | {lw['p50_ms']:.2f} (1 connection, exponential "
            f"think time, {lw['rps']:.0f} req/s) | "
            f"{lh['p50_ms']:.2f} (open loop {lh['rate_rps']:.0f} req/s; service time "
            f"{lh['service_p50_ms']:.2f}) |",
            f"| isolated requests, p99 (ms) | {lw['p99_ms']:.2f} | {lh['p99_ms']:.2f} (service "
            f"{lh['service_p99_ms']:.2f}) |",
            f"| back-to-back requests, p50 / p99 (ms) | {hw['p50_ms']:.2f} / {hw['p99_ms']:.2f} "
            f"(1 connection, {hw['rps']:.0f} req/s) | - (open loop) |",
            f"| saturated throughput (req/s) | {sw['rps']:.0f} (32 connections) | "
            f"{sh['throughput_rps']:.0f} (open loop at {sh['rate_rps']:.0f} req/s, "
            f"{sh['generator_processes']} generator processes, generator saturated: "
            f"{sh['generator_saturated']}) |",
        ]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--step-s", type=float, default=5.0, help="measured seconds per load step")
    ap.add_argument("--slo-p99-ms", type=float, default=20.0)
    ap.add_argument("--ceiling-rates", default="250,500,1000,1500,2000,3000,4000")
    ap.add_argument("--out", default="results/stress")
    args = ap.parse_args()
    import kops

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = kops.zoo.build("tiny_mlp", Path(tempfile.mkdtemp()) / "tiny_mlp.onnx")
    spec_kw = {"batch_size": 8, "replicas": 1, "cpu_cores": 1.0, "max_queue_delay_ms": 2.0}
    res = {
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "config": ",".join(f"{k}={v}" for k, v in spec_kw.items()),
        "slo_p99_ms": args.slo_p99_ms,
        "loadavg_before": os.getloadavg()[0],
    }
    print("repeatability:", flush=True)
    res["repeatability"] = repeat_capacity(
        model, spec_kw, args.slo_p99_ms, args.repeats, args.step_s
    )
    # The same measurement where the server, not the 2-core machine's generator and OS, is the
    # bottleneck: a few ms of work per request at batch 1 (the cross-check's model and config).
    heavy = kops.zoo.build("tiny_mlp", model.parent / "mlp_h4096.onnx", hidden=4096)
    bound_kw = {**spec_kw, "batch_size": 1, "max_queue_delay_ms": 0.0}
    print("repeatability, server-bound:", flush=True)
    res["repeatability_server_bound"] = repeat_capacity(
        heavy, bound_kw, args.slo_p99_ms, args.repeats, args.step_s
    )
    res["repeatability_server_bound"]["model"] = "tiny_mlp hidden=4096"
    res["repeatability_server_bound"]["config"] = ",".join(f"{k}={v}" for k, v in bound_kw.items())
    print("generator ceiling:", flush=True)
    rates = [float(x) for x in args.ceiling_rates.split(",")]
    res["generator"] = generator_ceiling(rates, args.step_s)
    print("cross-check:", flush=True)
    light = 20.0
    # Batch size 1 here: no batching delay in isolated requests, and a server-bound saturation
    # point (~1 ms of work per request) below the generator's ceiling.
    cross_kw = bound_kw
    res["cross_check"] = cross_check(heavy, cross_kw, args.step_s, light)
    res["cross_check"]["model"] = "kops.zoo tiny_mlp with hidden=4096 (a few ms per request)"
    res["cross_check"]["config"] = ",".join(f"{k}={v}" for k, v in cross_kw.items())
    res["loadavg_after"] = os.getloadavg()[0]
    (out / "fidelity.json").write_text(json.dumps(res, indent=2, default=float))
    (out / "fidelity.md").write_text(_markdown(res))
    print(_markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
