"""Nothing a deployer starts outlives it: child processes and temporary folders.

- Every temporary folder of a measurement or a deployment is made inside this process's run
  folder, ``$TMPDIR/stress-run-PID-XXXX`` (:func:`scratch`), removed at exit. A process killed
  with SIGKILL cannot remove it: its children do when they see it die, and the first run
  folder made by any later process sweeps the folders of dead owners (:func:`sweep_stale`).
- A child (model server, load generator) calls :func:`bind_to_parent` first thing: Linux sends
  it SIGTERM when the deployer dies (``PR_SET_PDEATHSIG``), and a watchdog thread polling its
  parent pid (the fallback where ``prctl`` is missing, and the cleanup either way) sweeps the
  dead deployer's run folder and exits the child within :data:`POLL_S`; a child that exits on
  that SIGTERM first sweeps at exit.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

logger = logging.getLogger(__name__)

PREFIX = "stress-run-"
#: How often a child checks that its deployer is alive (seconds).
POLL_S = 0.2

_RUN_DIR: Path | None = None
_RUN_LOCK = threading.Lock()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _owner(path: Path) -> int | None:
    """The pid in a run folder's name (``stress-run-PID-XXXX``), None if it has none."""
    parts = path.name[len(PREFIX) :].split("-", 1)
    return int(parts[0]) if parts and parts[0].isdigit() else None


def sweep_stale(root: str | Path | None = None) -> list[Path]:
    """Remove the run folders under ``root`` (the temp dir) whose owner process is dead."""
    removed = []
    for path in Path(root or tempfile.gettempdir()).glob(PREFIX + "*"):
        pid = _owner(path)
        if pid is None or pid == os.getpid() or _alive(pid):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    if removed:
        logger.info("removed %d folder(s) left by dead deployers", len(removed))
    return removed


def run_dir() -> Path:
    """This process's run folder (made on first use, after sweeping dead owners' folders)."""
    global _RUN_DIR
    with _RUN_LOCK:
        if _RUN_DIR is None or not _RUN_DIR.is_dir():
            sweep_stale()
            _RUN_DIR = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-"))
            atexit.register(shutil.rmtree, _RUN_DIR, True)
        return _RUN_DIR


def scratch(prefix: str) -> Path:
    """A new temporary folder inside this process's run folder."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir=run_dir()))


def remove(path: Path) -> None:
    """Remove a scratch folder (gone already is fine: the run folder may be removed first)."""
    shutil.rmtree(path, ignore_errors=True)


def bind_to_parent(parent_pid: int) -> None:
    """Die with the deployer ``parent_pid`` (see the module docstring); exits at once if it is
    already gone."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != parent_pid:
        _orphaned()
    # a child that ends on the SIGTERM of its dying deployer (before its watchdog's next poll)
    # sweeps too: the last one out removes what a sibling still wrote while the first swept
    atexit.register(lambda: os.getppid() != parent_pid and sweep_stale())
    _start_thread(lambda sleep: _watch(parent_pid, sleep))


def _orphaned() -> None:
    sweep_stale()
    os._exit(1)


def _watch(parent_pid: int, sleep: Callable[[float], None]) -> None:
    while os.getppid() == parent_pid:
        sleep(POLL_S)
    _orphaned()


def _start_thread(fn: Callable[[Callable[[float], None]], None]) -> None:
    """Run ``fn(sleep)`` on an OS thread, also in a gevent-patched process (a greenlet would not
    run while the process blocks outside gevent, e.g. on stdin)."""
    if "gevent.monkey" in sys.modules:
        from gevent import monkey

        if monkey.is_module_patched("threading"):
            start = monkey.get_original("_thread", "start_new_thread")
            start(fn, (monkey.get_original("time", "sleep"),))
            return
    threading.Thread(target=fn, args=(time.sleep,), daemon=True, name="parent-watch").start()
