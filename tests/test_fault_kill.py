"""A search with ``--parallel 2`` on the real local backend, killed at random points with
Ctrl-C (SIGINT to its process group, as a terminal sends it) and with SIGKILL (issue 15): the
study holds only real measurements, nothing it started keeps running, and its private TMPDIR
is left empty."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import psutil
import pytest
from _terminal import default_sigint

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
#: Words of a failure made up by a shutdown, never by the tiny model itself.
INVENTED = ("died", "interrupted", "load generator", "exit code 0", "SIGTERM")


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    import kops

    return kops.zoo.build("tiny_mlp", tmp_path_factory.mktemp("fault") / "tiny_mlp.onnx")


def _ours(tmpdir: Path) -> list[psutil.Process]:
    """Live processes (any, the search's children included) whose TMPDIR is ``tmpdir``."""
    out = []
    for p in psutil.process_iter(["status"]):
        try:
            if p.info["status"] != "zombie" and p.environ().get("TMPDIR") == str(tmpdir):
                out.append(p)
        except (psutil.AccessDenied, psutil.NoSuchProcess):
            continue
    return out


def _until(check, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not check() and time.monotonic() < deadline:
        time.sleep(0.1)
    return check()


def _generators(tmpdir: Path) -> int:
    n = 0
    for p in _ours(tmpdir):
        with __import__("contextlib").suppress(psutil.Error):
            n += "_locustfile" in " ".join(p.cmdline())
    return n


@pytest.mark.parametrize(
    ("sig", "seed"), [(signal.SIGINT, 1), (signal.SIGKILL, 2), (signal.SIGINT, 3)]
)
def test_a_killed_parallel_search_stores_only_real_measurements(tmp_path, model, sig, seed):
    tmpdir, out = tmp_path / "tmp", tmp_path / "out"
    tmpdir.mkdir()
    env = dict(os.environ, TMPDIR=str(tmpdir), PYTHONPATH=str(ROOT))
    argv = [
        sys.executable, "-m", "autoconf.cli", "search", str(model), "--slo-p99", "100ms",
        "--qps", "20", "--backend", "local", "--backend-option", "oversubscribe=true",
        "--parallel", "2", "--budget", "6", "--duration", "2s", "--out", str(out),
        "--knowledge", str(tmp_path / "kb.db"), "--no-progress",
    ]  # fmt: skip
    proc = subprocess.Popen(
        argv,
        env=env,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=default_sigint,
    )
    try:
        assert _until(lambda: _generators(tmpdir) >= 1 or proc.poll() is not None, 60)
        time.sleep(random.Random(seed).uniform(0.0, 2.5))  # somewhere in a measurement
        os.killpg(proc.pid, sig)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert b"Traceback" not in err, err.decode()
    assert _until(lambda: not _ours(tmpdir), 10), [p.cmdline() for p in _ours(tmpdir)]

    # a SIGKILLed search's run folders are removed by its orphaned watchdogs, a moment later
    def left() -> list[Path]:
        return [p for p in tmpdir.iterdir() if p.name != ".ses"]  # .ses: ONNX Runtime's own

    assert _until(lambda: not left(), 10), list(tmpdir.rglob("*"))
    storage = f"sqlite:///{out / 'study.db'}"
    (name,) = optuna.study.get_all_study_names(storage)
    study = optuna.load_study(study_name=name, storage=storage)
    for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)):
        m = t.user_attrs.get("measurement") or {}
        error = str(m.get("error") or "")
        assert not any(w in error for w in INVENTED), (t.number, error)
