"""Shared fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest


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
