"""The Quickstart's main job run N times, each in a fresh folder: how far apart are the plans?

Issue 11's bar: over 3 runs of ``autoconf search --example`` the chosen plans' requests/s per
dollar lie within 25 % of each other (max/min <= 1.25), and the report shows each trial's
stability. Each run is a subprocess with its own folder and knowledge base (``--knowledge none``:
a run must not learn from the one before); the load average is recorded beside every run.

    python benchmarks/quickstart_repeat.py [--runs 3] [--out results/search]

Writes OUT/quickstart_repeat.json and OUT/quickstart_repeat.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml


def one_run(work: Path) -> dict:
    """One ``autoconf search --example`` in ``work``; what its plan and trials say."""
    load_before = os.getloadavg()
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "autoconf.cli", "search", "--example", "--knowledge", "none",
         "--no-progress"],
        cwd=work, capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    out = work / "autoconf-example"
    row: dict = {
        "exit_code": proc.returncode,
        "wall_s": round(time.monotonic() - started, 1),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "stderr_tail": proc.stderr.strip().splitlines()[-3:],
    }
    plan_path = out / "plan.yaml"
    if plan_path.is_file():
        plan = yaml.safe_load(plan_path.read_text())
        cost = float(plan["cost_per_hour"])
        row.update(
            config=plan["config"],
            cost_per_hour=cost,
            target_rps=plan["load"]["target_rps"],
            rps_per_dollar=plan["load"]["target_rps"] / cost,
            capacity_rps=plan["predicted"].get("capacity_rps"),
            measured_stable=plan["measured"].get("stable"),
            measured_reasons=plan["measured"].get("unstable_reasons", []),
        )
    trials = out / "trials.csv"
    if trials.is_file():
        import csv

        rows = list(csv.DictReader(trials.open()))
        row["trials"] = len(rows)
        row["trials_stable"] = sum(1 for r in rows if r.get("stable") == "True")
    report = out / "report.html"
    row["report_shows_stability"] = report.is_file() and "stable" in report.read_text()
    return row


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--out", type=Path, default=Path("results/search"))
    args = p.parse_args()
    runs: list[dict] = []
    for i in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="quickstart-") as tmp:
            runs.append(one_run(Path(tmp)))
        print(f"run {i + 1}: {json.dumps(runs[-1], default=str)}", file=sys.stderr, flush=True)
        write(runs, args)  # after every run: an interrupted benchmark keeps what it measured
    return 0


def write(runs: list[dict], args: argparse.Namespace) -> None:
    """The summary of the runs so far, as JSON and markdown under ``args.out``."""
    values = [r["rps_per_dollar"] for r in runs if "rps_per_dollar" in r]
    spread = max(values) / min(values) if len(values) >= 2 else None
    summary = {
        "command": "python benchmarks/quickstart_repeat.py " + " ".join(sys.argv[1:]),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "cores": os.cpu_count(),
        "runs": runs,
        "plans": len(values),
        "rps_per_dollar_max_over_min": spread,
        "bar_max_over_min": 1.25,
        "bar_met": spread is not None and len(values) == args.runs and spread <= 1.25,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "quickstart_repeat.json").write_text(json.dumps(summary, indent=2, default=str))
    lines = [
        "# The Quickstart run repeatedly (`autoconf search --example`, fresh folder each)",
        "",
        f"`{summary['command']}` on {summary['date']}, {summary['cores']} cores.",
        "",
        "| run | exit | config | requests/s per $/h (target) | plan re-measurement stable | "
        "stable trials | load average before / after | wall s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(runs, 1):
        cfg = ",".join(f"{k}={v}" for k, v in (r.get("config") or {}).items())
        rpd = f"{r['rps_per_dollar']:,.0f}" if "rps_per_dollar" in r else "no plan"
        lines.append(
            f"| {i} | {r['exit_code']} | {cfg or '-'} | {rpd} | {r.get('measured_stable')} | "
            f"{r.get('trials_stable', '-')}/{r.get('trials', '-')} | "
            f"{r['load_average_before'][0]} / {r['load_average_after'][0]} | {r['wall_s']} |"
        )
    lines += [
        "",
        f"max/min of requests/s per dollar over the plans: "
        f"{'n/a' if spread is None else f'{spread:.2f}'} (bar <= 1.25: "
        f"{'met' if summary['bar_met'] else 'not met'}).",
    ]
    (args.out / "quickstart_repeat.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
