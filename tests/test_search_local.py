"""End to end on the real local backend: ONNX Runtime server processes and open-loop load on
this machine, a tiny model, a budget of one config (the --example path, shortened)."""

from __future__ import annotations

import csv

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
        "--budget",
        "1",
        "--duration",
        "2",
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
    # validated at 90 % of the measured capacity, on live servers: real, non-zero figures
    (row,) = list(csv.DictReader((out / "trials.csv").open()))
    assert row["ok"] == "True" and float(row["capacity_rps"]) > 0
    assert plan.load.target_rps == pytest.approx(0.9 * float(row["capacity_rps"]), rel=1e-3)
    assert 0 < plan.measured["p99_ms"] <= 100
    assert plan.measured["throughput_rps"] >= 0.98 * 0.98 * plan.load.target_rps
    assert (out / "report.html").stat().st_size > 10_000
    assert {p.name.split("-", 1)[1] for p in (out / "manifests").glob("*.yaml")} >= {
        "deployment.yaml",
        "service.yaml",
        "horizontalpodautoscaler.yaml",
        "configmap.yaml",
    }
