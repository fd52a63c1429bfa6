"""What a user installs: the wheel carries the search spaces and type markers and works from an
install; the declared dependencies are the imported ones; the cache dir is configurable."""

from __future__ import annotations

import ast
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from autoconf._cache import cache_dir

tomllib = pytest.importorskip("tomllib", reason="tomllib is Python >= 3.11")

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("autoconf", "kops", "stress")


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("AUTOCONF_CACHE_DIR", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    monkeypatch.delenv("AUTOCONF_CACHE_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "h"))
    assert cache_dir() == tmp_path / "h" / ".cache" / "autoconf"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel ``pip wheel`` builds from a copy of the sources (offline: no build isolation)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    for pkg in PACKAGES:
        shutil.copytree(ROOT / pkg, src / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("wheel")
    cmd = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
    done = subprocess.run([*cmd, "-w", str(out), str(src)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    (path,) = out.glob("autoconf-*.whl")
    return path


def test_wheel_ships_the_spaces_the_license_and_type_markers(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    spaces = sorted(p.name for p in (ROOT / "autoconf" / "search_spaces").glob("*.yaml"))
    assert {"cpu-local.yaml", "gpu-default.yaml", "falcon.yaml"} <= set(spaces)
    for space in spaces:
        assert f"autoconf/search_spaces/{space}" in names
    for pkg in PACKAGES:
        assert f"{pkg}/py.typed" in names
    for shipped in ("gpu-default.json.gz", "falcon.json.gz", "NOTICE"):
        assert f"autoconf/prior/shipped/{shipped}" in names
    assert any(re.search(r"\.dist-info/(licenses/)?LICENSE$", n) for n in names), names
    import autoconf

    assert wheel.name.startswith(f"autoconf-{autoconf.__version__}-")


def test_installed_wheel_finds_its_shipped_space(wheel, tmp_path):
    """Unpacked into a folder of its own (what an install does), away from the source tree."""
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = (
        "import autoconf, kops, sys; "
        "print(autoconf.__file__); print(autoconf.load_space('cpu-local').name); "
        "from autoconf.prior import shipped_tables; "
        "print(len(shipped_tables('gpu-default')), len(shipped_tables('falcon'))); "
        "print('torch' in sys.modules)"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    where, name, n_sim, n_falcon, torch_loaded = done.stdout.split()
    assert where.startswith(str(site)) and name == "cpu-local"
    assert int(n_sim) >= 20 and int(n_falcon) == 18  # the knowledge that ships, readable
    assert torch_loaded == "False"  # the core install needs no torch


def _imports(pkg: str) -> dict[str, bool]:
    """Top-level modules imported by ``pkg`` -> whether the import is optional (inside a
    ``try`` that catches ImportError)."""
    found: dict[str, bool] = {}

    def visit(node: ast.AST, optional: bool) -> None:
        if isinstance(node, ast.Try):
            catches = any(
                h.type is not None and "ImportError" in ast.unparse(h.type) for h in node.handlers
            )
            for child in node.body:
                visit(child, optional or catches)
            for child in [*node.handlers, *node.orelse, *node.finalbody]:
                visit(child, optional)
            return
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        for n in names:
            top = n.split(".")[0]
            found[top] = found.get(top, True) and optional
        for child in ast.iter_child_nodes(node):
            visit(child, optional)

    for path in (ROOT / pkg).rglob("*.py"):
        visit(ast.parse(path.read_text()), False)
    return found


def _dist_names(requirements: list[str]) -> set[str]:
    return {
        re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].lower().replace("_", "-") for r in requirements
    }


#: Modules that only an extra provides (imported by code a user runs on demand) -> (extra, dist).
EXTRA_MODULES = {"torch": ("zoo", "torch"), "pytriton": ("triton", "nvidia-pytriton")}


def test_declared_dependencies_are_the_imported_ones():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = _dist_names(project["dependencies"])
    extras = project["optional-dependencies"]
    dists = importlib.metadata.packages_distributions()
    first_party = {*PACKAGES, "stress_locustfile"}  # the latter: generated by stress for Locust
    required: set[str] = set()
    optional: set[str] = set()
    for pkg in PACKAGES:
        for top, is_optional in _imports(pkg).items():
            if top in sys.stdlib_module_names or top in first_party:
                continue
            if top in EXTRA_MODULES:
                extra, dist = EXTRA_MODULES[top]
                assert dist in _dist_names(extras[extra]) and dist not in core, (top, extra)
                continue
            if is_optional and top not in dists:
                continue  # an optional speed-up this environment lacks
            assert top in dists, f"{pkg} imports {top!r}, which no installed distribution provides"
            names = {d.lower().replace("_", "-") for d in dists[top]}
            (optional if is_optional else required).update(names)
    assert required <= core, f"imported, not declared: {required - core}"
    drivers = {"psycopg"}  # loaded by SQLAlchemy for a postgresql:// --storage URL, not imported
    assert core - drivers <= required, f"declared, never imported: {core - drivers - required}"
    assert not (optional - core - {"orjson"}), optional
