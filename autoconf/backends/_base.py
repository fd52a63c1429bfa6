"""The one interface every evaluation backend implements."""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from .._space import SearchSpace
from .._types import Config, Load, Measurement

if TYPE_CHECKING:
    from kops import ModelProfile


class Backend(abc.ABC):
    """Measures one config of one model under one load.

    ``evaluate`` never raises for a config that fails to deploy or run (OOM, crash, timeout):
    it returns ``Measurement.failed(...)``, which the objective treats as infeasible. It raises
    :class:`autoconf.UserError` only for bad input (unknown model, config outside the space).
    Backends hold resources (processes, clusters): use them as context managers.
    """

    name: ClassVar[str]
    #: ``(step, max_steps, rate_rps, duration_s)`` before each load step, for backends that
    #: measure in steps (the live ones); the search's live display sets it.
    on_step: Callable[[int, int, float, float], None] | None = None

    def __init__(self, space: SearchSpace, **options: Any) -> None:
        self.space = space
        self.options = options

    @abc.abstractmethod
    def evaluate(self, profile: ModelProfile, config: Config, load: Load) -> Measurement:
        """Deploy ``config``, measure it under ``load``, tear it down, and return what was seen."""

    def feasible_space(self) -> tuple[SearchSpace, list[str]]:
        """The part of ``self.space`` this backend can measure honestly, and a note per thing
        left out (called before a search; raises :class:`autoconf.UserError`, one line, when
        nothing is left). Tables and the simulator measure every config: the whole space."""
        return self.space, []

    def close(self) -> None:
        """Release everything the backend holds; safe to call twice."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
