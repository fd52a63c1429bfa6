"""End-to-end tests of the local stress harness: real server processes, real Locust load.

Rates stay modest (20-60 requests/s for 2 s) because the machine is small and shared; the
assertions check what must hold under any load (counts, orderings, teardown), not speed.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import psutil
import pytest
from _terminal import default_sigint

import stress
from stress._local import LocalDeployer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """kops.zoo's tiny_mlp (input ``input`` [batch, 128] float32), exported once."""
    import kops

    return kops.zoo.build("tiny_mlp", tmp_path_factory.mktemp("stress") / "tiny_mlp.onnx")


def servers_of(model: Path) -> list[psutil.Process]:
    """Live server processes serving ``model`` (each test's model path is unique)."""
    out = []
    for p in psutil.process_iter(["cmdline", "status"]):
        cmd = p.info["cmdline"] or []
        if "stress.server" in cmd and str(model) in cmd and p.info["status"] != "zombie":
            out.append(p)
    return out


def assert_no_servers(model: Path) -> None:
    deadline = time.monotonic() + 5
    while servers_of(model) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert servers_of(model) == [], "a server process was left behind"


def _get(url: str) -> tuple[int, dict | None]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            body = r.read()
            return r.status, json.loads(body) if body else None
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def _post(url: str, body: dict) -> tuple[int, dict]:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_server_speaks_v2_and_matches_onnxruntime(tiny_model: Path) -> None:
    import onnxruntime as ort

    spec = stress.DeploymentSpec(model_path=tiny_model, model_name="tiny", batch_size=4)
    with LocalDeployer().deploy(spec) as dep:
        base = f"http://127.0.0.1:{dep.ports[0]}"
        assert _get(base + "/v2/health/live")[0] == 200
        assert _get(base + "/v2/health/ready")[0] == 200
        status, meta = _get(base + "/v2/models/tiny")
        assert status == 200 and meta["inputs"][0]["name"] == "input"
        assert meta["inputs"][0]["shape"] == [-1, 128] and meta["parameters"]["max_batch_size"] == 4
        x = np.random.default_rng(1).standard_normal((2, 128)).astype(np.float32)
        status, out = _post(
            base + "/v2/models/tiny/infer",
            {"inputs": [{"name": "input", "shape": [2, 128], "datatype": "FP32",
                         "data": x.reshape(-1).tolist()}]},
        )  # fmt: skip
        assert status == 200
        got = np.asarray(out["outputs"][0]["data"], np.float32).reshape(out["outputs"][0]["shape"])
        want = ort.InferenceSession(str(tiny_model)).run(None, {"input": x})[0]
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
        assert _post(base + "/v2/models/tiny/infer", {"inputs": []})[0] == 400
        assert _post(base + "/v2/models/other/infer", {"inputs": []})[0] == 404
        too_big = {"inputs": [{"name": "input", "shape": [5, 128], "datatype": "FP32",
                               "data": [0.0] * 640}]}  # fmt: skip
        assert _post(base + "/v2/models/tiny/infer", too_big)[0] == 400
    assert_no_servers(tiny_model)


def test_open_loop_over_two_replicas_batches_and_measures(tiny_model: Path) -> None:
    spec = stress.DeploymentSpec(
        model_path=tiny_model, batch_size=8, replicas=2, cpu_cores=1, max_queue_delay_ms=10
    )
    # Two replicas and the generator on a 2-core machine: cores shared, on purpose.
    with LocalDeployer(oversubscribe=True).deploy(spec) as dep:
        r = dep.open_loop(50, 2.0, warmup_s=0.5)
        metas = [_get(f"http://127.0.0.1:{p}/v2/models/model")[1] for p in dep.ports]
    assert_no_servers(tiny_model)
    # Poisson arrivals: 100 expected in the 2 s window; 5 sigma either way.
    assert 50 <= r.sent <= 150
    assert r.errors == 0 and r.error_rate == 0.0 and r.completed == r.sent
    assert 0 < r.p50_ms <= r.p95_ms <= r.p99_ms <= r.max_ms
    assert 25 <= r.throughput_rps <= 75
    assert r.inflight_cap_hits == 0
    assert r.generator_processes == 1 and r.extra["replicas"] == 2
    # Warm-up requests were sent but are not counted: the servers saw more rows than measured.
    rows = [m["parameters"]["batched_rows"] for m in metas]
    batches = [m["parameters"]["batches"] for m in metas]
    assert all(n > 0 for n in rows), "the load must reach every replica"
    assert sum(rows) > r.sent
    # With a 10 ms queue delay at 50 requests/s some requests share a batch.
    assert sum(batches) < sum(rows)


