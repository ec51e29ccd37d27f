"""The records every layer shares: a run, a notification, an attempt's spec.

This module sits at the bottom of the import graph (it imports nothing of toilbox), so
the store, the runner, the daemon and plugins all name the same types without any of
them importing a module above itself.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from pydantic import BaseModel

RUNNING = "running"


def now_iso() -> str:
    """Now as a UTC instant: every timestamp toilbox stores is one, so strings sort."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def utc_iso(moment: datetime) -> str:
    """An aware datetime as the UTC string the store keeps: one instant, one string."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


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
    host: str = ""  # the host_id of the daemon or command that ran it
    scope: str = "host"  # "host": runs on every host; "fleet": once per slot for the fleet

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
                host=self.host,
                scope=self.scope,
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
    store_url: str | None = None  # the fleet's store, for ctx.history(); None: SQLite
    config_dir: str = ""  # the config file's directory: TaskContext.config_dir


class Claim(enum.Enum):
    """What became of an attempt to claim a fleet slot."""

    WON = "won"  # ours: the slot row and the task's lease are held
    LOST = "lost"  # another daemon claimed the slot first
    BUSY = "busy"  # the slot is ours, but the task is still running: record it skipped
    EARLY = "early"  # our clock is ahead of the database's: try again later


@dataclass(frozen=True)
class SlotClaim:
    outcome: Claim
    early_s: float = 0.0  # for EARLY: how far ahead of the database's clock we are
    holder: str | None = None  # for BUSY: who holds the task


class StripCell(NamedTuple):
    """One run in a task's strip on the status page: what a glance needs, nothing heavy."""

    run_id: str
    status: str
    started_at: str
    duration_s: float | None
    summary: str
    trigger: str
    error_type: str | None


@dataclass(frozen=True)
class SlotWanted:
    """A slot to claim: ``host`` is a host id, or "" for a fleet slot."""

    task: str
    scheduled_for: str
    schedule: str
    claimed_by: str
    host: str = ""


@dataclass(frozen=True)
class Lease:
    """A fleet run's claim on its task, renewed by the daemon that holds it.

    ``name`` is what is held (``task:NAME`` for a fleet task); the job fields say what to
    run again if the holder dies: the slot, the trigger and the attempt it was on.
    """

    name: str
    owner: str  # the daemon instance (one per process, never reused)
    holder: str  # in words, for whoever is refused
    task: str | None = None
    scheduled_for: str | None = None
    trigger: str | None = None
    attempt: int = 1
    lease_until: str | None = None


@dataclass(frozen=True)
class HostInfo:
    """A daemon as the fleet sees it (``toilbox fleet``)."""

    host_id: str
    hostname: str
    version: str
    config_hash: str
    started_at: str
    last_seen: str
    alive: bool
    runs_day: int = 0
    failures_day: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "host_id": self.host_id,
            "hostname": self.hostname,
            "version": self.version,
            "config_hash": self.config_hash,
            "started_at": self.started_at,
            "last_seen": self.last_seen,
            "alive": self.alive,
            "runs_day": self.runs_day,
            "failures_day": self.failures_day,
        }
