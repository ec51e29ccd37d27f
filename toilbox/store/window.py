"""What the store's aggregate reads of a window of history return (``ReadOnlyHistory``'s
``window_*`` methods): counts, ranks and a few rows, so that a report over a week of a
big store reads what it shows, not every run.  No SQL here; each backend computes these
in its database."""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

# Statuses that are not a finished run: they count in a task's statuses, not in its runs.
NOT_RUNS = ("running", "skipped", "missed")
FAILED = ("critical", "unknown")
# A task with more finished runs than this in a window is drawn from one run per slice
# (its worst): the widest chart of the report is narrower than that many marks.
MAX_POINTS = 120


def slicing(since: str, until: str, most: int) -> dict[str, int]:
    """The chart points' query arguments: at most ``most`` slices of the window, each
    ``span_ms`` of the whole span long (both backends slice alike)."""
    span = datetime.fromisoformat(until) - datetime.fromisoformat(since)
    return {"most": most, "span_ms": max(1, round(span.total_seconds() * 1000))}


class LastRun(NamedTuple):
    """The few fields of a run a summary line shows."""

    status: str
    summary: str
    started_at: str


class TaskWindow(NamedTuple):
    """One task over a window: what it did, in counts and ranks."""

    task: str
    task_type: str  # of its newest run in the window, else of the run before it
    statuses: dict[str, int]  # every run in the window by status, in order of first seen
    runs: int  # finished runs (not running, skipped or missed)
    duration_p50: float | None  # nearest rank over the finished runs' durations
    duration_p95: float | None
    last: LastRun | None  # the newest finished run in the window, else the one before
    before: str | None  # the status of the task's last finished run before the window


class Point(NamedTuple):
    """A finished run as a chart draws it."""

    at: str  # started_at
    status: str
    duration_s: float | None
    trigger: str


class Freed(NamedTuple):
    """What one cleanup task's finished, real (not dry) runs freed on one day (UTC, by the
    run's end)."""

    day: str
    files: int
    bytes: int
