"""Datasets of model tables (every config of a space measured or simulated for each model):
Falcon's and this project's CSV tables, tables simulated from ONNX models, and the simulated
zoo with its train/eval split. Simulated tables and zoo profiles are cached under
:func:`autoconf._cache.cache_dir`."""

from ._falcon import FALCON_COLUMNS, falcon_table, is_falcon_csv
from ._sim import onnx_dir_tables, sim_cache_dir, sim_tables
from ._tables import load_tables, write_tables
from ._zoo import (
    ZOO_EVAL_FAMILIES,
    ZOO_MODELS,
    ZOO_PERTURBED,
    zoo_models,
    zoo_profile,
    zoo_tables,
)

__all__ = [
    "FALCON_COLUMNS",
    "ZOO_EVAL_FAMILIES",
    "ZOO_MODELS",
    "ZOO_PERTURBED",
    "falcon_table",
    "is_falcon_csv",
    "load_tables",
    "onnx_dir_tables",
    "sim_cache_dir",
    "sim_tables",
    "write_tables",
    "zoo_models",
    "zoo_profile",
    "zoo_tables",
]
