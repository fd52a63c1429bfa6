"""The live view of a running search (rich): the trial being measured, its load step and how
long it has run (redrawn four times a second, so a long trial shows signs of life), the budget
left, what was measured, the best so far and, once it means something, the stopping rule's
confidence. Without a terminal (or with ``live=False``: ``--no-progress``) it prints one line per
trial; ``quiet`` prints nothing.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from ._notation import short as short_config
from ._objective import Objective
from ._study import Evaluation
from ._types import Config

logger = logging.getLogger(__name__)

#: The stopping rule's confidence is shown once this many configs are measured and one is
#: feasible (before, the posterior has too little to say: it read 100 % then 0 %).
CONFIDENCE_AFTER = 3


def _fmt(v: float | None, unit: str = "", digits: int = 1) -> str:
    return "–" if v is None else f"{v:,.{digits}f}{unit}"


def duration(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``1 h 02 min``."""
    s = int(max(0.0, seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


@dataclass
class _Running:
    """The trial a worker is measuring now."""

    config: str
    started: float
    step: str = "deploying"


class SearchProgress:
    """Context manager told when a trial starts (``trial_started``), at each of its load steps
    (``step``, from the backend) and when it ends (``update``); thread-safe (one running trial
    per worker thread)."""

    def __init__(
        self,
        objective: Objective,
        budget: int,
        *,
        done_before: int = 0,
        best_before: float | None = None,
        console: Console | None = None,
        enabled: bool = True,
        quiet: bool = False,
        estimate: Callable[[], float | None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.objective = objective
        self.budget = budget
        self.done_before = done_before
        self.best = best_before
        self.best_config: str | None = None
        self.console = console or Console(file=sys.stderr)
        self.enabled = enabled  # the live display where there is a terminal
        self.quiet = quiet
        self.estimate = estimate  # () -> P(best within 5% of the optimum), or None
        self.clock = clock
        self.status = "starting"
        self._rows: list[tuple[str, ...]] = []
        self._running: dict[int, _Running] = {}
        self._start = clock()
        self._lock = threading.RLock()
        self._live: Live | None = None
        self._count = 0

    @property
    def live(self) -> bool:
        return self._live is not None

    def __enter__(self) -> SearchProgress:
        if self.enabled and not self.quiet and self.console.is_terminal:
            self._live = Live(
                console=self.console,
                get_renderable=self._render,
                refresh_per_second=4,
                transient=False,
            )
            self._live.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._live is not None:
            self._live.refresh()
            self._live.__exit__(exc_type, exc, tb)
            self._live = None

    def set_status(self, status: str) -> None:
        with self._lock:
            self.status = status
            if not self.live and not self.quiet:
                self.console.print(f"[dim]{status}[/dim]", highlight=False, soft_wrap=True)

    def trial_started(self, config: Config) -> None:
        """A worker starts measuring ``config`` (shown at once, with its running time)."""
        with self._lock:
            self._running[threading.get_ident()] = _Running(short_config(config), self.clock())

    def step(self, index: int, max_steps: int, rate_rps: float, duration_s: float) -> None:
        """The running trial of this thread starts load step ``index`` of at most
        ``max_steps`` (a backend's progress hook); ignored outside a trial."""
        with self._lock:
            run = self._running.get(threading.get_ident())
            if run is not None:
                of = f" of at most {max_steps}" if max_steps > 1 else ""
                run.step = f"load step {index}{of}: {rate_rps:,.1f} requests/s for {duration_s:g} s"

    def update(self, e: Evaluation) -> None:
        """A trial ended with ``e``."""
        with self._lock:
            self._running.pop(threading.get_ident(), None)
            self._count += 1
            m = e.measurement
            if e.value is not None and (
                self.best is None or self.objective.better(e.value, self.best)
            ):
                self.best = e.value
                self.best_config = short_config(e.config)
            feasible = "yes" if e.value is not None else ("failed" if not m.ok else "no")
            tries = f"{m.attempts} {'try' if m.attempts == 1 else 'tries'}"
            stable = "" if m.stable is None else ("yes" if m.stable else f"no ({tries})")
            row = (
                f"{self.done_before + self._count}/{self.budget}",
                short_config(e.config),
                _fmt(m.p99_ms, " ms"),
                _fmt(m.capacity_rps if m.capacity_rps is not None else m.throughput_rps, " rps"),
                f"${m.cost_per_hour:,.4f}/h",
                feasible,
                stable,
                f"{m.wall_s:,.0f} s",
            )
            self._rows.append(row)
            if not self.live and not self.quiet:
                self.console.print(
                    f"trial {row[0]}  {row[1]}  p99 {row[2]}  {row[3]}  {row[4]}  feasible: "
                    f"{row[5]}{f'  stable: {stable}' if stable else ''}  ({row[7]})  "
                    f"best: {self._best_text()}  {self._times()}",
                    highlight=False,
                    soft_wrap=True,
                )

    def _best_text(self) -> str:
        if self.best is None:
            return "none feasible yet"
        if self.objective.direction == "minimize":
            return f"${self.best:,.4f}/h"
        return f"{self.best:,.1f} rps per $/h"

    def _left(self) -> int:
        return max(0, self.budget - self.done_before - self._count)

    def _times(self) -> str:
        elapsed = self.clock() - self._start
        eta = elapsed / self._count * self._left() if self._count else None
        text = f"elapsed {duration(elapsed)}"
        if eta is not None and self._left():
            text += f", at most ~{duration(eta)} left"
        return text

    def confidence(self) -> float | None:
        """The stopping rule's confidence, once it means something (see CONFIDENCE_AFTER)."""
        if self.estimate is None or self.best is None:
            return None
        if self.done_before + self._count < CONFIDENCE_AFTER:
            return None
        try:
            return self.estimate()
        except Exception:  # a display must never end a search
            logger.debug("confidence estimate failed", exc_info=True)
            return None

    def _render(self) -> Group:
        with self._lock:
            return Group(self._table(), *self._lines())

    def _table(self) -> Table:
        table = Table(title="autoconf search", expand=False, show_lines=False)
        for col in ("trial", "config", "p99", "served", "cost", "feasible", "stable", "took"):
            table.add_column(col, justify="left" if col == "config" else "right")
        for row in self._rows[-12:]:
            style = "green" if row[5] == "yes" else ("red" if row[5] == "failed" else None)
            table.add_row(*row, style=style)
        now = self.clock()
        for n, run in enumerate(self._running.values(), start=1):
            number = self.done_before + self._count + n
            table.add_row(
                f"{number}/{self.budget}", run.config, "", "", "", "measuring", "",
                duration(now - run.started), style="bold yellow",
            )  # fmt: skip
        return table

    def _lines(self) -> list[Text]:
        now = self.clock()
        lines = [
            Text(f"now: {run.config}: {run.step}, {duration(now - run.started)} into the trial")
            for run in self._running.values()
        ]
        done = self.done_before + self._count
        lines.append(
            Text(f"{done} of {self.budget} configs measured, {self._left()} left in the budget; ")
            + Text(self._times(), style="dim")
        )
        best = f"best so far: {self._best_text()}"
        lines.append(Text(best + (f"  ({self.best_config})" if self.best_config else "")))
        conf = self.confidence()
        if conf is not None:
            lines.append(
                Text(f"confidence the best is within 5% of optimal: {conf:.0%}", style="dim")
            )
        lines.append(Text(f"status: {self.status}", style="dim"))
        return lines
