"""TaskContext: what a task function is given besides its parameters."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from toilbox.store.base import ReadOnlyHistory


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class TaskContext:
    """The run a task function is part of.

    ``log`` is a structlog logger already bound to ``task``, ``run_id`` and ``attempt``.
    ``state_dir`` is the task's own directory for files it wants to keep between runs.
    ``now()`` is the clock: use it instead of ``datetime.now()`` so tests can freeze it.
    ``force`` is true for a manual run told to go past its safety budgets.
    ``scheduled_for`` is the slot a scheduled run fills (None for a manual run).
    ``console`` is the user's terminal when there is one (for progress bars), else None:
    what a task prints to stdout or stderr is captured into the run's output instead.
    ``history()`` opens the run history for reading (``with ctx.history() as h:``), on
    SQLite and on a fleet's PostgreSQL alike: a plugin never opens the store itself.
    """

    task: str
    run_id: str
    attempt: int
    dry_run: bool
    log: Any
    state_dir: Path
    force: bool = False
    scheduled_for: datetime | None = None
    console: TextIO | None = field(default=None, repr=False)
    clock: Callable[[], datetime] = field(default=utc_now, repr=False)
    open_history: Callable[[], ReadOnlyHistory] | None = field(default=None, repr=False)

    def now(self) -> datetime:
        return self.clock()

    @contextmanager
    def history(self) -> Iterator[ReadOnlyHistory]:
        """The run history, read-only: ``get``, ``history``, ``runs_between``,
        ``last_runs_before``, ``children``.  Closed when the ``with`` block ends."""
        from toilbox.errors import TaskFailed

        if self.open_history is None:
            raise TaskFailed("no run history is available to this task")
        reader = self.open_history()
        try:
            yield reader
        finally:
            reader.close()
