"""Progress bars for long work (rich), shown on a terminal only: logs, pipes and CI keep plain lines.

A :class:`Progress` is handed to the code that loops (the trainer's phases, the bench's setups, a sweep's cells);
``track`` wraps a loop's iterable, ``stage`` a block without a count, ``counter`` a count the caller moves itself
(cells that end out of order), and ``log`` prints a line above the bars. Off, each is the plain thing.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import timedelta
from typing import Any, TypeVar

T = TypeVar("T")


class Progress(AbstractContextManager):
    """Bars while the context is open, when ``enabled``; ``log`` is where lines go either way."""

    def __init__(self, enabled: bool = False, log: Callable[[str], Any] = print):
        self.enabled, self._log, self._bars = enabled, log, None

    @classmethod
    def for_terminal(cls, quiet: bool, log: Callable[[str], Any]) -> Progress:
        """On when standard error is a terminal and ``--quiet`` was not given; quiet also silences the lines."""
        return cls(enabled=not quiet and sys.stderr.isatty(), log=(lambda line: None) if quiet else log)

    def __enter__(self) -> Progress:
        if self.enabled:
            from rich import progress
            from rich.console import Console
            from rich.text import Text

            class TimeLeft(progress.ProgressColumn):
                """Time left at the mean pace since the bar began (rich's own estimate wants two steps within 30
                seconds, which a sweep's cells do not take)."""

                def render(self, task: progress.Task) -> Text:
                    left = "-:--:--"
                    if task.completed and task.total and task.elapsed and not task.finished:
                        left = str(timedelta(seconds=round(task.elapsed * (task.total / task.completed - 1))))
                    return Text(left, style="progress.remaining")

            columns = (progress.BarColumn(), progress.MofNCompleteColumn(), progress.TimeElapsedColumn(), TimeLeft())
            self._bars = progress.Progress(
                progress.TextColumn("{task.description}"), *columns, console=Console(stderr=True), transient=True
            )
            self._bars.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bars is not None:
            self._bars.__exit__(*exc)
            self._bars = None

    def log(self, line: str) -> None:
        """A line of output, printed above the bars while they show."""
        if self._bars is not None:
            self._bars.console.print(line, markup=False, highlight=False)
        else:
            self._log(line)

    def track(self, items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
        """``items``, advancing a bar named ``description`` as each is taken (removed when done)."""
        if self._bars is None:
            yield from items
            return
        task = self._bars.add_task(description, total=total if total is not None else len(items))  # type: ignore[arg-type]
        try:
            for item in items:
                yield item
                self._bars.advance(task)
        finally:
            self._bars.remove_task(task)

    @contextmanager
    def stage(self, description: str) -> Iterator[None]:
        """A bar without a count (a pulse) named ``description`` while the block runs."""
        if self._bars is None:
            yield
            return
        task = self._bars.add_task(description, total=None)
        try:
            yield
        finally:
            self._bars.remove_task(task)

    @contextmanager
    def counter(self, description: str, total: int) -> Iterator[Callable[[int, str], None]]:
        """A bar of ``total`` things that the block counts itself: it gets ``update(done, note)``, which moves the bar
        to ``done`` and shows ``note`` after the description."""
        bars = self._bars
        if bars is None:
            yield lambda done, note: None
            return
        task = bars.add_task(description, total=total)
        try:
            yield lambda done, note: bars.update(task, completed=done, description=f"{description}: {note}")
        finally:
            bars.remove_task(task)
