"""autoconf search on the simulated GPU cluster (``sim``) with the real kops profile, the meta
sampler and a knowledge base: plan, manifests, knowledge fed back, then ``validate``."""

from __future__ import annotations

import pytest
import yaml

import kops
import stress
from autoconf import cli
from autoconf.prior import KnowledgeBase


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return kops.zoo.build("tiny_mlp", tmp_path_factory.mktemp("m") / "tiny_mlp.onnx")


def test_sim_search_writes_a_valid_plan_and_feeds_the_knowledge_base(model, tmp_path, capsys):
    kb = tmp_path / "kb.db"
    out = tmp_path / "out"
    argv = [
        "search",
        str(model),
        "--slo-p99",
        "20ms",
        "--qps",
        "400",
        "--space",
        "gpu-default",
        "--backend",
        "sim",
        "--budget",
        "10",
        "--out",
        str(out),
        "--knowledge",
        str(kb),
        "--no-progress",
        "--kserve",
        "--model-uri",
        "s3://bucket/models/x.onnx",
    ]
    assert cli.main(argv) == 0, capsys.readouterr().err
    plan = yaml.safe_load((out / "plan.yaml").read_text())
    assert plan["provenance"]["sampler"] == "meta"
    assert plan["provenance"]["kops_profile"]["features"]
    assert plan["measured"]["p99_ms"] <= 20 and plan["load"]["target_rps"] == 400
    docs = [yaml.safe_load(p.read_text()) for p in sorted((out / "manifests").glob("*.yaml"))]
    kinds = {d["kind"] for d in docs}
    assert kinds == {"ConfigMap", "InferenceService"}  # instead of the Deployment: one rollout
    stress.validate_manifests(docs)  # strict, offline, the real schemas
    isvc = next(d for d in docs if d["kind"] == "InferenceService")
    assert isvc["spec"]["predictor"]["minReplicas"] == plan["config"]["replicas"]
    assert isvc["spec"]["predictor"]["model"]["storageUri"] == "s3://bucket/models/x.onnx"
    with KnowledgeBase(kb) as store:
        tables = store.tables("gpu-default")
    assert len(tables) == 1 and len(tables[0].results) == plan["provenance"]["configs_measured"]

    capsys.readouterr()
    assert cli.main(["validate", str(out / "plan.yaml")]) == 0
    assert capsys.readouterr().out.startswith("holds: ")
