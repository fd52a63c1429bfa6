"""Nothing a deployer starts outlives it (issue 15 item 4): servers and load generators die
promptly with a deployer killed by SIGKILL or Ctrl-C, and no temporary folder stays behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest
from _terminal import default_sigint

from stress import _lifetime


def children_with_tmpdir(tmpdir: Path) -> list[psutil.Process]:
    """Live stress servers and load generators whose TMPDIR is ``tmpdir`` (this test's own)."""
    out = []
    for p in psutil.process_iter(["cmdline", "status"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if p.info["status"] == "zombie" or not ("stress.server" in cmd or "_locustfile" in cmd):
            continue
        try:
            if p.environ().get("TMPDIR") == str(tmpdir):
                out.append(p)
        except (psutil.AccessDenied, psutil.NoSuchProcess):
            continue
    return out


def leftovers(tmpdir: Path) -> list[Path]:
    """What is left in a private TMPDIR; ONNX Runtime's ``.ses`` (one session-id file it writes
    on import and reuses, not per run) is not ours to remove."""
    return [p for p in tmpdir.iterdir() if p.name != ".ses"]


def wait_until(check, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return check()


def test_run_folders_of_dead_owners_are_swept(tmp_path, monkeypatch):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f"{_lifetime.PREFIX}{dead.pid}-abc"
    (stale / "stress-load-x").mkdir(parents=True)
    live = tmp_path / f"{_lifetime.PREFIX}{os.getppid()}-abc"
    live.mkdir()
    assert _lifetime.sweep_stale(tmp_path) == [stale]
    assert not stale.exists() and live.is_dir()


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_generators_and_servers_die_with_their_deployer(tmp_path, sig):
    """Kill a deployer in the middle of a 30 s load: every server and load generator it started
    exits within seconds, and its TMPDIR is left empty."""
    import kops

    model = kops.zoo.build("tiny_mlp", tmp_path / "tiny_mlp.onnx")
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    script = textwrap.dedent(
        f"""
        import stress
        from pathlib import Path
        spec = stress.DeploymentSpec(model_path=Path({str(model)!r}), replicas=1)
        with stress.get_deployer("local", oversubscribe=True).deploy(spec) as dep:
            print("LOADING", flush=True)
            dep.open_loop(20, 30.0, 0.5)
        """
    )
    env = dict(os.environ, TMPDIR=str(tmpdir))
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=default_sigint,
    )
    try:
        assert proc.stdout.readline().strip() == "LOADING"
        assert wait_until(lambda: len(children_with_tmpdir(tmpdir)) >= 2, 30), "no generator"
        time.sleep(1.0)  # the load runs
        proc.send_signal(sig)
        proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert wait_until(lambda: not children_with_tmpdir(tmpdir), 5), children_with_tmpdir(tmpdir)
    assert wait_until(lambda: not leftovers(tmpdir), 5), leftovers(tmpdir)
