"""Contracts every registered sampler, stopping rule and backend must keep (parametrized over the registries,
as Optuna's tests are over its samplers), and the package layering rule."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import optuna
import pytest
from _tiny import MODELS, tiny_space

import stress
from autoconf import Objective
from autoconf._study import run_trials
from autoconf.backends import BACKENDS, Backend
from autoconf.datasets import sim_tables
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


@pytest.mark.parametrize("name", sorted(stress.DEPLOYERS))
def test_every_deployer_is_a_complete_deployer_registered_under_its_name(name):
    module, cls = stress.DEPLOYERS[name].split(":")
    deployer_cls = getattr(importlib.import_module(module), cls)
    assert issubclass(deployer_cls, stress.Deployer) and deployer_cls.name == name
    assert not deployer_cls.__abstractmethods__, "deploy and cleanup must be implemented"


def _module_of(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_only(tree: ast.AST) -> set[int]:
    """ids of the import nodes under ``if TYPE_CHECKING:`` (never run, so no runtime edge)."""
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return skipped


def _imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports at run time, at any depth (function bodies included), as
    absolute names; ``from M import x`` also yields ``M.x`` (x may be a submodule)."""
    module = _module_of(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    skipped = _type_checking_only(tree)
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                mod = f"{base}.{node.module}" if node.module else base
            else:
                mod = node.module or ""
            found.add(mod)
            found.update(f"{mod}.{a.name}" for a in node.names)
    return found


def test_autoconf_uses_only_the_public_api_of_kops_and_stress():
    private = sorted(
        f"{path.relative_to(ROOT)}: {mod}"
        for path in (ROOT / "autoconf").rglob("*.py")
        for mod in _imported_modules(path)
        if mod.split(".")[0] in ("kops", "stress")
        and any(p.startswith("_") for p in mod.split(".")[1:])
    )
    assert not private, "autoconf imports private modules of kops/stress:\n" + "\n".join(private)


def _autoconf_graph() -> dict[str, set[str]]:
    """Import edges between autoconf's units: its subpackages (``autoconf.backends``) and its
    top-level modules (``autoconf._search``); the package root, a facade, is left out."""
    paths = list((ROOT / "autoconf").rglob("*.py"))
    units = {".".join(_module_of(p).split(".")[:2]) for p in paths} - {"autoconf"}

    def unit(module: str) -> str | None:
        name = ".".join(module.split(".")[:2])
        return name if name in units else None

    graph: dict[str, set[str]] = {u: set() for u in units}
    for path in paths:
        src = unit(_module_of(path))
        for mod in _imported_modules(path) if src else ():
            dst = unit(mod)
            if dst is not None and dst != src:
                graph[src].add(dst)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one unit (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = stack[stack.index(v) :]
            del stack[stack.index(v) :]
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle_between_autoconf_subpackages_and_modules():
    cycles = _cycles(_autoconf_graph())
    assert not cycles, "import cycles in autoconf (function-level imports count):\n" + "\n".join(
        " <-> ".join(c) for c in cycles
    )
