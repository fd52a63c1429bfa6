"""Contracts every registered sampler and backend must keep (parametrized over the registries,
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
