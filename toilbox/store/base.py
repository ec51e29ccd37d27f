"""The store port: every operation the core needs from its state store.

One backend per engine implements it (``sqlite``, the default; ``postgres``, for
fleets), and one contract test suite (tests/test_store_contract.py) runs against each.
Nothing outside the backends speaks SQL or opens the database.

Every method raises ``StateError`` (one line, no traceback) when the database cannot be
read or written.  Timestamps in and out are UTC ISO strings (``models.utc_iso``).
``host`` arguments are host ids; ``""`` is the fleet (a fleet-scope slot, a fleet-scope
check's state).
"""

from __future__ import annotations

import math
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from toilbox.models import HostInfo, Lease, RunRecord, SlotClaim, SlotWanted, StripCell
from toilbox.store.window import MAX_POINTS, Freed, Point, TaskWindow

HOSTS_WINDOW_S = 86400.0  # "the hosts seen in the last day": the fleet budget's denominator
ALIVE_S = 60.0  # a host not seen for this long is shown as gone


@dataclass(frozen=True)
class Budget:
    """The remediation budgets one fix must fit in."""

    per_check_max: int
    per_s: float
    max_per_hour: int
    max_hosts: int | None = None  # at most this many distinct hosts fixed per hour
    max_hosts_share: float | None = None  # or this share of the hosts seen in a day
    fleet_check: bool = False  # a fleet-scope check: its per-check budget spans hosts


def budget_verdict(
    budget: Budget,
    check_fixes: int,
    host_fixes_hour: int,
    hosts_fixed_hour: int,
    this_host_counted: bool,
    hosts_seen_day: int,
) -> str | None:
    """Why a fix may not run (None: it may), from the counts a backend read in the same
    transaction it will record the fix in."""
    from toilbox.units import format_duration

    if check_fixes >= budget.per_check_max:
        return f"budget spent: {budget.per_check_max} fix(es) per {format_duration(budget.per_s)}"
    if host_fixes_hour >= budget.max_per_hour:
        return f"the global budget of {budget.max_per_hour} fixes per hour is spent"
    allowed = fleet_allowance(budget, hosts_seen_day)
    if allowed is not None and not this_host_counted and hosts_fixed_hour >= allowed:
        return (
            f"the fleet budget is spent: {hosts_fixed_hour} of {allowed} host(s) fixed this"
            f" hour ({hosts_seen_day} host(s) seen in the last day)"
        )
    return None


def fleet_allowance(budget: Budget, hosts_seen_day: int) -> int | None:
    """How many distinct hosts may be fixed per hour; a share rounds down, but never
    below one host (a budget no fix fits in is a kill switch, and that one exists)."""
    if budget.max_hosts is not None:
        return budget.max_hosts
    if budget.max_hosts_share is not None:
        return max(1, math.floor(budget.max_hosts_share * max(hosts_seen_day, 1) + 1e-9))
    return None


