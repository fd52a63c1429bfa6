"""Out-of-memory trials a search without ``--qps`` spends, before and after failures became
knowledge (issue 13): ``autoconf search --backend sim --space gpu-default`` (no ``--qps``,
``--knowledge none``, sampler ``meta``) on transformer-sized ``kops.zoo`` models, then the same
search ``--resume``d with more budget, once with the code at this branch's base commit (``git
archive`` of it into a temporary folder, nothing else touched) and once with this tree.

Per search and resume it counts, from the study's trials: configs measured, out-of-memory trials,
*repeated* ones (an OOM whose base config (batch, GPU, instances, precision) ran out of memory in
an earlier trial) and *implied* ones (an OOM of a config that an earlier OOM implies, see
:mod:`autoconf._implied`; repeats included), the replica counts measured and the plan's replicas.
The simulator's OOMs follow its memory model: a simulation, not a GPU.

    python benchmarks/oom_repeats.py [--base COMMIT] [--seeds 0 1] [--out results/search]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from autoconf import _record as record  # noqa: E402
from autoconf import load_space  # noqa: E402
from autoconf._implied import ImpliedFailures, base_key, oom_kind  # noqa: E402

#: The models: a DistilBERT-sized encoder (the issue's case), a GPT-2-small-sized decoder and a
#: ViT-B/16-sized encoder, each large enough to run out of memory at large batches.
MODELS = {
    "distilbert_like": (
        "bert_like",
        {"hidden": 768, "layers": 6, "heads": 12, "vocab": 30522, "max_seq": 512},
    ),
    "gpt2_like": ("gpt2_like", {"hidden": 768, "layers": 6, "heads": 12, "vocab": 30522}),
    "vit_like": (
        "vit_like",
        {"hidden": 768, "layers": 6, "heads": 12, "patch": 16, "image": 224, "classes": 1000},
    ),
}
SLO = "50ms"
BUDGETS = (20, 30)  # the search, then its --resume (10 more configs)


def _build(models_dir: Path) -> dict[str, Path]:
    import kops.zoo

    out = {}
    for name, (family, knobs) in MODELS.items():
        path = models_dir / f"{name}.onnx"
        if not path.is_file():
            kops.zoo.build(family, path, **knobs)
        out[name] = path
    return out


def _base_tree(commit: str, into: Path) -> Path:
    """The packages at ``commit``, exported with ``git archive`` (no worktree, no checkout)."""
    into.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "archive", commit, "autoconf", "kops", "stress"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def sim_search_argv(
    model: Path, out: Path, slo: str, budget: int, seed: int, knowledge: str = "none"
) -> list[str]:
    """``autoconf search`` of ``model`` on the sim backend and gpu-default, quiet, into ``out``."""
    return [
        sys.executable, "-m", "autoconf.cli", "search", str(model), "--slo-p99", slo,
        "--space", "gpu-default", "--backend", "sim", "--budget", str(budget),
        "--seed", str(seed), "--knowledge", knowledge, "--quiet", "--out", str(out),
    ]  # fmt: skip


def load_run_study(out: Path) -> optuna.Study:
    """The one study a search run wrote to ``out/study.db``."""
    storage = f"sqlite:///{out / 'study.db'}"
    (summary,) = optuna.get_all_study_summaries(storage)
    return optuna.load_study(study_name=summary.study_name, storage=storage)


def _search(code: Path, model: Path, out: Path, budget: int, seed: int, resume: bool) -> float:
    cmd = sim_search_argv(model, out, SLO, budget, seed) + (["--resume"] if resume else [])
    env = {**os.environ, "PYTHONPATH": str(code)}
    started = time.monotonic()
    # run in the code's folder: ``python -m`` puts the working directory first on sys.path
    done = subprocess.run(cmd, env=env, cwd=code, capture_output=True, text=True)
    if done.returncode not in (0, 1):
        raise RuntimeError(f"{' '.join(cmd)} failed: {done.stderr.strip()[-500:]}")
    return time.monotonic() - started


def _count(out: Path, first_n: int) -> dict:
    """What the study holds: per phase (search, resume) the measured, OOM, repeated and implied
    OOM trials."""
    study = load_run_study(out)
    space = load_space("gpu-default")
    implied = ImpliedFailures(space)
    oom_bases: set[tuple] = set()
    phases = {
        p: dict.fromkeys(("measured", "oom", "repeated_oom", "implied_oom"), 0)
        for p in ("search", "resume")
    }
    replicas = set()
    for i, (number, config, m) in enumerate(record.numbered_measurements(study)):
        phase = phases["search" if i < first_n else "resume"]
        phase["measured"] += 1
        replicas.add(config.replicas)
        if oom_kind(m) is not None:
            phase["oom"] += 1
            phase["repeated_oom"] += base_key(config) in oom_bases
            phase["implied_oom"] += implied.cause(config) is not None
            oom_bases.add(base_key(config))
        implied.add(number, config, m)
    plan = out / "plan.yaml"
    plan_replicas = (
        yaml.safe_load(plan.read_text())["config"]["replicas"] if plan.is_file() else None
    )
    return {
        **{f"{p}_{k}": v for p, c in phases.items() for k, v in c.items()},
        "replicas_measured": sorted(replicas),
        "plan_replicas": plan_replicas,
        "inferred_trials": len(record.inferred_trials(study)),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--base", default=None, help="the 'before' commit (default: merge-base with main)"
    )
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "search")
    args = ap.parse_args()
    base = (
        args.base
        or subprocess.run(
            ["git", "merge-base", "HEAD", "main"],
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    load_before = os.getloadavg()
    started = time.monotonic()
    cache = Path(os.environ.get("AUTOCONF_CACHE_DIR", Path.home() / ".cache" / "autoconf"))
    models = _build(cache / "oom_repeats")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        before = _base_tree(base, Path(tmp) / "before")
        for version, code in (("before", before), ("after", ROOT)):
            for name in args.models:
                for seed in args.seeds:
                    out = Path(tmp) / f"{version}-{name}-{seed}"
                    wall = _search(code, models[name], out, BUDGETS[0], seed, resume=False)
                    first = len(record.measured_trials(load_run_study(out)))
                    wall += _search(code, models[name], out, BUDGETS[1], seed, resume=True)
                    row = {
                        "version": version,
                        "model": name,
                        "seed": seed,
                        "wall_s": round(wall, 1),
                    }
                    row.update(_count(out, first))
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    result = {
        "command": "python benchmarks/oom_repeats.py " + " ".join(sys.argv[1:]),
        "base_commit": base,
        "head_commit": subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip(),
        "slo": SLO,
        "budgets": list(BUDGETS),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "wall_s": round(time.monotonic() - started, 1),
        "runs": rows,
        "totals": _totals(rows),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "oom_repeats.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out / "oom_repeats.md").write_text(_markdown(result))
    print(json.dumps(result["totals"], indent=1))
    return 0


KEYS = ("measured", "oom", "repeated_oom", "implied_oom")


def _totals(rows: list[dict]) -> dict:
    out = {}
    for version in ("before", "after"):
        mine = [r for r in rows if r["version"] == version]
        out[version] = {
            f"{p}_{k}": sum(r[f"{p}_{k}"] for r in mine) for p in ("search", "resume") for k in KEYS
        }
        out[version]["runs_with_plan_replicas_1"] = sum(r["plan_replicas"] == 1 for r in mine)
        out[version]["runs"] = len(mine)
    return out


def _markdown(result: dict) -> str:
    lines = [
        "# Out-of-memory trials of a search without --qps, before and after (issue 13)",
        "",
        f"Command: `{result['command']}` (base `{result['base_commit'][:10]}`, head "
        f"`{result['head_commit'][:10]}`); load average before {result['load_average_before']}, "
        f"after {result['load_average_after']}; {result['wall_s']} s in all.",
        "",
        f"`autoconf search MODEL --slo-p99 {result['slo']} --space gpu-default --backend sim "
        f"--knowledge none --budget {result['budgets'][0]}`, then `--resume --budget "
        f"{result['budgets'][1]}` (sampler `meta`). *oom*: out-of-memory trials; *repeated*: an OOM "
        "of a base config (batch, GPU, instances, precision) that ran out of memory before; "
        "*implied*: an OOM of a config an earlier OOM implies (repeats included). Simulated OOMs "
        "(the simulator's memory model), not a GPU's.",
        "",
        "| version | model | seed | measured (search + resume) | oom | repeated | implied | "
        "replicas measured | plan replicas | inferred, not measured |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["runs"]:
        lines.append(
            f"| {r['version']} | {r['model']} | {r['seed']} | {r['search_measured']} + "
            f"{r['resume_measured']} | {r['search_oom']} + {r['resume_oom']} | "
            f"{r['search_repeated_oom']} + {r['resume_repeated_oom']} | {r['search_implied_oom']} + "
            f"{r['resume_implied_oom']} | {', '.join(map(str, r['replicas_measured']))} | "
            f"{r['plan_replicas']} | {r['inferred_trials']} |"
        )
    lines += ["", "Totals (search + resume):", ""]
    for version, t in result["totals"].items():
        lines.append(
            f"- **{version}**: {t['runs']} runs, OOM trials {t['search_oom']} + {t['resume_oom']}, "
            f"repeated {t['search_repeated_oom']} + {t['resume_repeated_oom']}, implied "
            f"{t['search_implied_oom']} + {t['resume_implied_oom']}; plans with 1 replica: "
            f"{t['runs_with_plan_replicas_1']}"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
