"""The labels a deployer puts on everything it creates, so that leftovers can be found.

The caller names itself: ``stress`` alone labels with ``app.kubernetes.io/managed-by=stress``
and ``stress.io/study``, ``stress.io/trial``, ...; a tool built on it passes its own
:class:`LabelScheme` (autoconf passes ``autoconf.io``/``autoconf``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from ._errors import StressError
from ._names import label_value

MANAGED_BY_KEY = "app.kubernetes.io/managed-by"
COMPONENT_KEY = "app.kubernetes.io/component"
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?")


@dataclass(frozen=True)
class LabelScheme:
    """``prefix``: a DNS subdomain for the study/trial/deployment/run label keys;
    ``managed_by``: the value of ``app.kubernetes.io/managed-by``."""

    prefix: str = "stress.io"
    managed_by: str = "stress"

    def __post_init__(self) -> None:
        if not _DNS_SUBDOMAIN.fullmatch(self.prefix):
            raise StressError(f"label prefix {self.prefix!r} is not a DNS subdomain")
        if not self.managed_by or label_value(self.managed_by) != self.managed_by:
            raise StressError(f"managed-by value {self.managed_by!r} is not a label value")

    def key(self, name: str) -> str:
        """The label key ``<prefix>/<name>`` (``study``, ``trial``, ``deployment``, ``run``)."""
        return f"{self.prefix}/{name}"

    @property
    def managed(self) -> dict[str, str]:
        return {MANAGED_BY_KEY: self.managed_by}

    def selector(self, study: str | None = None, **more: str) -> str:
        """A label selector for everything this scheme labelled (of ``study``, of ``more``)."""
        parts = [f"{MANAGED_BY_KEY}={self.managed_by}"]
        if study:
            parts.append(f"{self.key('study')}={label_value(study)}")
        parts += [f"{self.key(k)}={label_value(v)}" for k, v in more.items()]
        return ",".join(parts)

    def for_spec(self, spec_labels: Mapping[str, str]) -> dict[str, str]:
        """The labels of every object of a spec: managed-by, ``study``/``trial`` under the
        prefix, and any other (already qualified) key as given, values made valid."""
        labels = dict(self.managed)
        for key, value in spec_labels.items():
            if key in ("study", "trial"):
                if value:
                    labels[self.key(key)] = label_value(value)
            else:
                labels[key] = label_value(value)
        return labels
