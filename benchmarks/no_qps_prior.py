"""A search without ``--qps`` with and without a knowledge base of capacity tables (issue 13:
"importing sim:zoo into the knowledge base changed nothing"): ``autoconf search --backend sim
--space gpu-default --slo-p99 50ms`` (sampler ``meta``, budget 15) on transformer-sized
``kops.zoo`` models, ``--knowledge none`` against a fresh copy of a knowledge base holding
``sim:zoo`` (built once with ``autoconf prior import sim:zoo``). Per run: the best requests/s per
dollar-hour found after each evaluation as a fraction of the simulated optimum of the searched
space (replicas fixed at their minimum without ``--qps``), and the evaluations to within 5 %.

    python benchmarks/no_qps_prior.py [--seeds 0 1] [--out results/search]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from oom_repeats import _build, load_run_study, sim_search_argv  # noqa: E402

import kops  # noqa: E402
from autoconf import Load, Objective, load_space  # noqa: E402
from autoconf import _record as record  # noqa: E402
from autoconf._search._sampler import searched_space  # noqa: E402
from autoconf._simulator import SimModel, simulate_configs  # noqa: E402

SLO_MS = 50.0
BUDGET = 15
WITHIN = 0.05


def _optimum(model: Path) -> float:
    objective = Objective(slo_p99_ms=SLO_MS)
    space, _ = searched_space(load_space("gpu-default"), objective)
    sim = SimModel.from_profile(kops.profile(model))
    ms = simulate_configs(sim, space, space.configs(), Load(slo_p99_ms=SLO_MS))
    return max(v for v in (objective.value(m) for m in ms) if v is not None)


def _run(model: Path, out: Path, seed: int, knowledge: str) -> list[float]:
    cmd = sim_search_argv(model, out, f"{SLO_MS:g}ms", BUDGET, seed, knowledge)
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if done.returncode not in (0, 1):
        raise RuntimeError(f"{' '.join(cmd)}: {done.stderr.strip()[-500:]}")
    study = load_run_study(out)
    objective = Objective(slo_p99_ms=SLO_MS)
    return [v or 0.0 for v in (objective.value(m) for _, m in record.measured_trials(study))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "search")
    ap.add_argument("--markdown-only", action="store_true", help="rewrite the .md from the .json")
    args = ap.parse_args()
    if args.markdown_only:
        result = json.loads((args.out / "no_qps_prior.json").read_text())
        (args.out / "no_qps_prior.md").write_text(_markdown(result))
        return 0
    load_before = os.getloadavg()
    started = time.monotonic()
    cache = Path(os.environ.get("AUTOCONF_CACHE_DIR", Path.home() / ".cache" / "autoconf"))
    models = _build(cache / "oom_repeats")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        kb0 = Path(tmp) / "zoo.db"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "autoconf.cli",
                "prior",
                "import",
                "sim:zoo",
                "--store",
                str(kb0),
            ],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        for name, path in models.items():
            best = _optimum(path)
            for seed in args.seeds:
                for kb in ("none", "sim:zoo"):
                    knowledge = "none"
                    if kb != "none":
                        knowledge = str(Path(tmp) / f"kb-{name}-{seed}.db")
                        shutil.copy(kb0, knowledge)  # each search feeds its own copy
                    values = _run(path, Path(tmp) / f"{name}-{kb}-{seed}", seed, knowledge)
                    curve, incumbent = [], 0.0
                    for v in values:
                        incumbent = max(incumbent, v)
                        curve.append(round(incumbent / best, 4))
                    reached = next((i + 1 for i, c in enumerate(curve) if c >= 1 - WITHIN), None)
                    row = {"model": name, "knowledge": kb, "seed": seed, "evals": len(values)}
                    row |= {"best_fraction": curve[-1], "evals_to_5pct": reached, "curve": curve}
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    result = {
        "command": "python benchmarks/no_qps_prior.py " + " ".join(sys.argv[1:]),
        "head_commit": subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip(),
        "slo_p99_ms": SLO_MS,
        "budget": BUDGET,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "wall_s": round(time.monotonic() - started, 1),
        "runs": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "no_qps_prior.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out / "no_qps_prior.md").write_text(_markdown(result))
    return 0


def _markdown(result: dict) -> str:
    lines = [
        "# A search without --qps, with and without a knowledge base of capacity tables",
        "",
        f"Command: `{result['command']}` (head `{result['head_commit'][:10]}`); load average "
        f"before {result['load_average_before']}, after {result['load_average_after']}; "
        f"{result['wall_s']} s in all.",
        "",
        f"`autoconf search MODEL --slo-p99 {result['slo_p99_ms']:g}ms --space gpu-default "
        f"--backend sim --budget {result['budget']}` with `--knowledge none` or a fresh copy of a "
        "store holding `sim:zoo` (tables measured at a target load: a capacity prior, which a "
        "search without --qps now reads as requests/s per dollar-hour). Best found as a fraction "
        "of the simulated optimum (replicas fixed at 1), and evaluations to within 5 %.",
        "",
        "| model | seed | knowledge | best / optimum | evals to within 5 % |",
        "|---|---|---|---|---|",
    ]
    for r in result["runs"]:
        reached = r["evals_to_5pct"] if r["evals_to_5pct"] is not None else f"> {r['evals']}"
        lines.append(
            f"| {r['model']} | {r['seed']} | {r['knowledge']} | {r['best_fraction']:.3f} | "
            f"{reached} |"
        )
    lines += [
        "",
        "A run with fewer evaluations than the budget was stopped by the `meta` stopping rule. "
        "Without a prior it waits for as many configs as its main-effects model has parameters "
        "(18 here; before, it stopped after 1-3 configs at 19-32 % of the optimum). The "
        "knowledge-base runs of both seeds agree: the prior, not the seed, picks the first "
        "configs.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
