"""The stores a search opens: its Optuna study (trials, resume, parallel workers) and the
knowledge base that warms the prior and remembers every finished search."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna

from .. import _record as record
from .._errors import UserError
from .._objective import Objective
from .._report import TrialRecord
from .._secrets import redact
from .._space import SearchSpace

logger = logging.getLogger(__name__)

#: Where finished searches are remembered to warm the prior of the next (``--knowledge``).
DEFAULT_KNOWLEDGE = Path.home() / ".autoconf" / "knowledge.db"


def open_knowledge_base(ref: str | None) -> Any | None:
    """The knowledge base at ``ref`` (None: the default store; "none": no knowledge base)."""
    if ref is not None and ref.lower() == "none":
        return None
    from ..prior import KnowledgeBase

    target = ref or str(DEFAULT_KNOWLEDGE)
    if "://" not in target:
        Path(target).parent.mkdir(parents=True, exist_ok=True)
    return KnowledgeBase(target)


def history(kb: Any, space: SearchSpace, exclude: str) -> list[Any]:
    """What is known of other models in this space (the prior's data): the knowledge that ships
    with the package (read-only, :mod:`autoconf.prior._shipped`) and what the knowledge base
    measured. A model of the knowledge base replaces a shipped one of the same name. Without a
    knowledge base (``--knowledge none``) the search learns from nothing."""
    if kb is None:
        return []
    from ..prior import shipped_tables

    own = [t for t in kb.tables(space=space) if t.name != exclude]
    names = {t.name for t in own}
    base = [t for t in shipped_tables(space) if t.name not in names and t.name != exclude]
    return base + own


def kb_model_name(model_path: Path, sha: str) -> str:
    """A model's name in the knowledge base: its file stem and content hash."""
    return f"{model_path.stem}-{sha[:10]}"


def feed_knowledge(
    kb: Any,
    name: str,
    profile: Any,
    space: SearchSpace,
    objective: Objective,
    records: list[TrialRecord],
) -> str | None:
    """Remember every measurement of this search; returns a note when it could not."""
    if kb is None:
        return None
    try:
        features = profile.features()
        import kops

        kb.add_model(name, features, profile.to_dict(), feature_version=str(kops.FEATURE_VERSION))
        for r in records:
            kb.add_measurement(name, space, r.config, r.measurement, objective)
    except Exception as exc:  # the plan is worth more than the memory of it
        logger.debug("knowledge base update failed", exc_info=True)
        return f"knowledge base not updated: {type(exc).__name__}: {exc}"
    return None


def study_name(model_path: Path, sha: str, space: SearchSpace, objective: Objective) -> str:
    rps = f"{objective.target_rps:g}rps" if objective.target_rps is not None else "capacity"
    return f"{model_path.stem}-{sha[:10]}-{space.name}-p99_{objective.slo_p99_ms:g}ms-{rps}"


#: Tries at opening a study on a server storage whose schema another process is creating.
OPEN_TRIES = 5


@contextlib.contextmanager
def _creation_lock(storage: str) -> Iterator[None]:
    """Serialize study creation between processes on one SQLite file (an exclusive ``flock`` on
    ``FILE.lock``): two processes creating a new SQLite storage at once race on its schema
    (``UNIQUE constraint failed: alembic_version``). Other storages are retried instead."""
    if not storage.startswith("sqlite:///") or storage == "sqlite:///:memory:":
        yield
        return
    db = Path(storage[len("sqlite:///") :].split("?", 1)[0])
    if not db.parent.is_dir():
        yield  # the storage's own error names the missing folder
        return
    with open(f"{db}.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return redact(lines[0] if lines else type(exc).__name__)


def open_study(
    storage: str,
    name: str,
    objective: Objective,
    sampler: optuna.samplers.BaseSampler,
    resume: bool,
    *,
    join: bool = False,
) -> optuna.Study:
    """Create the study, or load it with ``resume``; an existing study without ``resume`` is an
    error (it would silently mix two searches). ``join`` creates it or loads it, whichever is
    due: processes that search one study together start with ``--join`` in any order. Safe
    when several processes open one new storage at once (a file lock for SQLite, retries for a
    server)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for attempt in range(OPEN_TRIES):
        try:
            with _creation_lock(storage):
                return _open_or_create(storage, name, objective, sampler, resume, join)
        except UserError:
            raise
        except Exception as exc:  # any storage failure is the user's URL or server: one line
            if attempt + 1 < OPEN_TRIES and _is_race(exc):
                logger.info("opening the study raced another process (%s); retrying", exc)
                time.sleep(0.2 * (attempt + 1))
                continue
            raise UserError(
                f"--storage {redact(storage)!r}: cannot open: {_one_line(exc)}"
            ) from None
    raise AssertionError("unreachable")


def _is_race(exc: BaseException) -> bool:
    """An error another process creating the same storage or study can cause."""
    text = str(exc)
    return any(
        s in text
        for s in ("UNIQUE constraint", "already exists", "duplicate key", "database is locked")
    )


def _open_or_create(
    storage: str,
    name: str,
    objective: Objective,
    sampler: optuna.samplers.BaseSampler,
    resume: bool,
    join: bool,
) -> optuna.Study:
    existing = [] if join else optuna.study.get_all_study_names(storage)
    if name in existing and not resume:
        raise UserError(
            f"a search {name!r} already exists in {redact(storage)}; pass --resume to continue "
            "it, --join to search it together with the processes running it, or choose another "
            "--out/--storage"
        )
    if resume and not join and name not in existing:
        raise UserError(
            f"--resume: no search {name!r} in {redact(storage)} to resume (same model, space, "
            "SLO and target load, same --out/--storage?); run without --resume to start one"
        )
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        storage=storage,
        study_name=name,
        sampler=sampler,
        direction=objective.direction,
        load_if_exists=True,
    )
    if study.metric_names is None:
        record.set_metric_name(study, objective)  # the objective's name in optuna-dashboard
    return study
