"""Compare two ``autoconf bench --json`` files run by run: same evaluation counts, or not.

A refactor that must leave the search unchanged (the redesign of issue 16) is checked by running
the same bench command on the code before and after it and comparing every run's
``evals_to_*`` counts and best-so-far curve exactly. Prints a table and exits 1 on any difference.

    python benchmarks/bench_equivalence.py BEFORE.json AFTER.json [--out FILE.md]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

FIELDS = ("evals_to_within_1pct", "evals_to_within_5pct", "evals_to_optimum", "evals_to_score_0_9")


def _runs(path: Path) -> dict[tuple[str, str, int], dict]:
    return {(r["sampler"], r["model"], r["seed"]): r for r in json.loads(path.read_text())}


def compare(before: Path, after: Path) -> tuple[str, int]:
    """A markdown summary of both files and the number of runs that differ."""
    a, b = _runs(before), _runs(after)
    differ = []
    for key in sorted(set(a) | set(b)):
        ra, rb = a.get(key), b.get(key)
        if ra is None or rb is None:
            differ.append((key, "missing in " + ("before" if ra is None else "after")))
            continue
        changed = [f for f in (*FIELDS, "best_so_far") if ra.get(f) != rb.get(f)]
        if changed:
            differ.append(
                (
                    key,
                    ", ".join(
                        f"{f}: {ra.get(f)} -> {rb.get(f)}" for f in changed if f != "best_so_far"
                    )
                    or "best_so_far curve",
                )
            )
    samplers = sorted({k[0] for k in a})
    lines = [
        f"before: `{before}` ({len(a)} runs), after: `{after}` ({len(b)} runs)",
        "",
        "| sampler | runs | identical evaluation counts and curves |",
        "|---|---|---|",
    ]
    for s in samplers:
        keys = [k for k in a if k[0] == s]
        same = sum(1 for k in keys if k not in {d[0] for d in differ})
        lines.append(f"| `{s}` | {len(keys)} | {same} / {len(keys)} |")
    lines.append("")
    lines.append(f"runs that differ: {len(differ)}")
    lines.extend(f"- {k}: {why}" for k, why in differ[:50])
    return "\n".join(lines) + "\n", len(differ)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("before", type=Path)
    p.add_argument("after", type=Path)
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    text, n = compare(args.before, args.after)
    print(text, end="")
    if args.out:
        args.out.write_text(text)
    return 1 if n else 0


if __name__ == "__main__":
    sys.exit(main())
