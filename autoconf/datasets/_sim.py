"""Ground-truth tables from the simulator: every config of a space for each model, cached."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._cache import cache_dir as _cache_root
from .._errors import UserError
from .._objective import Objective
from .._simulator import SIM_VERSION, SimModel, choose_objective, seed_of, simulate_configs
from .._space import SearchSpace, load_space
from .._types import Load, ModelTable
from ._tables import load_tables, write_tables


def sim_cache_dir() -> Path:
    """Where simulated tables are cached."""
    return _cache_root() / "sim"


def _write_cache(table: ModelTable, cached: Path) -> None:
    """Write ``table`` to ``cached`` all at once (a folder renamed into place), so that a
    process reading the shared cache never sees half a table; the first writer wins."""
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{cached.name}-", dir=cached.parent))
    write_tables([table], tmp)
    try:
        os.rename(tmp, cached)
    except OSError:  # another process cached the same table meanwhile: keep theirs
        shutil.rmtree(tmp, ignore_errors=True)


def sim_tables(
    profiles: Sequence[Any],
    space: SearchSpace | None = None,
    *,
    objectives: Sequence[Objective | None] | None = None,
    seed: int = 0,
    cache_dir: str | Path | None | bool = True,
) -> list[ModelTable]:
    """Ground truth: every config of ``space`` (default ``gpu-default``) for each model.

    ``profiles`` are kops ``ModelProfile`` objects (or :class:`SimModel`). A model without an
    objective gets one from :func:`choose_objective`. Tables are cached under ``cache_dir``
    (``True``: the user's cache, see :func:`autoconf._cache.cache_dir`; ``None``: no cache),
    keyed by model numbers, space, objective, seed and the sim's version.
    """
    if cache_dir is True:
        cache_dir = sim_cache_dir()

    space = space or load_space("gpu-default")
    tables = []
    for i, profile in enumerate(profiles):
        model = SimModel.from_profile(profile)
        given = objectives[i] if objectives is not None else None
        key = seed_of(SIM_VERSION, model.key(), space.model_dump_json(), given, seed)
        cached = Path(cache_dir) / f"{model.name}-{key:016x}" if cache_dir else None
        if cached is not None and (cached / "tables.csv").is_file():
            table = load_tables(cached)[0]
        else:
            objective = given or choose_objective(model, space, seed)
            configs = space.configs()
            for _ in range(4):
                load = Load(slo_p99_ms=objective.slo_p99_ms, target_rps=objective.target_rps)
                results = dict(zip(configs, simulate_configs(model, space, configs, load, seed)))
                if given or any(objective.feasible(m) for m in results.values()):
                    break
                # the prediction was off (noise at the boundary): halve the load and re-simulate
                assert objective.target_rps is not None  # choose_objective always sets one
                objective = Objective(
                    objective.slo_p99_ms, float(f"{objective.target_rps / 2:.3g}")
                )
            feats = np.asarray(model.features) if model.features else None
            table = ModelTable(model.name, space, objective, results, feats)
            if cached is not None:
                _write_cache(table, cached)
        tables.append(table)
    return tables


def onnx_dir_tables(
    directory: str | Path,
    *,
    seed: int = 0,
    space: SearchSpace | None = None,
    cache_dir: str | Path | None | bool = True,
) -> list[ModelTable]:
    """``sim:DIR``: every ONNX model in ``directory``, profiled with kops, simulated."""
    directory = Path(directory)
    paths = sorted(directory.glob("*.onnx")) if directory.is_dir() else []
    if not paths:
        raise UserError(f"sim:{directory}: no *.onnx models there")
    try:
        import kops
    except ImportError:
        raise UserError("sim:DIR needs kops to profile the models") from None
    profiles = [SimModel.from_profile(kops.profile(p), name=p.stem) for p in paths]
    return sim_tables(profiles, space, seed=seed, cache_dir=cache_dir)
