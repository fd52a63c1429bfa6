"""Fault, secret and bad-input sweep of the ``autoconf`` CLI (issue 15), rerun on demand.

Every case runs the CLI as a subprocess with a private TMPDIR and records its exit code, whether
it printed a traceback, and what it left: failures invented by a shutdown stored as results
(a COMPLETE trial whose measurement says a replica died / the load generator stopped), processes
still running with that TMPDIR, files left in it, and the sweep's password in any stream or
output file. Cases: kill -9 and Ctrl-C of a ``--parallel 2`` local search at random points (then
``--resume``), two processes starting together on one new SQLite study (plans compared), secrets
in URLs, and the bad inputs of issue 15 items 6-8.

    python benchmarks/fault_sweep.py [--out results/reliability] [--seed 0]

Writes OUT/sweep.json and OUT/sweep.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import psutil

ROOT = Path(__file__).resolve().parents[1]
SECRET = "Sweep-s3cret-9f2"
PG_URL = f"postgresql://sweeper:{SECRET}@127.0.0.1:1/autoconf"
INVENTED = ("died", "interrupted", "load generator", "exit code 0", "SIGTERM")
CLI = [sys.executable, "-m", "autoconf.cli"]


class Sweep:
    """The cases run so far and where their files live."""

    def __init__(self, work: Path, seed: int) -> None:
        self.work, self.rng = work, random.Random(seed)
        self.cases: list[dict] = []
        self.model = self._model()

    def _model(self) -> Path:
        import kops

        return kops.zoo.build("tiny_mlp", self.work / "tiny_mlp.onnx")

    def tmpdir(self, name: str) -> Path:
        path = self.work / "tmp" / name
        path.mkdir(parents=True)
        return path

    def env(self, tmpdir: Path) -> dict[str, str]:
        return dict(os.environ, TMPDIR=str(tmpdir), PYTHONPATH=str(ROOT))

    def run(self, name: str, argv: list[str], expect: set[int], timeout_s: float = 300) -> dict:
        """One CLI invocation to the end."""
        tmpdir = self.tmpdir(name)
        started = time.monotonic()
        try:
            p = subprocess.run(
                argv, env=self.env(tmpdir), capture_output=True, text=True, timeout=timeout_s
            )
            code, out, err = p.returncode, p.stdout, p.stderr
        except subprocess.TimeoutExpired as exc:
            code, out, err = "timeout", str(exc.stdout or ""), str(exc.stderr or "")
        return self.record(name, argv, code, expect, out, err, tmpdir, started)

    def record(self, name, argv, code, expect, out, err, tmpdir, started, **extra) -> dict:
        procs = _until(lambda: _processes(tmpdir), lambda v: not v, 10)
        files = _until(lambda: _leftovers(tmpdir), lambda v: not v, 5)
        case = {
            "case": name,
            "command": " ".join(shlex.quote(a) for a in argv[2:]),
            "exit_code": code,
            "expected_exit": sorted(expect),
            "exit_ok": code in expect,
            "traceback": "Traceback" in out + err,
            "stderr_tail": _tail(err),
            "left_running": procs,
            "left_files": [str(f.relative_to(tmpdir)) for f in files],
            "secret_in_streams": SECRET in out + err,
            "wall_s": round(time.monotonic() - started, 1),
            **extra,
        }
        self.cases.append(case)
        print(f"{name}: exit {code} ({case['wall_s']} s)", file=sys.stderr)
        return case

    def search_argv(self, out: Path, *more: str, budget: int = 4) -> list[str]:
        return CLI + [
            "search", str(self.model), "--slo-p99", "100ms", "--qps", "20", "--backend", "local",
            "--backend-option", "oversubscribe=true", "--parallel", "2", "--budget", str(budget),
            "--duration", "2s", "--out", str(out), "--knowledge", str(self.work / "kb.db"),
            "--no-progress", *more,
        ]  # fmt: skip

    def kill_case(self, name: str, sig: signal.Signals) -> Path:
        """Start a parallel local search, kill its process group mid-measurement."""
        out, tmpdir = self.work / name, self.tmpdir(name)
        argv = self.search_argv(out)
        started = time.monotonic()
        proc = subprocess.Popen(
            argv, env=self.env(tmpdir), start_new_session=True, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        _until(lambda: _generators(tmpdir) or proc.poll() is not None, bool, 90)
        delay = self.rng.uniform(0.0, 3.0)
        time.sleep(delay)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            stdout, stderr = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
        expect = {130} if sig == signal.SIGINT else {-signal.SIGKILL}
        self.record(
            name, argv, proc.returncode, expect, stdout, stderr, tmpdir, started,
            kill_after_s=round(delay, 2), invented_failures=_invented(out),
        )  # fmt: skip
        return out


def _until(get, done, timeout_s: float):
    deadline = time.monotonic() + timeout_s
    value = get()
    while not done(value) and time.monotonic() < deadline:
        time.sleep(0.1)
        value = get()
    return value


def _processes(tmpdir: Path) -> list[str]:
    """Command lines of live processes whose TMPDIR is ``tmpdir``."""
    out = []
    for p in psutil.process_iter(["status"]):
        with contextlib.suppress(psutil.Error):
            if p.info["status"] != "zombie" and p.environ().get("TMPDIR") == str(tmpdir):
                out.append(" ".join(p.cmdline())[:200])
    return out


def _generators(tmpdir: Path) -> bool:
    return any("_locustfile" in c for c in _processes(tmpdir))


def _leftovers(tmpdir: Path) -> list[Path]:
    """Files left in a private TMPDIR (ONNX Runtime's reused ``.ses`` id file is not ours)."""
    return [p for p in tmpdir.rglob("*") if p.name != ".ses"]


def _tail(text: str, n: int = 3) -> list[str]:
    return [ln[:300] for ln in text.strip().splitlines()[-n:]]


def _study(out: Path) -> optuna.Study | None:
    storage = f"sqlite:///{out / 'study.db'}"
    if not (out / "study.db").is_file():
        return None
    names = optuna.study.get_all_study_names(storage)
    return optuna.load_study(study_name=names[0], storage=storage) if names else None


def _invented(out: Path) -> int:
    """COMPLETE trials whose stored measurement is a failure made up by a shutdown."""
    study = _study(out)
    if study is None:
        return 0
    n = 0
    for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)):
        error = str((t.user_attrs.get("measurement") or {}).get("error") or "")
        n += any(w in error for w in INVENTED)
    return n