class ReadOnlyHistory(Protocol):
    """What a plugin may read (``ctx.history()``): runs, never a write."""

    def get(self, run_id: str) -> RunRecord | None: ...
    def history(
        self, task: str | None = None, limit: int = 20, host: str | None = None
    ) -> list[RunRecord]: ...
    def runs_between(self, since: str, until: str) -> list[RunRecord]: ...
    def last_runs_before(self, since: str) -> dict[str, RunRecord]: ...
    def children(self, run_id: str) -> list[RunRecord]: ...
    def close(self) -> None: ...

    # -- a window of history, aggregated in the database ([since, until), by start) -----
    # ``tasks``: only these (None: all); ``host``: only its runs (None: every host).
    def window_tasks(
        self, since: str, until: str, tasks: list[str] | None = None, host: str | None = None
    ) -> list[TaskWindow]:
        """Each task with a run in the window, or a finished run before it (the task's
        last before the window, on any host: dropped when it is another ``host``'s), by
        name."""
    def window_failures(
        self, since: str, until: str, tasks: list[str], limit: int, host: str | None = None
    ) -> dict[str, list[RunRecord]]:
        """Each task's newest ``limit`` critical or unknown runs in the window, newest
        first, without their heavy columns (metrics, data, details, output)."""
    def window_changes(
        self, since: str, until: str, tasks: list[str], host: str | None = None
    ) -> dict[str, list[tuple[str, str]]]:
        """Each task's finished runs in the window, in order of their end, whose status
        differs from the finished run before them in the window (the first always):
        ``(finished_at or started_at, status)``."""
    def window_points(
        self,
        since: str,
        until: str,
        tasks: list[str],
        host: str | None = None,
        most: int = MAX_POINTS,
    ) -> dict[str, list[Point]]:
        """Each task's finished runs in the window by start; a task with more than
        ``most`` gets, of each of ``most`` equal slices of the window, its worst run (by
        severity, then duration)."""
    def window_freed(
        self, since: str, until: str, tasks: list[str], host: str | None = None
    ) -> dict[str, list[Freed]]:
        """What each task's finished, not dry cleanup runs (``cleanup.*``) freed per
        day (``files_deleted`` and ``bytes_freed`` metrics, else ``data.deleted``), by
        day."""
    def window_followups(
        self, since: str, until: str, tasks: list[str] | None = None, host: str | None = None
    ) -> list[RunRecord]:
        """The remediation and verify runs in the window that have a parent, and those
        parents that are in the window too, by start, without their heavy columns."""


