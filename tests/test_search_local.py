"""End to end on the real local backend: ONNX Runtime server processes and open-loop load on
this machine, a tiny model, two configs at a modest target load (a load the tiny model meets with
a wide margin, so the test holds on a busy CI machine; the capacity path is covered in
tests/test_stress_load.py)."""

from __future__ import annotations

import csv
import math
import os

import pytest

import kops
from autoconf import cli
from autoconf._plan import read_plan


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_example_like_search_on_live_servers(tmp_path, capsys):
    model = kops.zoo.build("tiny_mlp", tmp_path / "tiny_mlp.onnx")
    out = tmp_path / "out"
    argv = [
        "search",
        str(model),
        "--slo-p99",
        "100ms",
        "--backend",
        "local",
        "--qps",
        "40",
        "--budget",
        "2",
        "--duration",
        "2s",
        "--out",
        str(out),
        "--knowledge",
        "none",
        "--no-progress",
    ]
    code = cli.main(argv)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    plan = read_plan(out / "plan.yaml")
    assert plan.backend == "local" and plan.slo.p99_ms == 100
    # measured on live servers: real, non-zero figures at the target load
    rows = list(csv.DictReader((out / "trials.csv").open()))
    assert len(rows) == 2 and all(float(r["p99_ms"]) > 0 for r in rows if r["ok"] == "True")
    assert plan.load.target_rps == 40
    assert 0 < plan.measured.p99_ms <= 100
    assert plan.measured.throughput_rps >= 0.98 * 0.98 * plan.load.target_rps
    assert (out / "report.html").stat().st_size > 10_000
    # every live measurement says whether it can be trusted; the space fits this machine
    assert all(r["stable"] in ("True", "False") for r in rows if r["ok"] == "True")
    assert plan.measured.stable in (True, False)
    assert plan.measured.stable or plan.measured.unstable_reasons
    cores = len(os.sched_getaffinity(0))
    for r in rows:
        assert int(r["replicas"]) * math.ceil(float(r["cpu_cores"])) + 1 <= max(cores, 2)
    assert {p.name.split("-", 1)[1] for p in (out / "manifests").glob("*.yaml")} >= {
        "deployment.yaml",
        "service.yaml",
        "horizontalpodautoscaler.yaml",
        "configmap.yaml",
    }
