"""Reading user-supplied YAML files (search spaces, plans) into validated pydantic models.

Every way a file can be wrong ends as one :class:`UserError` line that names the file and, for a
schema error, the field: not text, not YAML, not a mapping, or not the schema.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from ._errors import UserError

M = TypeVar("M", bound=BaseModel)


def read_yaml_model(path: Path, model: type[M]) -> M:
    """``model`` validated from the YAML mapping in ``path`` (read with ``yaml.safe_load``)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a text file") from None
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping at the top level")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        # Of a union's branches, the one that failed on a value (not on its type) says why.
        errors = exc.errors()
        err = next((e for e in errors if e["type"] == "value_error"), errors[0])
        msg = err["msg"].removeprefix("Value error, ")
        where = ".".join(str(p) for p in err["loc"])
        raise UserError(f"{path}: {where}: {msg}" if where else f"{path}: {msg}") from None
