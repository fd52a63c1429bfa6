"""Knowledge base (SQLite, JSON rows) and prior artifacts (safetensors + JSON, no pickle)."""

from __future__ import annotations

import numpy as np
import pytest

from autoconf import Measurement, ModelTable, Objective, SearchSpace, UserError
from autoconf.cli import main
from autoconf.prior import KnowledgeBase, import_tables, load_prior, train_prior


def small_space(gpus=("T4", "V100")) -> SearchSpace:
    catalog = {
        "T4": dict(
            fp16_tflops=65, fp32_tflops=8, memory_gb=16, bandwidth_gbps=320, price_per_hour=0.5
        ),
        "V100": dict(
            fp16_tflops=125, fp32_tflops=16, memory_gb=16, bandwidth_gbps=900, price_per_hour=3
        ),
        "L4": dict(
            fp16_tflops=121, fp32_tflops=30, memory_gb=24, bandwidth_gbps=300, price_per_hour=0.6
        ),
    }
    return SearchSpace.model_validate(
        {
            "name": "small",
            "dimensions": {
                "batch_size": [1, 4, 16],
                "gpu_type": list(gpus),
                "replicas": [1],
                "cpu_cores": [1, 2],
            },
            "gpus": {g: catalog[g] for g in gpus},
            "pricing": {"cpu_core_per_hour": 0.05},
        }
    )


def table(name: str, space: SearchSpace, scale: float, features=None) -> ModelTable:
    results = {
        c: Measurement(
            ok=True, cost_per_hour=space.cost_per_hour(c), throughput_rps=scale * c.batch_size
        )
        for c in space.configs()
    }
    return ModelTable(name, space, Objective(), results, features)


def test_store_round_trip(tmp_path):
    space = small_space()
    with KnowledgeBase(f"sqlite:///{tmp_path / 'kb.db'}") as kb:
        kb.add_space(space)
        kb.add_model("m1", np.array([1.0, 2.0]), {"flops": 3})
        c = space.configs()[3]
        m = Measurement(ok=True, cost_per_hour=1.5, throughput_rps=10.0, p99_ms=4.0)
        kb.add_measurement("m1", "small", c, m, Objective(slo_p99_ms=5.0))
        kb.add_measurement("m1", "small", c, m, Objective(slo_p99_ms=5.0))  # replaces, no duplicate
        tables = kb.tables("small")
    assert len(tables) == 1
    t = tables[0]
    assert t.name == "m1" and t.space.name == "small" and t.objective == Objective(slo_p99_ms=5.0)
    assert t.results == {c: m}
    assert list(t.features) == [1.0, 2.0]


def test_import_then_train_then_load(tmp_path):
    space = small_space()
    tables = [table(f"m{k}", space, 1.0 + k) for k in range(4)]
    with KnowledgeBase(tmp_path / "kb.db") as kb:
        assert import_tables(kb, tables) == 4 * space.size()
        back = kb.tables()
    prior = train_prior(back)
    assert prior.model_names == ["m0", "m1", "m2", "m3"] and prior.kind == "value"
    path = prior.save(tmp_path / "p.safetensors")
    loaded = load_prior(path)
    assert loaded.model_names == prior.model_names
    np.testing.assert_allclose(loaded.scores, prior.scores)
    np.testing.assert_allclose(loaded.ridge_weights, prior.ridge_weights)
    # the regression gives an unseen GPU type a prediction from its specs
    wider = small_space(("T4", "V100", "L4"))
    new = [c for c in wider.configs() if c.gpu_type == "L4"]
    pred = loaded.matrix_for(wider, new)
    assert pred.shape == (4, len(new)) and np.isfinite(pred).all()


def test_load_prior_rejects_garbage(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x80\x04not a safetensors file")
    (tmp_path / "bad.safetensors.json").write_text("{}")
    with pytest.raises(UserError):
        load_prior(bad)
    with pytest.raises(UserError):
        load_prior(tmp_path / "missing.safetensors")


def test_cli_train_from_store_and_bad_input(tmp_path, capsys):
    space = small_space()
    with KnowledgeBase(tmp_path / "kb.db") as kb:
        import_tables(kb, [table("a", space, 1.0), table("b", space, 2.0)])
    out = tmp_path / "prior.safetensors"
    assert main(["prior", "train", "--from", str(tmp_path / "kb.db"), "--out", str(out)]) == 0
    assert load_prior(out).model_names == ["a", "b"]
    assert main(["prior", "train", "--from", str(tmp_path / "nope.db"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("autoconf: error:") and "not found" in err


def test_the_training_slos_travel_with_the_prior(tmp_path):
    """Each training model's SLO is kept (what a config's chance of meeting a target's SLO at
    all depends on), through save and load; a model without one leaves none."""
    space = small_space()
    tables = [
        ModelTable(f"m{k}", space, Objective(slo_p99_ms=5.0 * (k + 1)), t.results)
        for k, t in enumerate(table(f"m{k}", space, 1.0 + k) for k in range(3))
    ]
    prior = train_prior(tables)
    np.testing.assert_allclose(prior.model_slo_ms, [5.0, 10.0, 15.0])
    loaded = load_prior(prior.save(tmp_path / "p.safetensors"))
    np.testing.assert_allclose(loaded.model_slo_ms, [5.0, 10.0, 15.0])
    assert train_prior([*tables, table("x", space, 2.0)]).model_slo_ms is None
