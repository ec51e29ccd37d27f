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
    """The run a task function is part of: ``fn(ctx, params)`` gets one per attempt."""

    task: str
    """The task's name in the config (``tasks.NAME``)."""
    run_id: str
    """The run's id, as ``toilbox history`` shows it; the same for every attempt."""
    attempt: int
    """1 for the first attempt, 2, 3 ... when the task's retry policy tries again."""
    dry_run: bool
    """True under ``toilbox run --dry-run``: change nothing, say what would be done."""
    log: Any
    """A structlog logger already bound to ``task``, ``run_id`` and ``attempt``:
    ``ctx.log.info("event.name", key=value)``.  Secrets from the config are redacted."""
    state_dir: Path
    """A directory of the task's own, kept between runs (``STATE_DIR/tasks/NAME``)."""
    force: bool = False
    """True for a manual ``toilbox run --force``: go past the task's safety budgets once."""
    scheduled_for: datetime | None = None
    """The slot a scheduled run fills (an aware datetime); None for a manual run."""
    console: TextIO | None = field(default=None, repr=False)
    """The user's terminal when there is one (for a progress bar), else None.  What a
    task prints to stdout or stderr is captured into the run's ``output`` instead."""
    clock: Callable[[], datetime] = field(default=utc_now, repr=False)
    """What ``now()`` reads; tests replace it (see the ``toilbox_clock`` fixture)."""
    config_dir: Path = field(default_factory=Path.cwd)
    """The config file's directory: relative paths in the config are read from here
    (``toilbox.units.ConfigPath`` does it for a params field)."""
    open_history: Callable[[], ReadOnlyHistory] | None = field(default=None, repr=False)
    """Opens the run history for ``history()``; None where there is none."""

    def now(self) -> datetime:
        """The current time, timezone-aware (UTC): use it, not ``datetime.now()``, so
        that tests can freeze and move the clock."""
        return self.clock()

    @contextmanager
    def history(self) -> Iterator[ReadOnlyHistory]:
        """The run history, read-only: ``get``, ``history``, ``runs_between``,
        ``last_runs_before``, ``children``, and a window's aggregates (``window_*``).
        Closed when the ``with`` block ends."""
        from toilbox.errors import TaskFailed

        if self.open_history is None:
            raise TaskFailed("no run history is available to this task")
        reader = self.open_history()
        try:
            yield reader
        finally:
            reader.close()
