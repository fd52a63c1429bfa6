"""Re-draw a regret plot from the records of ``autoconf bench --json`` (no re-run needed).

python benchmarks/plot_regret.py results/bench/zoo.json results/bench/zoo-regret.png "sim:zoo"
"""

from __future__ import annotations

import sys

from autoconf._bench import load_records, plot_regret

if __name__ == "__main__":
    records_json, png, title = sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else ""
    print(plot_regret(load_records(records_json), png, title=title))
