"""The knowledge that ships with the package: read-only base knowledge for a new user's first search.

A new user's knowledge base (``~/.autoconf/knowledge.db``) starts empty; without history the
``meta`` sampler has no prior. So the package carries, per search space it can say something
about, the tables it already has:

* ``gpu-default``: the simulated zoo (:func:`autoconf.datasets.zoo_tables`, every config of every
  zoo model, from :mod:`autoconf._simulator`);
* ``falcon``: the 18 Falcon tables (dos-lab/Falcon, Apache-2.0, see ``shipped/NOTICE``).

``cpu-local`` gets none: the simulator models GPU serving (its ``cpu`` pseudo-GPU has no compute
to simulate), not ONNX Runtime on the user's own cores, so its tables would not transfer.

Format: one gzipped JSON file per space under ``autoconf/prior/shipped/`` (never pickle): the
configs as one column per dimension, and per model its name, kops features, objective and one
column per measurement field (a field equal on every config is stored once). It records the
versions it was built with: the file format, the kops feature schema and, for simulated tables,
``SIM_VERSION`` and a hash of the space's definition (simulated numbers follow its GPU specs;
measured tables only need their configs to be in the space). A file whose versions do not match
the installed code is not used (a warning says so, and how to rebuild it):
``autoconf prior shipped --build autoconf/prior/shipped --falcon DIR``.

The shipped tables are only read; every search adds to the user's own knowledge base, and the
history a search learns from is the shipped tables plus that knowledge base
(:func:`autoconf._search._stores.history`).
"""

from __future__ import annotations

import gzip
import hashlib
import itertools
import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from .._errors import UserError
from .._objective import Objective
from .._space import SearchSpace, load_space
from .._types import Config, Measurement, ModelTable

logger = logging.getLogger(__name__)

SHIPPED_FORMAT_VERSION = 1
#: Where the shipped files live (package data).
SHIPPED_DIR = Path(__file__).resolve().parent / "shipped"
#: Measurement fields kept; latencies other than p99, and run metadata, are left out (neither
#: the prior nor the objective reads them).
FIELDS = (
    "ok",
    "throughput_rps",
    "p99_ms",
    "error_rate",
    "capacity_rps",
    "offered_rps",
    "normalized_rps_per_cost",
    "error",
)
#: Significant digits kept of every measured number (the simulator's noise is 3 %).
DIGITS = 6


