"""The local ``triton`` runtime: real Triton Inference Server (``nvidia-pytriton``), real load.

The live test skips, with the reason, where ``nvidia-pytriton`` is not installed or cannot run
(``pip install 'autoconf[triton]'``). Rates stay modest: the machine is small and shared.
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
from pathlib import Path

import numpy as np
import psutil
import pytest

import stress
from stress import _triton
from stress._local import LocalDeployer


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """kops.zoo's tiny_mlp (input ``input`` [batch, 128] float32), exported once."""
    import kops

    return kops.zoo.build("tiny_mlp", tmp_path_factory.mktemp("triton") / "tiny_mlp.onnx")


def _group(pgid: int) -> list[psutil.Process]:
    """Live (not zombie) processes of process group ``pgid``."""
    out = []
    for p in psutil.process_iter(["status"]):
        try:
            if os.getpgid(p.pid) == pgid and p.info["status"] != psutil.STATUS_ZOMBIE:
                out.append(p)
        except (ProcessLookupError, psutil.Error):
            continue
    return out


def _post(url: str, body: dict) -> dict:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def test_unknown_runtime_is_one_line() -> None:
    with pytest.raises(stress.StressError, match="unknown local runtime 'trtion'"):
        LocalDeployer(runtime="trtion")


def test_triton_unavailable_is_a_deploy_error(tiny_model: Path, monkeypatch) -> None:
    monkeypatch.setattr(_triton, "unavailable_reason", lambda: "no tritonserver here")
    spec = stress.DeploymentSpec(model_path=tiny_model, model_name="tiny")
    with pytest.raises(stress.DeployError, match="^no tritonserver here$"):
        LocalDeployer(runtime="triton").deploy(spec)


def test_triton_env_puts_this_interpreters_libdir_first() -> None:
    import sysconfig

    env = _triton.triton_env({"LD_LIBRARY_PATH": "/usr/lib/x86_64-linux-gnu"})
    libdir = sysconfig.get_config_var("LIBDIR")
    assert env["LD_LIBRARY_PATH"].split(os.pathsep) == [libdir, "/usr/lib/x86_64-linux-gnu"]


@pytest.mark.slow
def test_triton_serves_correct_outputs_and_leaves_nothing(tiny_model: Path) -> None:
    reason = _triton.unavailable_reason()
    if reason:
        pytest.skip(reason)
    import onnxruntime as ort

    spec = stress.DeploymentSpec(
        model_path=tiny_model, model_name="tiny", batch_size=8, max_queue_delay_ms=1.5
    )
    dep = LocalDeployer(runtime="triton", ready_timeout_s=120).deploy(spec)
    try:
        pgid = dep.procs[0].pid
        group = _group(pgid)
        assert any(p.name() == "tritonserver" for p in group), [p.name() for p in group]
        base = f"http://127.0.0.1:{dep.ports[0]}/v2/models/tiny"

        # Triton's batcher and instance group hold the manifests' values.
        with urllib.request.urlopen(base + "/config", timeout=10) as r:
            config = json.loads(r.read())
        settings = stress._manifests.triton_model_settings(spec)
        assert config["max_batch_size"] == settings.max_batch_size == 8
        assert config["dynamic_batching"]["max_queue_delay_microseconds"] == 1500
        assert [g["count"] for g in config["instance_group"]] == [settings.instance_count]

        # The answer to a fixed input is ONNX Runtime's own.
        x = np.linspace(-1.0, 1.0, 128, dtype=np.float32).reshape(1, 128)
        body = {"inputs": [{"name": "input", "shape": [1, 128], "datatype": "FP32", "data": x.ravel().tolist()}]}  # fmt: skip
        out = _post(base + "/infer", body)["outputs"][0]
        want = ort.InferenceSession(str(tiny_model)).run(None, {"input": x})[0]
        assert out["shape"] == list(want.shape)
        np.testing.assert_allclose(np.asarray(out["data"], dtype=np.float32), want.ravel(), rtol=1e-5, atol=1e-6)  # fmt: skip

        # The load generator's requests are served (KServe v2 HTTP/JSON, as in the manifests).
        r = dep.open_loop(30, 2.0, warmup_s=0.5)
        assert r.completed > 0 and r.errors == 0, r
        assert r.extra["runtime"] == "triton"
    finally:
        dep.teardown()
    deadline = time.monotonic() + 5
    while [p for p in group if _alive(p)] and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [f"{p.pid} {p.name()}" for p in group if _alive(p)]
    assert left == [], f"outlived the teardown: {left}"
    assert _group(pgid) == []


def _alive(p: psutil.Process) -> bool:
    """Still running (the same process, not a reused pid) and not a zombie."""
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def test_cli_runtime_is_for_the_local_backend(tiny_model: Path, capsys) -> None:
    from autoconf.cli import main

    argv = ["stress", str(tiny_model), "--config", "batch_size=1", "--rate", "5"]
    assert main([*argv, "--backend", "kubernetes", "--runtime", "triton"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["autoconf: error: --runtime applies to the local backend only"], err
