"""The knowledge base: every profiled model and every finished trial, in one SQLite file.

Tables (prefixed ``autoconf_kb_`` so they can live beside Optuna's RDB tables in the same
``sqlite:///file.db``): models (name, kops features as JSON, profile JSON), spaces (the space
file as JSON) and measurements (model, space, config, measurement, objective). JSON only,
never pickle.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np

from .._errors import UserError
from .._objective import Objective
from .._secrets import redact
from .._space import SearchSpace, load_space
from .._types import Config, Measurement, ModelTable

_SCHEMA = """
CREATE TABLE IF NOT EXISTS autoconf_kb_models (
    name TEXT PRIMARY KEY, features TEXT, feature_version TEXT, profile TEXT);
CREATE TABLE IF NOT EXISTS autoconf_kb_spaces (name TEXT PRIMARY KEY, space TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS autoconf_kb_measurements (
    model TEXT NOT NULL, space TEXT NOT NULL, config TEXT NOT NULL, measurement TEXT NOT NULL,
    slo_p99_ms REAL, target_rps REAL,
    PRIMARY KEY (model, space, config));
"""


def _path_of(url_or_path: str | Path) -> Path:
    text = str(url_or_path)
    if text.startswith("sqlite:///"):
        text = text[len("sqlite:///") :]
    elif "://" in text:
        raise UserError(
            f"knowledge base {redact(text)!r}: only sqlite:///FILE or a file path is supported"
        )
    return Path(text)


class KnowledgeBase:
    """The store of models and measurements the prior is trained from."""

    def __init__(self, url_or_path: str | Path) -> None:
        self.path = _path_of(url_or_path)
        if self.path.parent and not self.path.parent.exists():
            raise UserError(f"knowledge base {str(self.path)!r}: directory does not exist")
        try:
            self._db = sqlite3.connect(str(self.path), check_same_thread=False)
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise UserError(f"knowledge base {str(self.path)!r}: {exc}") from None

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> KnowledgeBase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add_model(
        self,
        name: str,
        features: np.ndarray | list[float] | None,
        profile_json: str | dict[str, Any] | None = None,
        feature_version: str | None = None,
    ) -> None:
        """Insert or replace one model (its kops features and profile)."""
        feats = None if features is None else json.dumps([float(x) for x in features])
        prof = (
            profile_json
            if profile_json is None or isinstance(profile_json, str)
            else json.dumps(profile_json)
        )
        with self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO autoconf_kb_models VALUES (?, ?, ?, ?)",
                (name, feats, feature_version, prof),
            )

    def add_space(self, space: SearchSpace) -> None:
        with self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO autoconf_kb_spaces VALUES (?, ?)",
                (space.name, json.dumps(space.model_dump(mode="json"))),
            )

    def add_measurement(
        self,
        model_name: str,
        space_name: str | SearchSpace,
        config: Config,
        measurement: Measurement,
        objective: Objective,
    ) -> None:
        """Record one finished trial (the latest measurement of a config wins)."""
        if isinstance(space_name, SearchSpace):
            self.add_space(space_name)
            space_name = space_name.name
        with self._db:
            self._db.execute(
                "INSERT OR IGNORE INTO autoconf_kb_models (name) VALUES (?)", (model_name,)
            )
            self._db.execute(
                "INSERT OR REPLACE INTO autoconf_kb_measurements VALUES (?, ?, ?, ?, ?, ?)",
                (
                    model_name,
                    space_name,
                    json.dumps(config.to_dict(), sort_keys=True),
                    json.dumps(measurement.to_dict()),
                    objective.slo_p99_ms,
                    objective.target_rps,
                ),
            )

    def space(self, name: str) -> SearchSpace:
        row = self._db.execute(
            "SELECT space FROM autoconf_kb_spaces WHERE name = ?", (name,)
        ).fetchone()
        if row is not None:
            return SearchSpace.model_validate(json.loads(row[0]))
        return load_space(name)

    def model_names(self) -> list[str]:
        return [r[0] for r in self._db.execute("SELECT name FROM autoconf_kb_models ORDER BY name")]

    def tables(self, space: str | SearchSpace | None = None) -> list[ModelTable]:
        """One ModelTable per (model, space) with measurements, sorted by model name."""
        space_name = space.name if isinstance(space, SearchSpace) else space
        query = "SELECT model, space, config, measurement, slo_p99_ms, target_rps FROM autoconf_kb_measurements"
        args: tuple = ()
        if space_name is not None:
            query += " WHERE space = ?"
            args = (space_name,)
        features = {
            name: None if f is None else np.asarray(json.loads(f))
            for name, f in self._db.execute("SELECT name, features FROM autoconf_kb_models")
        }
        spaces: dict[str, SearchSpace] = {}
        if isinstance(space, SearchSpace):
            spaces[space.name] = space
        out: dict[tuple[str, str], ModelTable] = {}
        for model, sname, config, meas, slo, target in self._db.execute(
            query + " ORDER BY rowid", args
        ):
            if sname not in spaces:
                spaces[sname] = self.space(sname)
            key = (model, sname)
            if key not in out:
                out[key] = ModelTable(
                    model, spaces[sname], Objective(slo, target), {}, features.get(model)
                )
            out[key].results[Config.from_dict(json.loads(config))] = Measurement(**json.loads(meas))
        return sorted(out.values(), key=lambda t: (t.name, t.space.name))


def import_tables(kb: KnowledgeBase, tables: list[ModelTable]) -> int:
    """Importer: every row of every table (Falcon or autoconf format) into ``kb``."""
    n = 0
    for t in tables:
        kb.add_space(t.space)
        kb.add_model(t.name, t.features)
        with kb._db:
            kb._db.executemany(
                "INSERT OR REPLACE INTO autoconf_kb_measurements VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (
                        t.name,
                        t.space.name,
                        json.dumps(c.to_dict(), sort_keys=True),
                        json.dumps(m.to_dict()),
                        t.objective.slo_p99_ms,
                        t.objective.target_rps,
                    )
                    for c, m in t.results.items()
                ],
            )
        n += len(t.results)
    return n
