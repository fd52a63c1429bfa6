"""The knowledge base and the prior learned from it (see ``_store`` and ``_model``)."""

from ._model import Prior, config_features, load_prior, train_prior
from ._store import KnowledgeBase, import_tables

__all__ = [
    "KnowledgeBase",
    "Prior",
    "config_features",
    "import_tables",
    "load_prior",
    "train_prior",
]
