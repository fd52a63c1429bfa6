"""Where autoconf keeps what it can rebuild: generated zoo profiles and simulated tables."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$AUTOCONF_CACHE_DIR`` if set, else ``~/.cache/autoconf`` (read on every call)."""
    configured = os.environ.get("AUTOCONF_CACHE_DIR")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "autoconf"
