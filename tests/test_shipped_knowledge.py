"""The knowledge that ships with the package: current with the code, faithful to the simulator
and the Falcon tables, read-only, in every search's history, and left out by family in
``autoconf bench --train shipped``."""

from __future__ import annotations

import gzip
import json
import logging

import numpy as np
import pytest
from _tiny import MODELS, tiny_space

from autoconf import Measurement, Objective, SearchSpace, load_space
from autoconf._bench import group_of, load_dataset, run_bench, run_one
from autoconf._search._stores import history
from autoconf._simulator import SimModel, simulate_configs
from autoconf._types import Load
from autoconf.cli import main
from autoconf.datasets import ZOO_MODELS, ZOO_PERTURBED, sim_tables, zoo_profile
from autoconf.prior import KnowledgeBase, shipped_tables
from autoconf.prior import _shipped as shipped
from autoconf.samplers import SAMPLERS
from autoconf.samplers._baselines import StaticOrderSampler, transfer_order


def test_the_shipped_files_are_current_with_the_code():
    """Fails after a change of the simulator, the kops features or a space: rebuild them."""
    described = {d["space"]: d for d in shipped.describe()}
    assert set(described) == {"gpu-default", "falcon"}
    for d in described.values():
        assert d["stale"] is None, f"{d['space']}: {d['stale']}; {shipped.REBUILD}"
    zoo = {name for name, *_ in ZOO_MODELS} | {name for name, *_ in ZOO_PERTURBED}
    assert set(described["gpu-default"]["models"]) == zoo
    assert described["gpu-default"]["configs"] == len(load_space("gpu-default").configs())
    assert len(described["falcon"]["models"]) == 18
    assert shipped_tables("cpu-local") == []  # the simulator says nothing about local CPUs


def test_shipped_zoo_is_what_the_simulator_gives():
    """One zoo model, re-simulated on a sample of configs, matches the shipped numbers."""
    name, family, knobs = next(m for m in ZOO_MODELS if m[0] == "tiny_mlp@s")
    model = SimModel.from_profile(zoo_profile(name, family, knobs), name=name)
    space = load_space("gpu-default")
    table = next(t for t in shipped_tables(space) if t.name == name)
    configs = space.configs()[:96]  # a contiguous block: capacities are searched per block
    load = Load(slo_p99_ms=table.objective.slo_p99_ms, target_rps=table.objective.target_rps)
    fresh = simulate_configs(model, space, configs, load, 0)
    for config, m in zip(configs, fresh):
        got = table.results[config]
        assert got.ok == m.ok
        assert table.objective.feasible(got) == table.objective.feasible(m)
        for field in ("capacity_rps", "throughput_rps", "p99_ms"):
            assert getattr(got, field) == pytest.approx(getattr(m, field), rel=1e-5)
    assert np.allclose(table.features, model.features, rtol=1e-5)


def test_encode_decode_round_trip_and_no_pickle(tmp_path):
    space = tiny_space(tmp_path)
    tables = sim_tables(MODELS, space, cache_dir=None)
    bad = next(iter(tables[0].results))
    tables[0].results[bad] = Measurement.failed("out of memory", space.cost_per_hour(bad))
    path = shipped.write_shipped(shipped.encode(tables, "test", "x"), tmp_path / "kb")
    doc = json.loads(gzip.decompress(path.read_bytes()))  # plain JSON, nothing else
    assert doc["space"] == "tiny" and doc["sim_version"] == "x"
    back = shipped.decode(doc, space)
    for t, b in zip(tables, back):
        assert b.name == t.name and b.objective == t.objective
        for c, m in t.results.items():
            got = b.results[c]
            assert got.ok == m.ok and got.cost_per_hour == m.cost_per_hour
            assert t.objective.value(got) == t.objective.value(m)  # feasible alike, same cost
            if m.capacity_rps is not None:
                assert got.capacity_rps == pytest.approx(m.capacity_rps, rel=1e-5)
    assert back[0].results[bad].error == "out of memory"


def test_stale_shipped_knowledge_is_not_used(tmp_path, monkeypatch, caplog):
    space = tiny_space(tmp_path)
    doc = shipped.encode(sim_tables(MODELS, space, cache_dir=None), "test", "old")
    shipped.write_shipped(doc, tmp_path / "kb")
    monkeypatch.setattr(shipped, "_sim_version", lambda: "new")
    with caplog.at_level(logging.WARNING):
        assert shipped.shipped_tables(space, tmp_path / "kb") == []
    assert "simulator version old (installed: new)" in caplog.text
    assert "autoconf prior shipped --build" in caplog.text


