"""The records every layer shares: a run, a notification, an attempt's spec.

This module sits at the bottom of the import graph (it imports nothing of toilbox), so
the store, the runner, the daemon and plugins all name the same types without any of
them importing a module above itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import BaseModel

RUNNING = "running"


def now_iso() -> str:
    """Now as a UTC instant: every timestamp toilbox stores is one, so strings sort."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def utc_iso(moment: datetime) -> str:
    """An aware datetime as the UTC string the store keeps (one instant, one string)."""
    return moment.astimezone(UTC).isoformat()


@dataclass
class RunRecord:
    """One run of one task, as stored and as ``history --json`` shows it."""

    run_id: str
    task: str
    task_type: str
    status: str
    trigger: str
    started_at: str
    hostname: str
    pid: int
    finished_at: str | None = None
    scheduled_for: str | None = None
    parent_run_id: str | None = None
    attempts: int = 0
    duration_s: float | None = None
    summary: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    error: dict[str, Any] | None = None
    details: str = ""
    output: str = ""
    dry_run: bool = False

    def to_json(self, *, history: bool = False) -> dict[str, Any]:
        """The ``run --json`` object; ``history=True`` adds the timing and lineage keys."""
        out: dict[str, Any] = {
            "task": self.task,
            "run_id": self.run_id,
            "status": self.status,
            "attempts": self.attempts,
            "duration_s": self.duration_s,
            "summary": self.summary,
            "metrics": self.metrics,
            "data": self.data,
            "error": self.error,
            "details": self.details,
            "task_type": self.task_type,
            "dry_run": self.dry_run,
        }
        if history:
            out.update(
                started_at=self.started_at,
                finished_at=self.finished_at,
                trigger=self.trigger,
                scheduled_for=self.scheduled_for,
                parent_run_id=self.parent_run_id,
                hostname=self.hostname,
                pid=self.pid,
            )
        return out


@dataclass
class Notification:
    """What toilbox tells people; ``destinations`` are the apprise URLs it goes to."""

    task: str
    kind: str  # problem, recovery, flapping, settled, fixed, circuit_open
    status: str
    title: str
    body: str
    run_id: str | None
    destinations: list[str] = field(default_factory=list)
    chain: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class AttemptSpec:
    """What a child needs to find and run the task."""

    task: str
    task_type: str
    params: BaseModel  # validated when the config loaded; never re-parsed from its dump
    plugin_dirs: tuple[str, ...]
    run_id: str
    attempt: int
    dry_run: bool
    force: bool
    state_dir: str
    scheduled_for: datetime | None = None
    secrets: tuple[str, ...] = ()  # to redact: a zygote may predate a reloaded config
