"""Where autoconf keeps what it can recompute (simulated tables, zoo profiles)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$AUTOCONF_CACHE_DIR`` if set, else ``~/.cache/autoconf``."""
    env = os.environ.get("AUTOCONF_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "autoconf"
