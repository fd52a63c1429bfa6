"""Replay backend: Falcon tables and the autoconf CSV format (written, then read back)."""

from __future__ import annotations

from pathlib import Path

import pytest

from autoconf import Config, Load, Measurement, ModelTable, Objective, UserError, load_space
from autoconf.backends import get_backend
from autoconf.datasets import load_tables, write_tables

FALCON = Path("/work/shared/data/falcon/sources")


def _falcon_dir(tmp_path: Path) -> Path:
    """Two tiny Falcon-format tables (a few rows of the real header)."""
    rows = [
        "batchsize,cpus,gpumem,gpupower,gputype,norm.(rps/budget)",
        "4,1,0.8,50,M60,0.25",
        "128,5,2.4,100,V100,0.95",
    ]
    for name in ("reg-a.csv", "reg-b.csv"):
        (tmp_path / name).write_text("\n".join(rows) + "\n")
    return tmp_path


def test_falcon_tables_parse(tmp_path):
    tables = load_tables(_falcon_dir(tmp_path))
    assert [t.name for t in tables] == ["a", "b"]
    t = tables[0]
    assert t.objective == Objective()
    c = Config(
        batch_size=128, gpu_type="V100", replicas=1, cpu_cores=5, gpu_mem_gb=2.4, gpu_share_pct=100
    )
    m = t.results[c]
    assert m.ok and m.normalized_rps_per_cost == 0.95
    assert m.cost_per_hour == pytest.approx(t.space.cost_per_hour(c))
    assert t.objective.value(m) == 0.95


@pytest.mark.skipif(not FALCON.is_dir(), reason="shared Falcon data not present")
def test_real_falcon_directory_has_18_full_tables():
    tables = load_tables(FALCON)
    assert len(tables) == 18
    assert all(len(t.results) == 1440 for t in tables)


def test_autoconf_format_roundtrip_and_backend(tmp_path):
    space = load_space("cpu-local")
    configs = space.configs()
    results = {
        configs[0]: Measurement(ok=True, cost_per_hour=0.0447, throughput_rps=50.0, p99_ms=12.5),
        configs[1]: Measurement.failed("crash", 0.0447),
    }
    table = ModelTable("m1", space, Objective(slo_p99_ms=20, target_rps=40), results)
    write_tables([table], tmp_path)
    (back,) = load_tables(tmp_path)
    assert back.name == "m1" and back.objective == table.objective
    assert back.results[configs[0]].p99_ms == 12.5
    assert not back.results[configs[1]].ok and back.results[configs[1]].error == "crash"

    backend = get_backend("replay", space, tables=str(tmp_path))
    assert backend.evaluate("m1", configs[0], Load()).throughput_rps == 50.0
    missing = backend.evaluate("m1", configs[2], Load())
    assert not missing.ok and missing.error == "not in table"
    with pytest.raises(UserError, match="no table for model"):
        backend.evaluate("other", configs[0], Load())


def test_bad_directories_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_tables(tmp_path / "nope")
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    with pytest.raises(UserError, match="space.yaml"):
        load_tables(tmp_path)
