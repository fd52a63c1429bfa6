"""The shared team store on a real PostgreSQL server: two ``autoconf search`` processes started
together with ``--join`` on one ``postgresql://`` study measure every config once, lose none,
write the plan Optuna itself names best, and never write or print the URL's password.

The test starts its own cluster (``initdb``/``pg_ctl`` from Debian's ``postgresql`` package) in a
temporary folder on a private port and socket, as the ``postgres`` user when run as root, and
stops it at the end. ``.ci/run`` installs the package, so a missing server is a setup error and
fails the test; ``AUTOCONF_SKIP_POSTGRES=1`` skips it on a machine without one.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import yaml
from _tiny import TINY_MEMORY_SPACE

import kops
from autoconf._search._remeasure import AGREE_WITHIN

SECRET = "Pg-s3cret-4711"
USER = "autoconf"
DB = "team"
#: 24 configs (the space of test_optuna_native, the small GPU out of memory); each process
#: measures 12, so together they measure the whole space.
SPACE = TINY_MEMORY_SPACE


def _pg_bin() -> Path:
    """The folder of ``initdb`` and ``pg_ctl`` (Debian keeps them off PATH)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    initdb = found[-1] if found else shutil.which("initdb")
    if initdb is None:
        if os.environ.get("AUTOCONF_SKIP_POSTGRES") == "1":
            pytest.skip("AUTOCONF_SKIP_POSTGRES=1: no PostgreSQL server on this machine")
        pytest.fail(
            "PostgreSQL server not installed (no initdb under /usr/lib/postgresql/*/bin or on "
            "PATH): `apt-get install -y postgresql` (.ci/run does), or AUTOCONF_SKIP_POSTGRES=1 "
            "to skip this test",
            pytrace=False,
        )
    return Path(initdb).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """A private PostgreSQL cluster; yields its ``postgresql://`` URL (with the password)."""
    bin_dir = _pg_bin()
    root = Path(tempfile.mkdtemp(prefix="autoconf-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # the server refuses to run as root
        pg = pwd.getpwnam("postgres")
        os.chown(root, pg.pw_uid, pg.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    (root / "pw").write_text(SECRET + "\n")
    if as_user:
        os.chown(root / "pw", pg.pw_uid, pg.pw_gid)
    data, port = root / "data", _free_port()

    def run(*argv: str) -> None:
        done = subprocess.run(as_user + list(argv), capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"{argv[0]} failed: {done.stderr[-2000:]}"

    run(f"{bin_dir}/initdb", "-D", str(data), "-U", USER, f"--pwfile={root / 'pw'}", "-A",
        "scram-sha-256")  # fmt: skip
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1"
    run(f"{bin_dir}/pg_ctl", "-D", str(data), "-o", options, "-l", str(root / "log"), "-w", "start")
    try:
        env = {**os.environ, "PGPASSWORD": SECRET}
        subprocess.run(
            [f"{bin_dir}/createdb", "-h", "127.0.0.1", "-p", str(port), "-U", USER, DB],
            env=env, check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        yield f"postgresql://{USER}:{SECRET}@127.0.0.1:{port}/{DB}"
    finally:
        run(f"{bin_dir}/pg_ctl", "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


def _search(model: Path, space: Path, storage: str, out: Path) -> subprocess.Popen:
    argv = [sys.executable, "-m", "autoconf.cli", "search", str(model), "--slo-p99", "20ms"]
    argv += ["--qps", "400", "--space", str(space), "--backend", "sim", "--budget", "12"]
    argv += ["--sampler", "tpe", "--storage", storage, "--join", "--out", str(out)]
    argv += ["--knowledge", "none", "--no-progress"]
    out.mkdir()
    with (
        open(out.with_suffix(".stdout"), "w") as stdout,
        open(out.with_suffix(".stderr"), "w") as e,
    ):
        return subprocess.Popen(argv, stdout=stdout, stderr=e, text=True)


def test_two_processes_share_one_postgresql_study(server, tmp_path):
    model = kops.zoo.build("tiny_mlp", tmp_path / "tiny_mlp.onnx")
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    outs = [tmp_path / "a", tmp_path / "b"]
    procs = [_search(model, space, server, out) for out in outs]
    for p in procs:
        p.wait(timeout=600)
    streams = [tuple(out.with_suffix(f".{n}").read_text() for n in ("stdout", "stderr")) for
               out in outs]  # fmt: skip
    for p, (_, stderr) in zip(procs, streams):
        assert p.returncode == 0, stderr[-3000:]

    (name,) = optuna.study.get_all_study_names(server)
    study = optuna.load_study(study_name=name, storage=server)
    complete = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    # a repeat is told a stored result; a config an out-of-memory rules out is completed
    # unmeasured (``inferred_from``): neither is a measurement
    measured = [
        t
        for t in complete
        if not t.user_attrs.get("repeat") and "inferred_from" not in t.user_attrs
    ]
    configs = [tuple(sorted(t.params.items())) for t in measured]
    # no config measured twice; none lost: every config a process says it measured is stored
    # (--budget counts the study's measurements when a process joins, so the total varies)
    assert len(configs) == len(set(configs)) > 12
    pids = {str(p.pid) for p in procs}
    assert {t.user_attrs["worker"].split(":")[1] for t in measured} == pids
    said = sum(int(s.split("(", 1)[1].split(" ")[0]) for s, _ in streams)
    assert said == len(configs)  # "study: NAME (N configs measured now, ...)" of each process

    # the plan: a measured feasible config in both outputs; the process that ranked last saw
    # every measurement and wrote Optuna's own best trial, or the plan the other settled on
    # when it is as good (within AGREE_WITHIN: processes agree on one plan)
    best = study.best_trial
    feasible = {tuple(sorted(t.params.items())) for t in measured if t.user_attrs["feasible"]}
    plans = [yaml.safe_load((out / "plan.yaml").read_text()) for out in outs]
    assert all(tuple(sorted(p["config"].items())) in feasible for p in plans)
    assert any(p["config"] == best.params for p in plans) or plans[0] == plans[1]
    assert min(p["cost_per_hour"] for p in plans) <= best.value * (1 + AGREE_WITHIN) + 1e-9

    # the password: nowhere in what the processes wrote or printed
    written = [f for out in outs for f in out.rglob("*") if f.is_file()]
    assert {"plan.yaml", "report.html", "trials.csv"} <= {f.name for f in written}
    leaks = [f for f in written if SECRET.encode() in f.read_bytes()]
    assert leaks == []
    for stdout, stderr in streams:
        assert SECRET not in stdout and SECRET not in stderr
    assert "***@127.0.0.1" in (outs[0] / "plan.yaml").read_text()  # the URL is there, masked
