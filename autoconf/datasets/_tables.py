"""Directories of tables: Falcon tables, or this project's own format, read and written.

* **Falcon tables**: see :mod:`autoconf.datasets._falcon`.
* **autoconf tables** (written by :func:`write_tables`): a directory
  holding ``space.yaml`` (a search-space file, as in ``search_spaces/``) and one or more ``*.csv``
  with one row per (model, config):

  ``model`` | one column per dimension of the space (``batch_size``, ``gpu_type``, ...) |
  ``ok`` (1/0) | ``cost_per_hour`` | ``throughput_rps`` | ``capacity_rps`` | ``p50_ms`` |
  ``p95_ms`` | ``p99_ms`` | ``error_rate`` | ``error`` | ``offered_rps`` (optional) |
  ``slo_p99_ms`` | ``target_rps``

  Empty cells are missing values. ``slo_p99_ms``/``target_rps`` state the model's objective
  (the same on each of its rows; both empty = maximise rps per dollar). An optional
  ``features.json`` maps model names to their kops feature vectors.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from .._errors import UserError
from .._objective import Objective
from .._space import SearchSpace, load_space
from .._types import Config, Measurement, ModelTable
from ._falcon import FALCON_COLUMNS, falcon_table, is_falcon_csv

MEASUREMENT_COLUMNS = (
    "ok",
    "cost_per_hour",
    "throughput_rps",
    "capacity_rps",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "error_rate",
    "error",
    "offered_rps",
)
OBJECTIVE_COLUMNS = ("slo_p99_ms", "target_rps")


def _num(text: str) -> int | float:
    value = float(text)
    return int(value) if value.is_integer() and "." not in text else value


def _optional_float(text: str | None) -> float | None:
    if text is None or text.strip() == "":
        return None
    return float(text)


def _autoconf_tables(
    directory: Path, space: SearchSpace, features: dict[str, list[float]]
) -> list[ModelTable]:
    dims = space.dimension_names
    tables: dict[str, ModelTable] = {}
    for path in sorted(directory.glob("*.csv")):
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            missing = [
                c
                for c in ("model", *dims, "ok", "cost_per_hour")
                if c not in (reader.fieldnames or [])
            ]
            if missing:
                raise UserError(f"{path}: missing column(s) {', '.join(missing)}")
            for line, row in enumerate(reader, start=2):
                try:
                    values: dict[str, Any] = {
                        d: row[d].strip() if d == "gpu_type" else _num(row[d]) for d in dims
                    }
                    config = Config.from_dict(values)
                    m = Measurement(
                        ok=row["ok"].strip() in ("1", "true", "True"),
                        cost_per_hour=float(row["cost_per_hour"]),
                        throughput_rps=_optional_float(row.get("throughput_rps")),
                        capacity_rps=_optional_float(row.get("capacity_rps")),
                        p50_ms=_optional_float(row.get("p50_ms")),
                        p95_ms=_optional_float(row.get("p95_ms")),
                        p99_ms=_optional_float(row.get("p99_ms")),
                        error_rate=_optional_float(row.get("error_rate")) or 0.0,
                        error=(row.get("error") or None),
                        offered_rps=_optional_float(row.get("offered_rps")),
                    )
                    objective = Objective(
                        slo_p99_ms=_optional_float(row.get("slo_p99_ms")),
                        target_rps=_optional_float(row.get("target_rps")),
                    )
                except (KeyError, TypeError, ValueError) as exc:
                    raise UserError(f"{path}:{line}: bad row ({exc})") from None
                if not space.contains(config):
                    raise UserError(f"{path}:{line}: config {config.key()} is outside the space")
                model = row["model"].strip()
                table = tables.get(model)
                if table is None:
                    feats = features.get(model)
                    table = tables[model] = ModelTable(
                        model, space, objective, {}, None if feats is None else np.asarray(feats)
                    )
                elif table.objective != objective:
                    raise UserError(f"{path}:{line}: model {model!r} has two objectives")
                table.results[config] = m
    return list(tables.values())


def load_tables(directory: str | Path) -> list[ModelTable]:
    """Every model table in ``directory`` (Falcon tables or autoconf tables), sorted by name."""
    directory = Path(directory)
    if not directory.is_dir():
        raise UserError(f"table directory {str(directory)!r} not found")
    csvs = sorted(directory.glob("*.csv"))
    if not csvs:
        raise UserError(f"{directory}: no *.csv tables")
    falcon = [p for p in csvs if is_falcon_csv(p)]
    if falcon:
        if len(falcon) != len(csvs):
            other = next(p for p in csvs if p not in falcon)
            raise UserError(
                f"{other}: not a Falcon table (header must be {','.join(FALCON_COLUMNS)})"
            )
        space = load_space("falcon")
        tables = [falcon_table(p, space) for p in falcon]
    else:
        space_file = directory / "space.yaml"
        if not space_file.is_file():
            raise UserError(
                f"{directory}: neither Falcon tables nor an autoconf table directory (no space.yaml)"
            )
        space = load_space(space_file)
        features: dict[str, list[float]] = {}
        if (directory / "features.json").is_file():
            features = json.loads((directory / "features.json").read_text())
        tables = _autoconf_tables(directory, space, features)
    return sorted(tables, key=lambda t: t.name)


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def write_tables(tables: list[ModelTable], directory: str | Path) -> Path:
    """Write tables (one space) in the autoconf format: ``space.yaml``, ``tables.csv``, features."""
    if not tables:
        raise UserError("no tables to write")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    space = tables[0].space
    dims = space.dimension_names
    (directory / "space.yaml").write_text(
        yaml.safe_dump(space.model_dump(mode="json", exclude_defaults=False), sort_keys=False)
    )
    with (directory / "tables.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["model", *dims, *MEASUREMENT_COLUMNS, *OBJECTIVE_COLUMNS])
        for table in tables:
            for config, m in table.results.items():
                values = config.to_dict()
                writer.writerow(
                    [table.name]
                    + [_cell(values.get(d)) for d in dims]
                    + [_cell(getattr(m, c)) for c in MEASUREMENT_COLUMNS]
                    + [_cell(table.objective.slo_p99_ms), _cell(table.objective.target_rps)]
                )
    features = {t.name: [float(x) for x in t.features] for t in tables if t.features is not None}
    if features:
        (directory / "features.json").write_text(json.dumps(features))
    return directory
