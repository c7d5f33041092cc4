"""The progress display of `azr train` and `azr eval`, readable in a terminal and in a log file.

rich draws a live bar only on a terminal; on anything else (``nohup … > log``, CI, a pipe) it prints the
bar once, when the work ends, so a 40-minute evaluation leaves an empty log until its last second. On such
a console this display also prints one plain line per task at most every ``every_s`` seconds, and one
when the task finishes; ``note`` adds a line of the caller's (`azr train` notes each stage of a step). (A notebook gets rich's own live widget, as before.)
"""
from __future__ import annotations

import os
import time
from datetime import timedelta

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn


class LogProgress(Progress):
    """rich's Progress, plus throttled plain lines when the console is not a terminal."""

    def __init__(self, *columns, every_s: float = 60.0, **kw):
        super().__init__(*(columns or default_columns()), **kw)
        self.every_s = every_s
        self._logged: dict[TaskID, float] = {}  # task → time of its last line
        self._done: set[TaskID] = set()

    def update(self, task_id: TaskID, *args, **kw) -> None:
        super().update(task_id, *args, **kw)
        self._log(task_id)

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        super().advance(task_id, advance)
        self._log(task_id)

    def note(self, task_id: TaskID, description: str, line: str) -> None:
        """Show `description` on the task's bar and, when the console is not a terminal (where the live bar shows
        it), print `line` now. Not one of the throttled lines: it neither waits for nor delays them."""
        super().update(task_id, description=description)
        if not (self.disable or self.console.is_terminal or self.console.is_jupyter):
            self.console.print(line, markup=False, highlight=False, soft_wrap=True)

    def _log(self, task_id: TaskID) -> None:
        if self.disable or self.console.is_terminal or self.console.is_jupyter or task_id in self._done:
            return
        task = next(t for t in self.tasks if t.id == task_id)
        now = time.monotonic()
        if not task.finished and now - self._logged.get(task_id, -float("inf")) < self.every_s:
            return
        self._logged[task_id] = now
        if task.finished:
            self._done.add(task_id)
        total = f"/{task.total:g}" if task.total is not None else ""
        clock = timedelta(seconds=int(task.elapsed or 0))  # H:MM:SS, like the bar's own column
        self.console.print(f"{task.description} · {task.completed:g}{total} · {clock}",
                           markup=False, highlight=False, soft_wrap=True)


def make_console(min_log_width: int = 120):
    """A rich Console. Writing to a log file rather than a terminal, rich assumes 80 columns and cuts table cells
    to "qwen2.5…"; there it gets at least ``min_log_width`` unless $COLUMNS says otherwise."""
    console = Console()
    if not console.is_terminal and not console.is_jupyter and "COLUMNS" not in os.environ:
        console = Console(width=max(console.width, min_log_width))
    return console


def default_columns():
    """What every azr bar shows: the description, a bar, done/total and the time elapsed."""
    return TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()

