"""Shared fixtures, and a session-private HOME and cache: the suite never reads or writes the
user's home (the knowledge base default ``~/.autoconf``, the cache ``~/.cache/autoconf``).

Set at import, before any test module imports autoconf (some defaults are read at import).
"""

from __future__ import annotations

import os
import shutil
import site
import tempfile
from pathlib import Path

import pytest

_SESSION_DIR = Path(tempfile.mkdtemp(prefix="autoconf-tests-"))
# a user-site install (pip install --user) stays importable in subprocesses after HOME moves
os.environ.setdefault("PYTHONUSERBASE", site.getuserbase())
os.environ["HOME"] = str(_SESSION_DIR / "home")
os.environ["AUTOCONF_CACHE_DIR"] = str(_SESSION_DIR / "cache")
(_SESSION_DIR / "home").mkdir()


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(_SESSION_DIR, ignore_errors=True)


@pytest.fixture(scope="session")
def zoo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every ``kops.zoo`` model exported once per session at its default (small) size.

    The directory holds ``<name>.onnx`` for each name in ``kops.zoo.MODELS``.
    """
    import kops

    out = tmp_path_factory.mktemp("zoo")
    for name in kops.zoo.MODELS:
        kops.zoo.build(name, out)
    return out


@pytest.fixture(scope="session")
def relu_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-node ONNX model (Relu, float input ``x`` of shape [N, 4]) for deployment tests."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    path = tmp_path_factory.mktemp("relu") / "tiny.onnx"
    onnx.save(helper.make_model(graph), path)
    return path