def test_a_search_history_is_the_shipped_knowledge_plus_the_users(tmp_path):
    space = load_space("gpu-default")
    base = shipped_tables(space)
    kb = KnowledgeBase(tmp_path / "kb.db")
    assert [t.name for t in history(kb, space, "mine")] == [t.name for t in base]
    assert history(None, space, "mine") == []  # --knowledge none: nothing
    # the user's own measurement of a shipped model's name replaces the shipped one
    c = space.configs()[0]
    kb.add_measurement(base[0].name, space, c, Measurement(True, 1.0, 5.0), Objective(10.0, 4.0))
    kb.add_measurement("other", space, c, Measurement(True, 1.0, 5.0), Objective(10.0, 4.0))
    got = history(kb, space, "other")
    assert [t.name for t in got] == [t.name for t in base[1:]] + [base[0].name]
    assert len(got[-1].results) == 1
    assert len(kb.tables()) == 2  # the shipped tables were never written to the user's store


SEEN: list[list[str]] = []


def make_spy(context):
    SEEN.append([t.name for t in context.history])
    return StaticOrderSampler(transfer_order(context))


def test_bench_train_shipped_leaves_the_evaluated_family_out(monkeypatch):
    monkeypatch.setitem(SAMPLERS, "spy", f"{__name__}:make_spy")
    train = load_dataset("shipped")
    assert {t.space.name for t in train} == {"gpu-default", "falcon"}
    evaluate = [t for t in train if t.name in ("gpt2_like@l~x40", "bert-base")]
    SEEN.clear()
    run_bench(train, evaluate, ["spy"], repeats=1, budget=2)
    for table, seen in zip(evaluate, SEEN):
        mates = [t for t in train if t.space.name == table.space.name]
        assert seen and not any(group_of(n) == group_of(table.name) for n in seen)
        assert len(seen) == len(mates) - sum(
            group_of(t.name) == group_of(table.name) for t in mates
        )


def test_a_bench_run_ends_at_the_optimum_and_keeps_its_curve(tmp_path):
    space = tiny_space(tmp_path)
    tables = sim_tables(MODELS, space, cache_dir=None)
    r = run_one("grid", tables[0], [], seed=0, budget=len(space.configs()))
    assert r.evals_to_optimum is not None
    assert r.repeats + r.evals_to_optimum >= r.evals_to_optimum  # counted, not re-measured
    assert len(r.best_so_far) == r.budget
    assert r.best_so_far[-1] == pytest.approx(r.optimum)
    assert r.best_so_far[r.evals_to_optimum - 1] == pytest.approx(r.optimum)


def test_cli_lists_the_shipped_knowledge(capsys):
    assert main(["prior", "shipped"]) == 0
    out = capsys.readouterr().out
    assert (
        f"gpu-default: {len(ZOO_MODELS) + len(ZOO_PERTURBED)} models" in out
        and "falcon: 18 models" in out
    )
    assert out.count("used by default") == 2


def test_measured_tables_outlive_a_price_change_but_not_a_lost_config(tmp_path, caplog):
    """Measured tables (Falcon's) do not depend on the catalog's specs or prices, only on their
    configs being in the space; simulated ones are rebuilt on any change of the space."""
    space = tiny_space(tmp_path)
    tables = sim_tables(MODELS, space, cache_dir=None)
    shipped.write_shipped(shipped.encode(tables, "measured", None), tmp_path / "m")
    shipped.write_shipped(
        shipped.encode(tables, "simulated", shipped._sim_version()), tmp_path / "s"
    )
    data = space.model_dump(mode="json")
    cheaper = SearchSpace.model_validate({**data, "pricing": {"cpu_core_per_hour": 0.01}})
    assert len(shipped.shipped_tables(cheaper, tmp_path / "m")) == 2
    with caplog.at_level(logging.WARNING):
        assert shipped.shipped_tables(cheaper, tmp_path / "s") == []
    assert "another definition of space 'tiny'" in caplog.text
    dims = {**data["dimensions"], "batch_size": [1, 4]}
    smaller = SearchSpace.model_validate({**data, "dimensions": dims})
    doc = shipped.read_document(tmp_path / "m" / "tiny.json.gz")
    assert "no longer in space 'tiny'" in (shipped.staleness(doc, smaller) or "")
