"""The live view of a running search (rich): trial n of budget, the config, what was measured,
the best so far, elapsed and estimated time. On a non-terminal it prints one line per trial."""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from ._objective import Objective
from ._report import short as short_config
from ._study import Evaluation

logger = logging.getLogger(__name__)


def _fmt(v: float | None, unit: str = "", digits: int = 1) -> str:
    return "–" if v is None else f"{v:,.{digits}f}{unit}"


class SearchProgress:
    """Context manager fed one :class:`Evaluation` at a time (``update``); thread-safe."""

    def __init__(
        self,
        objective: Objective,
        budget: int,
        *,
        done_before: int = 0,
        best_before: float | None = None,
        console: Console | None = None,
        enabled: bool = True,
        estimate: Any = None,
    ) -> None:
        self.objective = objective
        self.budget = budget
        self.done_before = done_before
        self.best = best_before
        self.best_config: str | None = None
        self.console = console or Console(file=sys.stderr)
        self.enabled = enabled
        self.estimate = estimate  # callable () -> float | None: confidence within 5% of optimum
        self.status = "starting"
        self._rows: list[tuple[str, ...]] = []
        self._start = time.monotonic()
        self._lock = threading.Lock()
        self._live: Live | None = None
        self._count = 0

    def __enter__(self) -> SearchProgress:
        if self.enabled and self.console.is_terminal:
            self._live = Live(
                self._render(), console=self.console, refresh_per_second=4, transient=False
            )
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.update(self._render())
            self._live.__exit__(*exc)
            self._live = None

    def set_status(self, status: str) -> None:
        with self._lock:
            self.status = status
            if self._live is not None:
                self._live.update(self._render())
            elif self.enabled:
                self.console.print(f"[dim]{status}[/dim]", highlight=False, soft_wrap=True)

    def update(self, e: Evaluation) -> None:
        with self._lock:
            self._count += 1
            m = e.measurement
            if e.value is not None and (
                self.best is None or self.objective.better(e.value, self.best)
            ):
                self.best = e.value
                self.best_config = short_config(e.config)
            feasible = "yes" if e.value is not None else ("failed" if not m.ok else "no")
            row = (
                f"{self.done_before + self._count}/{self.budget}",
                short_config(e.config),
                _fmt(m.p99_ms, " ms"),
                _fmt(m.throughput_rps, " rps"),
                f"${m.cost_per_hour:,.4f}/h",
                feasible,
            )
            self._rows.append(row)
            if self._live is not None:
                self._live.update(self._render())
            elif self.enabled:
                self.console.print(
                    f"trial {row[0]}  {row[1]}  p99 {row[2]}  {row[3]}  {row[4]}  feasible: "
                    f"{row[5]}  best: {self._best_text()}  {self._times()}",
                    highlight=False,
                    soft_wrap=True,
                )

    def _best_text(self) -> str:
        if self.best is None:
            return "none feasible yet"
        if self.objective.direction == "minimize":
            return f"${self.best:,.4f}/h"
        return f"{self.best:,.1f} rps per $/h"

    def _times(self) -> str:
        elapsed = time.monotonic() - self._start
        left = self.budget - self.done_before - self._count
        eta = elapsed / self._count * left if self._count else None
        text = f"elapsed {elapsed:,.0f} s"
        if eta is not None:
            text += f", at most {eta:,.0f} s left"
        return text

    def _render(self) -> Group:
        table = Table(title="autoconf search", expand=False, show_lines=False)
        for col in ("trial", "config", "p99", "throughput", "cost", "feasible"):
            table.add_column(col, justify="left" if col == "config" else "right")
        for row in self._rows[-12:]:
            style = "green" if row[5] == "yes" else ("red" if row[5] == "failed" else None)
            table.add_row(*row, style=style)
        lines = [
            Text(
                f"best so far: {self._best_text()}"
                + (f"  ({self.best_config})" if self.best_config else "")
            ),
            Text(f"{self._times()}   status: {self.status}", style="dim"),
        ]
        if self.estimate is not None:
            try:
                conf = self.estimate()
            except Exception:  # a display must never end a search
                logger.debug("confidence estimate failed", exc_info=True)
                conf = None
            if conf is not None:
                lines.append(
                    Text(f"confidence the best is within 5% of optimal: {conf:.0%}", style="dim")
                )
        return Group(table, *lines)
