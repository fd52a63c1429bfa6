"""The knowledge base, the knowledge that ships with the package, and the prior learned from
them (see ``_store``, ``_shipped`` and ``_model``)."""

from ._model import (
    CAPACITY_FLOOR_RPS,
    FLOOR_SCORE,
    FeaturePrediction,
    Prior,
    config_features,
    load_prior,
    measurement_score,
    train_prior,
)
from ._shipped import shipped_all, shipped_tables
from ._store import KnowledgeBase, import_tables

__all__ = [
    "CAPACITY_FLOOR_RPS",
    "FLOOR_SCORE",
    "FeaturePrediction",
    "KnowledgeBase",
    "Prior",
    "config_features",
    "import_tables",
    "load_prior",
    "measurement_score",
    "shipped_all",
    "shipped_tables",
    "train_prior",
]
