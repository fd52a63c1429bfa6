"""Contracts every registered sampler, stopping rule and backend must keep (parametrized over the registries,
as Optuna's tests are over its samplers), and the package layering rule."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import optuna
import pytest
from _tiny import MODELS, tiny_space

from autoconf import Objective
from autoconf._study import run_trials
from autoconf.backends import BACKENDS, Backend
from autoconf.backends._sim import sim_tables
from autoconf.samplers import SAMPLERS, SamplerContext, make_sampler
from autoconf.stopping import (
    STOPPING_RULES,
    StoppingContext,
    StoppingRule,
    make_stopping_rule,
    rule_for_sampler,
)

ROOT = Path(__file__).resolve().parent.parent
OBJECTIVES = {
    "cost-at-load": Objective(slo_p99_ms=30.0, target_rps=1500.0),
    "rps-per-dollar": Objective(slo_p99_ms=30.0),
}


@pytest.fixture(scope="module", params=list(OBJECTIVES))
def tables(request, tmp_path_factory):
    space = tiny_space(tmp_path_factory.mktemp("reg"))
    objective = OBJECTIVES[request.param]
    return sim_tables(MODELS, space, objectives=[objective] * len(MODELS), cache_dir=None)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_every_sampler_searches_the_space_without_repeats(name, tables):
    target, history = tables[0], tables[1:]
    context = SamplerContext(
        space=target.space,
        objective=target.objective,
        seed=3,
        target_features=target.features,
        history=history,
    )
    sampler = make_sampler(name, context)
    assert isinstance(sampler, optuna.samplers.BaseSampler)
    study = optuna.create_study(sampler=sampler, direction=target.objective.direction)
    measured = []

    def evaluate(config):
        assert target.space.contains(config), config
        measured.append(config)
        return target.results[config]

    budget = 12
    log = run_trials(study, target.space, target.objective, evaluate, budget, seed=3)
    assert len(log.evaluations) == len(measured) == budget
    assert len(set(measured)) == budget, "a config was measured twice"
    best = log.best(target.objective)
    feasible = [e.value for e in log.evaluations if e.value is not None]
    if feasible:
        expected = min(feasible) if target.objective.direction == "minimize" else max(feasible)
        assert best.value == expected


@pytest.mark.parametrize("name", sorted(STOPPING_RULES))
def test_every_stopping_rule_is_an_optuna_terminator_the_loop_can_call(name, tables):
    """Built from its sampler's context: a StoppingRule (an Optuna terminator), False on an
    empty study, a confidence in [0, 1] or None, and the loop ends where it says stop."""
    target, history = tables[0], tables[1:]
    sampler_name = name if name in SAMPLERS else "random"
    assert rule_for_sampler(sampler_name) == name
    context = SamplerContext(target.space, target.objective, 0, target.features, history)
    sampler = make_sampler(sampler_name, context)
    rule = make_stopping_rule(name, StoppingContext(target.objective, sampler))
    assert isinstance(rule, StoppingRule)
    assert isinstance(rule, optuna.terminator.BaseTerminator)
    study = optuna.create_study(sampler=sampler, direction=target.objective.direction)
    assert rule(study) is False and rule.should_terminate(study) is False
    log = run_trials(
        study, target.space, target.objective, target.results.__getitem__, 30, should_stop=rule
    )
    conf = rule.confidence(study)
    assert conf is None or 0.0 <= conf <= 1.0
    if len(log.evaluations) < 30:
        assert rule(study)  # it stopped the loop, and says so


def test_unknown_stopping_rule_is_a_user_error():
    from autoconf import UserError

    with pytest.raises(UserError, match="unknown stopping rule"):
        make_stopping_rule("nope", StoppingContext(Objective()))
    assert rule_for_sampler("tpe") == "never"


@pytest.mark.parametrize("name", sorted(BACKENDS))
def test_every_backend_is_a_backend_registered_under_its_name(name):
    module, cls = BACKENDS[name].split(":")
    backend_cls = getattr(importlib.import_module(module), cls)
    assert issubclass(backend_cls, Backend) and backend_cls.name == name


def _imports(package: str) -> set[str]:
    found = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize(
    ("package", "forbidden"), [("kops", {"autoconf", "stress"}), ("stress", {"autoconf"})]
)
def test_data_flows_one_way(package, forbidden):
    assert not (_imports(package) & forbidden), f"{package} reaches back up the chain"