def faults(sw: Sweep) -> None:
    """kill -9 and Ctrl-C mid-search (two random points each), then --resume of one of them."""
    killed = None
    for i, sig in enumerate((signal.SIGKILL, signal.SIGINT, signal.SIGKILL, signal.SIGINT)):
        name = f"{'kill9' if sig == signal.SIGKILL else 'ctrl_c'}_{i}"
        out = sw.kill_case(name, sig)
        killed = killed or out
    case = sw.run("resume_after_kill9", sw.search_argv(killed, "--resume", budget=3), {0, 1})
    case["invented_failures"] = _invented(killed)


def shared_study(sw: Sweep, rounds: int = 3) -> None:
    """Two processes starting together on one new SQLite study (sim backend): both succeed and
    write the same plan."""
    for r in range(rounds):
        storage = f"sqlite:///{sw.work / f'shared-{r}.db'}"
        outs = [sw.work / f"shared-{r}-{k}" for k in (0, 1)]
        tmpdir = sw.tmpdir(f"shared_{r}")
        argvs = [
            CLI + ["search", str(sw.model), "--slo-p99", "50ms", "--backend", "sim", "--budget",
                   "8", "--storage", storage, "--join", "--out", str(o), "--knowledge", "none",
                   "--no-progress"]
            for o in outs
        ]  # fmt: skip
        started = time.monotonic()
        procs = [
            subprocess.Popen(a, env=sw.env(tmpdir), text=True, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
            for a in argvs
        ]  # fmt: skip
        streams = [p.communicate(timeout=300) for p in procs]
        plans = [_plan_config(o) for o in outs]
        sw.record(
            f"shared_sqlite_{r}", argvs[0], max(p.returncode for p in procs), {0},
            "".join(s[0] for s in streams), "".join(s[1] for s in streams), tmpdir, started,
            exit_codes=[p.returncode for p in procs],
            unique_constraint="UNIQUE constraint" in "".join(s[1] for s in streams),
            same_plan=plans[0] is not None and plans[0] == plans[1],
        )  # fmt: skip


def _plan_config(out: Path) -> dict | None:
    import yaml

    path = out / "plan.yaml"
    return yaml.safe_load(path.read_text()).get("config") if path.is_file() else None


_REDACTED_RUN = """
import sys
from pathlib import Path
import autoconf._search as search
opts = search.SearchOptions(
    model_path=Path(sys.argv[1]), slo_p99_ms=50, backend="sim", budget=6,
    out_dir=Path(sys.argv[2]), knowledge="none", progress=False, command=sys.argv[3],
)
print(search.run_search(opts).outcome)
"""


def secrets(sw: Sweep) -> None:
    """A password in --storage/--knowledge URLs never reaches a stream or an output file."""
    out = sw.work / "secret_out"
    sw.run("secret_bad_storage", CLI + ["search", str(sw.model), "--slo-p99", "50ms", "--backend",
           "sim", "--storage", PG_URL, "--out", str(out), "--knowledge", "none",
           "--no-progress"], {2})  # fmt: skip
    sw.run("secret_bad_knowledge", CLI + ["search", str(sw.model), "--slo-p99", "50ms",
           "--backend", "sim", "--out", str(out) + "-kb", "--knowledge", PG_URL,
           "--no-progress"], {2})  # fmt: skip
    command = f"autoconf search tiny_mlp.onnx --slo-p99 50ms --storage {PG_URL}"
    sw.run("secret_in_command_line", [sys.executable, "-c", _REDACTED_RUN, str(sw.model),
           str(sw.work / "secret_plan"), command], {0})  # fmt: skip


_BAD_SPACES = {
    "space_mixed_types": 'batch_size: [1, "x", null, 2.5]',
    "space_zero_batch": "batch_size: [0, -1]",
    "space_huge_range": "batch_size: {min: 1, max: 1000000000}",
}


def bad_inputs(sw: Sweep) -> None:
    """The bad invocations of issue 15 items 6-8, the unbounded ones (``--rate 1e9``,
    ``--duration 1e12s``, a 1e9-value space) included: every number is bounded where it enters."""
    m = str(sw.model)
    cfg = "batch_size=1,replicas=1,cpu_cores=1"
    stress = CLI + ["stress", m, "--rate", "5", "--duration", "1s"]
    search = CLI + ["search", m, "--slo-p99", "50ms", "--budget", "2", "--knowledge", "none",
                    "--no-progress"]  # fmt: skip
    afile = sw.work / "a-file"
    afile.write_text("x")
    cases = {
        "stress_option_nosuch": stress + ["--config", cfg, "--backend-option", "nosuch=1"],
        "stress_option_abc": stress + ["--config", cfg, "--backend-option", "ready_timeout_s=abc"],
        "stress_cores_inf": stress + ["--config", "batch_size=1,replicas=1,cpu_cores=inf"],
        "stress_rate_inf": CLI + ["stress", m, "--config", cfg, "--rate", "inf"],
        "stress_rate_1e9": CLI + ["stress", m, "--config", cfg, "--rate", "1e9", "--duration",
                                  "1s"],
        "stress_duration_1e12s": CLI + ["stress", m, "--config", cfg, "--rate", "5",
                                        "--duration", "1e12s"],
        "search_backend_option_abc": search + ["--backend", "local", "--out",
                                               str(sw.work / "o1"), "--backend-option",
                                               "ready_timeout_s=abc"],
        "search_out_is_a_file": search + ["--backend", "sim", "--out", str(afile)],
        "search_out_under_a_file": search + ["--backend", "sim", "--out", str(afile / "x")],
        "search_out_on_proc": search + ["--backend", "sim", "--out", "/proc/autoconf-sweep"],
        "search_qps_inf": search + ["--backend", "sim", "--qps", "inf", "--out",
                                    str(sw.work / "o2")],
    }  # fmt: skip
    for name, dims in _BAD_SPACES.items():
        space = sw.work / f"{name}.yaml"
        space.write_text(f"name: {name}\ndimensions:\n  {dims}\n  gpu_type: [cpu]\n"
                         "  replicas: [1]\n  cpu_cores: [1]\n")  # fmt: skip
        cases[name] = search + ["--backend", "sim", "--space", str(space), "--out",
                                str(sw.work / f"o-{name}")]  # fmt: skip
    for name, argv in cases.items():
        sw.run(name, argv, {2}, timeout_s=120)


def secret_in_files(work: Path) -> list[str]:
    """Every file under ``work`` holding the password (databases included)."""
    hits = []
    for path in work.rglob("*"):
        with contextlib.suppress(OSError):
            if path.is_file() and SECRET.encode() in path.read_bytes():
                hits.append(str(path.relative_to(work)))
    return hits


def summary(cases: list[dict], file_hits: list[str], load: dict) -> dict:
    return {
        "cases": len(cases),
        "tracebacks": sum(c["traceback"] for c in cases),
        "unexpected_exit_codes": [c["case"] for c in cases if not c["exit_ok"]],
        "invented_failures": sum(c.get("invented_failures", 0) for c in cases),
        "left_running": sum(len(c["left_running"]) for c in cases),
        "left_files": sum(len(c["left_files"]) for c in cases),
        "secret_in_streams": sum(c["secret_in_streams"] for c in cases),
        "secret_in_files": file_hits,
        "shared_study_unique_errors": sum(c.get("unique_constraint", False) for c in cases),
        "shared_study_same_plan": [c.get("same_plan") for c in cases if "same_plan" in c],
        "load_average": load,
    }


def write_md(path: Path, report: dict) -> None:
    s = report["summary"]
    lines = [
        "# Fault, secret and bad-input sweep (issue 15)",
        "",
        f"Command: `{report['command']}` ({report['date']}, {report['machine']}).",
        f"Load average (1/5/15 min) at start {s['load_average']['start']}, "
        f"at end {s['load_average']['end']}.",
        "",
        "| measure | value |",
        "|---|---|",
    ]
    for key in ("cases", "tracebacks", "unexpected_exit_codes", "invented_failures",
                "left_running", "left_files", "secret_in_streams", "secret_in_files",
                "shared_study_unique_errors", "shared_study_same_plan"):  # fmt: skip
        lines.append(f"| {key} | {s[key]} |")
    lines += ["", "| case | exit (expected) | traceback | invented | left running/files | "
              "secret | stderr (last line) |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for c in report["cases"]:
        last = (c["stderr_tail"] or [""])[-1].replace("|", "\\|")
        lines.append(
            f"| {c['case']} | {c['exit_code']} ({c['expected_exit']}) | {c['traceback']} | "
            f"{c.get('invented_failures', '-')} | {len(c['left_running'])}/"
            f"{len(c['left_files'])} | {c['secret_in_streams']} | {last} |"
        )
    path.write_text("\n".join(lines) + "\n")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=ROOT / "results" / "reliability")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only", nargs="*", choices=["faults", "shared", "secrets", "bad"])
    args = p.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    load_start = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="fault-sweep-") as work:
        sw = Sweep(Path(work), args.seed)
        parts = {"faults": faults, "shared": shared_study, "secrets": secrets, "bad": bad_inputs}
        for key, part in parts.items():
            if not args.only or key in args.only:
                part(sw)
        file_hits = secret_in_files(Path(work))
    load = {"start": load_start, "end": [round(x, 2) for x in os.getloadavg()]}
    report = {
        "command": "python benchmarks/fault_sweep.py " + shlex.join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": f"{os.cpu_count()} cores",
        "summary": summary(sw.cases, file_hits, load),
        "cases": sw.cases,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sweep.json").write_text(json.dumps(report, indent=2) + "\n")
    write_md(args.out / "sweep.md", report)
    print(json.dumps(report["summary"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