def space_hash(space: SearchSpace) -> str:
    """A short hash of a space's definition: the shipped tables hold its configs and prices."""
    text = json.dumps(space.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _feature_version() -> str | None:
    try:
        import kops
    except ImportError:  # pragma: no cover - kops ships with autoconf
        return None
    return str(kops.FEATURE_VERSION)


def _sim_version() -> str:
    from .._simulator import SIM_VERSION

    return str(SIM_VERSION)


def _round(value: Any) -> Any:
    if isinstance(value, float) and math.isfinite(value):
        return float(f"{value:.{DIGITS}g}")
    if isinstance(value, float):
        return None
    return value


def _column(values: list[Any]) -> Any:
    """A field over every config: ``{"all": v}`` when it is the same everywhere, else the list."""
    values = [_round(v) for v in values]
    return {"all": values[0]} if all(v == values[0] for v in values) else values


def encode(tables: list[ModelTable], source: str, sim_version: str | None) -> dict[str, Any]:
    """The shipped document of ``tables`` (one space, every table over the same configs)."""
    if not tables:
        raise UserError("no tables to ship")
    space = tables[0].space
    configs = sorted({c for t in tables for c in t.results}, key=lambda c: c.key())
    dims = space.dimension_names
    doc: dict[str, Any] = {
        "format_version": SHIPPED_FORMAT_VERSION,
        "space": space.name,
        "space_hash": space_hash(space),
        "feature_version": (
            _feature_version() if any(t.features is not None for t in tables) else None
        ),
        "sim_version": sim_version,
        "source": source,
        "configs": {d: [c.to_dict().get(d) for c in configs] for d in dims},
        "models": [],
    }
    for t in tables:
        if t.space.name != space.name:
            raise UserError(f"table {t.name!r} is in space {t.space.name!r}, not {space.name!r}")
        missing = [c for c in configs if c not in t.results]
        if missing:
            raise UserError(f"table {t.name!r} lacks config {missing[0].key()}")
        ms = [t.results[c] for c in configs]
        doc["models"].append(
            {
                "name": t.name,
                "features": None if t.features is None else [_round(float(x)) for x in t.features],
                "slo_p99_ms": t.objective.slo_p99_ms,
                "target_rps": t.objective.target_rps,
                "fields": {f: _column([getattr(m, f) for m in ms]) for f in FIELDS},
            }
        )
    return doc


def decode(doc: dict[str, Any], space: SearchSpace) -> list[ModelTable]:
    """The tables of a shipped document (checked against ``space``)."""
    dims = list(doc["configs"])
    n = len(doc["configs"][dims[0]])
    configs = [Config.from_dict({d: doc["configs"][d][i] for d in dims}) for i in range(n)]
    outside = [c for c in configs if not space.contains(c)]
    if outside:
        raise UserError(f"shipped config {outside[0].key()} is outside space {space.name!r}")
    cost = [space.cost_per_hour(c) for c in configs]
    tables = []
    for model in doc["models"]:
        cols = {
            f: itertools.repeat(v["all"], n) if isinstance(v, dict) else iter(v)
            for f, v in model["fields"].items()
        }
        results = {}
        for i, values in enumerate(zip(*cols.values())):
            kw = dict(zip(cols, values))
            kw["error_rate"] = kw.get("error_rate") or 0.0
            results[configs[i]] = Measurement(cost_per_hour=cost[i], **kw)
        feats = model.get("features")
        tables.append(
            ModelTable(
                model["name"],
                space,
                Objective(model.get("slo_p99_ms"), model.get("target_rps")),
                results,
                None if feats is None else np.asarray(feats, dtype=float),
            )
        )
    return tables


def write_shipped(doc: dict[str, Any], directory: str | Path) -> Path:
    """Write a shipped document as ``DIRECTORY/SPACE.json.gz`` (reproducible bytes: no mtime)."""
    path = Path(directory) / f"{doc['space']}.json.gz"
    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.dumps(doc, separators=(",", ":")).encode()
    with path.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as f:
        f.write(data)
    return path


def read_document(path: Path) -> dict[str, Any]:
    """A shipped file's document."""
    try:
        with gzip.open(path, "rb") as f:
            return json.loads(f.read())
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: not a shipped knowledge file ({exc})") from None


def staleness(doc: dict[str, Any], space: SearchSpace) -> str | None:
    """Why a shipped document does not match the installed code, ``None`` when it does."""
    if doc.get("format_version") != SHIPPED_FORMAT_VERSION:
        return f"format {doc.get('format_version')} (this code reads {SHIPPED_FORMAT_VERSION})"
    simulated = doc.get("sim_version") is not None
    if simulated and doc.get("space_hash") != space_hash(space):
        # simulated numbers follow the catalog's specs and prices: a changed space changes them
        return f"built for another definition of space {space.name!r}"
    if not simulated:  # measured tables hold for any space that still has their configs
        dims = doc["configs"]
        n = len(next(iter(dims.values())))
        for i in range(n):
            config = Config.from_dict({d: dims[d][i] for d in dims})
            if not space.contains(config):
                return f"config {config.key()} is no longer in space {space.name!r}"
    featured = any(m.get("features") is not None for m in doc["models"])
    if featured and doc.get("feature_version") != _feature_version():
        return (
            f"kops feature version {doc.get('feature_version')} (installed: {_feature_version()})"
        )
    if doc.get("sim_version") is not None and doc["sim_version"] != _sim_version():
        return f"simulator version {doc['sim_version']} (installed: {_sim_version()})"
    return None


REBUILD = "rebuild with: autoconf prior shipped --build autoconf/prior/shipped --falcon DIR"


#: Shipped tables read in this process, by (directory, space, space hash).
_CACHE: dict[tuple[str, str, str], tuple[ModelTable, ...]] = {}


def shipped_tables(
    space: SearchSpace | str, directory: str | Path | None = None
) -> list[ModelTable]:
    """The shipped tables of ``space`` (empty where none ship or they are stale). Read once per
    process; the tables are shared, so callers must not change them."""
    if isinstance(space, str):
        try:
            space = load_space(space)
        except UserError:
            return []
    key = (str(directory or SHIPPED_DIR), space.name, space_hash(space))
    if key not in _CACHE:
        _CACHE[key] = _load(space, Path(key[0]) / f"{space.name}.json.gz")
    return list(_CACHE[key])


def _load(space: SearchSpace, path: Path) -> tuple[ModelTable, ...]:
    if not path.is_file():
        return ()
    doc = read_document(path)
    why = staleness(doc, space)
    if why is not None:
        logger.warning("shipped knowledge %s not used: %s; %s", path.name, why, REBUILD)
        return ()
    return tuple(decode(doc, space))


def shipped_spaces(directory: str | Path | None = None) -> list[str]:
    """The spaces with a shipped file."""
    return sorted(
        p.name[: -len(".json.gz")] for p in Path(directory or SHIPPED_DIR).glob("*.json.gz")
    )


def shipped_all(directory: str | Path | None = None) -> list[ModelTable]:
    """Every shipped table, of every space (``autoconf bench --train shipped``)."""
    return [t for s in shipped_spaces(directory) for t in shipped_tables(s, directory)]


def describe(directory: str | Path | None = None) -> list[dict[str, Any]]:
    """Per shipped file: space, source, versions, models, and whether the code can use it."""
    out = []
    for name in shipped_spaces(directory):
        path = Path(directory or SHIPPED_DIR) / f"{name}.json.gz"
        doc = read_document(path)
        try:
            why = staleness(doc, load_space(name))
        except UserError as exc:
            why = str(exc)
        out.append(
            {
                "space": name,
                "file": str(path),
                "bytes": path.stat().st_size,
                "source": doc.get("source"),
                "sim_version": doc.get("sim_version"),
                "feature_version": doc.get("feature_version"),
                "models": [m["name"] for m in doc["models"]],
                "configs": len(next(iter(doc["configs"].values()))),
                "stale": why,
            }
        )
    return out


def build_shipped(directory: str | Path, falcon_dir: str | Path | None) -> list[Path]:
    """Rebuild the shipped files from the data the project has: the simulated zoo on
    ``gpu-default`` (minutes without a cache), and the Falcon tables in ``falcon_dir``."""
    from ..datasets import load_tables, zoo_tables

    written = [
        write_shipped(
            encode(zoo_tables(), "sim:zoo (autoconf._simulator, seed 0)", _sim_version()),
            directory,
        )
    ]
    if falcon_dir is not None:
        tables = load_tables(falcon_dir)
        written.append(
            write_shipped(
                encode(tables, "Falcon tables (dos-lab/Falcon, Apache-2.0)", None), directory
            )
        )
    return written