def test_server_never_ready_times_out_and_is_stopped(tiny_model: Path) -> None:
    spec = stress.DeploymentSpec(model_path=tiny_model, batch_size=1)
    # Not ready within the limit: the start-up is cut short and the process is stopped.
    with pytest.raises(stress.DeployError, match="not ready after"):
        LocalDeployer(ready_timeout_s=0.01).deploy(spec)
    assert_no_servers(tiny_model)


def test_port_in_use_is_a_clear_deploy_error(tiny_model: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        spec = stress.DeploymentSpec(model_path=tiny_model, replicas=2)
        with pytest.raises(stress.DeployError, match="in use"):
            LocalDeployer(ports=[port], oversubscribe=True).deploy(spec)
    assert_no_servers(tiny_model)


def test_crash_mid_test_stops_the_load_with_a_deploy_error(tiny_model: Path) -> None:
    spec = stress.DeploymentSpec(model_path=tiny_model, replicas=2)
    dep = LocalDeployer(oversubscribe=True).deploy(spec)
    victim = dep.procs[1].pid

    def oom_kill() -> None:  # what the kernel's OOM killer does: SIGKILL
        time.sleep(1.5)
        os.kill(victim, signal.SIGKILL)

    threading.Thread(target=oom_kill, daemon=True).start()
    started = time.monotonic()
    with (
        dep,
        pytest.raises(stress.DeployError, match="replica 1 .* died under test: killed by SIGKILL"),
    ):
        dep.open_loop(20, 10.0, warmup_s=0.0)
    assert time.monotonic() - started < 8, "the crash must stop the step, not wait it out"
    assert_no_servers(tiny_model)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_signals_to_the_parent_stop_every_server(tmp_path: Path, tiny_model: Path, sig) -> None:
    """SIGTERM and Ctrl-C tear down through the deployer's handlers; after SIGKILL (no handler
    runs) the servers stop themselves through PR_SET_PDEATHSIG."""
    model = tmp_path / "copy.onnx"
    model.write_bytes(tiny_model.read_bytes())
    script = textwrap.dedent(
        f"""
        import time, stress
        from pathlib import Path
        spec = stress.DeploymentSpec(model_path=Path({str(model)!r}), replicas=2)
        with stress.get_deployer("local", oversubscribe=True).deploy(spec):
            print("DEPLOYED", flush=True)
            time.sleep(60)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_sigint,
    )
    try:
        assert proc.stdout.readline().strip() == "DEPLOYED", proc.stderr.read()
        assert len(servers_of(model)) == 2
        proc.send_signal(sig)
        proc.wait(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    assert_no_servers(model)


def test_memory_limit_too_small_is_a_deploy_error(tiny_model: Path) -> None:
    """``memory_mb`` caps the server's address space; 64 MB cannot even load ONNX Runtime."""
    spec = stress.DeploymentSpec(model_path=tiny_model, memory_mb=64)
    with pytest.raises(stress.DeployError, match="replica 0 .* died before it was ready"):
        LocalDeployer(ready_timeout_s=30).deploy(spec)
    assert_no_servers(tiny_model)


def test_server_exits_promptly_on_sigterm_with_a_half_open_connection(tiny_model: Path) -> None:
    """What PR_SET_PDEATHSIG sends when the deployer dies: the server must not wait on a client
    (here a request cut off mid-body, as a killed load generator leaves it) before exiting."""
    from stress._local import free_port

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "stress.server", str(tiny_model), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert "ready" in proc.stdout.readline()
        with socket.create_connection(("127.0.0.1", port)) as half_open:
            half_open.sendall(
                b"POST /v2/models/model/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n{"
            )
            time.sleep(0.2)
            start = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=10)
        assert time.monotonic() - start < 5
    finally:
        proc.kill()
        proc.wait()


def test_cleanup_stops_this_deployers_live_deployments_of_a_study(tiny_model: Path) -> None:
    deployer, other = LocalDeployer(), LocalDeployer()
    mine = deployer.deploy(stress.DeploymentSpec(tiny_model, labels={"study": "s"}))
    theirs = other.deploy(stress.DeploymentSpec(tiny_model, labels={"study": "s"}))
    try:
        assert deployer.cleanup("another-study") == []
        assert deployer.cleanup("s") == ["model: 1 server process(es)"]
        assert all(p.poll() is not None for p in mine.procs)
        assert all(p.poll() is None for p in theirs.procs)  # another deployer's: left alone
    finally:
        theirs.teardown()
    assert_no_servers(tiny_model)
