"""A finished ``autoconf search`` opened with plain Optuna (what optuna-dashboard does): the
objective is named, failed and infeasible trials carry a violated Optuna constraint, and
``study.best_trial`` is the plan's config."""

from __future__ import annotations

import optuna
import pytest
import yaml
from _tiny import TINY_MEMORY_SPACE

import kops
from autoconf import cli

#: Two GPUs: a cheap one too small for any model (every config on it runs out of memory) and a
#: dearer one that fits. Every config's cost differs, so the best is unique. Without Optuna
#: constraints the cheapest out-of-memory config would be Optuna's best trial.
SPACE = TINY_MEMORY_SPACE


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A sim search that measured all 24 configs of the space."""
    tmp = tmp_path_factory.mktemp("native")
    model = kops.zoo.build("tiny_mlp", tmp / "tiny_mlp.onnx")
    space = tmp / "space.yaml"
    space.write_text(SPACE)
    out = tmp / "out"
    argv = ["search", str(model), "--slo-p99", "20ms", "--qps", "400", "--space", str(space)]
    argv += ["--backend", "sim", "--budget", "24", "--sampler", "tpe", "--out", str(out)]
    argv += ["--knowledge", "none", "--no-progress"]
    assert cli.main(argv) == 0
    return out


def _study(out) -> optuna.Study:
    storage = f"sqlite:///{out / 'study.db'}"
    (name,) = optuna.study.get_all_study_names(storage)
    return optuna.load_study(study_name=name, storage=storage)


def test_best_trial_is_the_plans_config(finished):
    study = _study(finished)
    plan = yaml.safe_load((finished / "plan.yaml").read_text())
    best = study.best_trial
    assert best.params == plan["config"]
    assert best.value == pytest.approx(plan["cost_per_hour"])
    assert study.metric_names == ["cost_per_hour_usd"]
    assert best.constraints == {"0": 0.0}
    assert best.user_attrs["config"] and best.user_attrs["p99_ms"] <= 20


def test_no_out_of_memory_trial_is_complete_and_feasible(finished):
    study = _study(finished)
    complete = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    oom = [t for t in complete if "out of GPU memory" in t.user_attrs.get("error", "")]
    assert oom, "the space's SMALL GPU must run out of memory"
    assert all(t.params["gpu_type"] == "SMALL" for t in oom)
    assert all(any(v > 0 for v in t.constraints.values()) for t in oom)
    # what made Optuna's best trial an out-of-memory config before: it is the cheapest value
    assert min(t.value for t in oom) < study.best_trial.value
    # every complete trial is constrained: feasible exactly when the trial record says so
    for t in complete:
        assert (t.constraints["0"] <= 0) == t.user_attrs["feasible"]
