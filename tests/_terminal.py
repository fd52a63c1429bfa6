"""What a terminal gives a process it starts, for tests that send it Ctrl-C."""

from __future__ import annotations

import signal


def default_sigint() -> None:
    """``preexec_fn``: SIGINT back to its default action in the child. A suite started with
    SIGINT ignored (``nohup``, a non-interactive shell's ``&``) passes the ignore on to every
    child it starts, and a child that ignores Ctrl-C cannot show what Ctrl-C does to it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