class Store(ReadOnlyHistory, Protocol):
    """Runs, slots, leases, hosts, check states, notifications, budgets, settings, locks."""

    kind: str  # "sqlite" or "postgresql"
    location: str  # where it is, for messages (a path, or a URL without its password)
    owner: str  # this process's identity for leases: unique, never reused

    # -- runs --------------------------------------------------------------------------
    def start_run(self, record: RunRecord) -> None: ...
    def finish_run(self, record: RunRecord) -> bool:
        """False when the run is no longer running (marked abandoned: its owner was
        fenced off): a finish from a fenced owner is rejected."""
    def record(self, record: RunRecord) -> None:
        """Store a record that is already final (a skipped or missed slot)."""
    def record_many(self, records: list[RunRecord]) -> None:
        """Store many final records in one transaction (an import; the benchmarks fill
        their stores with it)."""
    def last_runs(self, tasks: list[str], host: str | None = None) -> dict[str, RunRecord]: ...
    def last_success_times(self, tasks: list[str]) -> dict[str, str]: ...
    def running(self, host: str) -> list[RunRecord]: ...
    def running_fleet(self, task: str) -> list[RunRecord]: ...
    def slot_runs(self, task: str, scheduled_for: str) -> list[RunRecord]: ...
    def mark_abandoned(self, run_id: str, message: str) -> bool: ...

    # -- slots and leases --------------------------------------------------------------
    def claim_slot(
        self, task: str, scheduled_for: str, schedule: str, claimed_by: str, host: str = ""
    ) -> bool:
        """Claim a scheduled fire; False if it was claimed before (by anyone, ever)."""
    def last_slot(self, task: str, host: str = "") -> tuple[str, str] | None: ...
    def last_slots(self, tasks: list[str], host: str = "") -> dict[str, tuple[str, str]]:
        """``last_slot`` of many tasks at once (a daemon's start-up)."""
    def claim_slots(self, wanted: list[SlotWanted]) -> list[bool]:
        """Many claims at once (a burst of fires); the answers in order."""
    def claim_fleet_slots(
        self, wanted: list[tuple[str, str, str, Lease]], lease_s: float
    ) -> list[SlotClaim]:
        """Many fleet claims at once, each as ``claim_fleet_slot``; distinct tasks."""
    def claim_fleet_slot(
        self, task: str, scheduled_for: str, schedule: str, lease: Lease, lease_s: float
    ) -> SlotClaim:
        """Claim a fleet slot and the task's lease in one transaction, judged on the
        database's clock."""
    def acquire_lease(self, lease: Lease, lease_s: float) -> bool: ...
    def renew_leases(self, owner: str, names: list[str], lease_s: float) -> list[str]:
        """Extend these leases of ``owner``; the names it still holds.  A lease not named
        (left over after a failed release) runs out, and the sweep tidies it."""
    def held_leases(self) -> set[str]:
        """The leases held through ``hold`` by this process (a daemon renews them)."""
    def release_lease(self, name: str, owner: str) -> None: ...
    def expired_leases(self, grace_s: float) -> list[Lease]: ...
    def take_over(self, lease: Lease, owner: str, holder: str, lease_s: float) -> Lease | None:
        """Move an expired lease to ``owner``; None if another daemon was first."""
    def lease(self, name: str) -> Lease | None: ...
    def lease_holder(self, name: str) -> str | None: ...

    # -- hosts -------------------------------------------------------------------------
    def heartbeat(self, host: HostInfo) -> None: ...
    def hosts(self) -> list[HostInfo]: ...

    # -- check state, notifications, remediations, settings ----------------------------
    def check_state(self, task: str, host: str = "") -> dict[str, Any] | None: ...
    def save_check_state(self, task: str, state: dict[str, Any], host: str = "") -> None: ...
    def check_states(self, task: str | None = None) -> list[tuple[str, str, dict[str, Any]]]: ...
    def add_notification(
        self, dedupe_key: str, task: str, kind: str, run_id: str | None, title: str, body: str
    ) -> bool:
        """Record a notification once; False if this one was recorded before."""
    def set_notification_sent_to(self, dedupe_key: str, sent_to: list[str]) -> None: ...
    def notifications_for(self, run_ids: list[str]) -> list[dict[str, Any]]: ...
    def take_send_slot(self, destination: str, limit: int, window_s: float) -> bool: ...
    def take_remediation(
        self, check: str, host: str, run_id: str, budget: Budget
    ) -> str | None:
        """Count one fix of ``check`` on ``host`` unless a budget forbids it: None when
        taken, else why not.  ``budget.fleet_check``: the per-check budget is the fleet's
        (a fleet-scope check is one check, whichever host runs it)."""
    def count_remediations(self, window_s: float, check: str | None = None) -> int: ...
    def remediated_hosts(self, window_s: float) -> int: ...
    def setting(self, key: str) -> str | None: ...
    def set_setting(self, key: str, value: str | None) -> None: ...

    # -- run locks ---------------------------------------------------------------------
    def hold(
        self, name: str, what: str, purpose: str, *, scope: str = "host", lease_s: float = 0
    ) -> AbstractContextManager[None]:
        """Hold the lock ``name`` (a task, or the daemon) or raise AlreadyRunning naming
        the holder.  A fleet task's lock holds across hosts for ``lease_s``."""
    def holder(self, name: str) -> str | None:
        """Who holds lock ``name``, in words; None when it is free."""

    # -- the status page (runs read without their heavy columns) ----------------------
    def run_strips(
        self, tasks: list[str], limit: int, host: str | None = None
    ) -> dict[str, list[StripCell]]:
        """Each task's newest ``limit`` runs, newest first, skipped and missed included."""
    def last_with_status(
        self, tasks: list[str], statuses: list[str], host: str | None = None
    ) -> dict[str, dict[str, RunRecord]]:
        """Each task's newest run of each status: {task: {status: run}}."""
    def notable_since(self, since: str, host: str | None = None) -> dict[str, int]:
        """Since then: slots missed, runs skipped, runs abandoned."""

    # -- housekeeping ------------------------------------------------------------------
    def prune(self, before: str, slots_before: str, batch: int = 1000) -> int: ...
    def compact(self) -> None: ...
    def size_bytes(self) -> int: ...
    def history_reader(self) -> ReadOnlyHistory: ...
