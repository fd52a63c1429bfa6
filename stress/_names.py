"""The one place that makes names safe before they reach a shell, a YAML value, a Kubernetes
name or a Triton model configuration.

A model's name comes from a user's file name and ends up in an initContainer's ``sh -c``
script, in ``config.pbtxt`` and in object names. :func:`model_name` turns any text into a
name that is safe in all of them; :func:`check_model_name` rejects anything else (every
:class:`~stress.DeploymentSpec` is checked), and :func:`shell_quote` quotes what a script
interpolates anyway.
"""

from __future__ import annotations

import re
import shlex

from ._errors import StressError

#: A Triton model name (a directory under the model repository): ASCII letters, digits, '_',
#: '.', '-', not starting with '.' or '-' (no hidden directory, no option-like argument).
MODEL_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")


def model_name(text: str) -> str:
    """``text`` (e.g. a model file's stem) as a model name: every other character becomes
    '_', a leading '.' or '-' too, at most 128 characters; ``"model"`` if nothing is left."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", str(text))[:128]
    name = re.sub(r"^[.-]", "_", name)
    return name or "model"


def check_model_name(name: object) -> str:
    """``name`` if it is a valid model name (see :data:`MODEL_NAME_RE`), else :class:`StressError`."""
    if not isinstance(name, str) or not MODEL_NAME_RE.fullmatch(name):
        raise StressError(
            f"invalid model name {name!r}: use 1-128 of A-Z a-z 0-9 _ . - "
            "(not starting with '.' or '-'); stress.model_name(text) makes one from any text"
        )
    return name


def dns_name(text: str, max_len: int = 63) -> str:
    """``text`` as a DNS-1123 label (lowercase alphanumerics and '-'), for object names."""
    name = re.sub(r"[^a-z0-9-]+", "-", str(text).lower()).strip("-")
    return (name[:max_len].rstrip("-")) or "x"


def label_value(text: str) -> str:
    """``text`` as a valid label value (<= 63 chars of [A-Za-z0-9._-], alphanumeric ends)."""
    value = re.sub(r"[^A-Za-z0-9._-]+", "-", str(text))[:63]
    return re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", value)


def shell_quote(text: str) -> str:
    """``text`` as one word of a POSIX shell command."""
    return shlex.quote(str(text))
