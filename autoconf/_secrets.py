"""Secrets kept out of everything autoconf writes: one redaction for URLs and command lines.

A storage or knowledge-base URL may carry a password (``postgresql://user:SECRET@host/db``).
Every place that writes a command line or a URL (plan.yaml's provenance, report.html, error
lines, log records) passes it through :func:`redact` first.
"""

from __future__ import annotations

import logging
import re

#: ``scheme://userinfo@``: the user and password of a URL (kept: the scheme, host and path).
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)[^/\s@'\"]+@")
#: ``password=...`` in a query string or a KEY=VALUE option.
_PASSWORD_PARAM = re.compile(r"(?P<key>\b(?:password|passwd|pwd)=)[^&\s'\"]+", re.IGNORECASE)

MASK = "***"


def redact(text: str) -> str:
    """``text`` with the credentials of every URL in it (and ``password=`` values) masked."""
    text = _USERINFO.sub(rf"\g<scheme>{MASK}@", str(text))
    return _PASSWORD_PARAM.sub(rf"\g<key>{MASK}", text)


class RedactingFilter(logging.Filter):
    """A logging filter that redacts each record's message (arguments included)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return True


def redact_logging(logger: logging.Logger | None = None) -> None:
    """Add :class:`RedactingFilter` to every handler of ``logger`` (the root by default)."""
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
