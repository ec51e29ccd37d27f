"""A daemon's store in fleet mode: the fleet's PostgreSQL, with a local SQLite beside it.

Fleet-scope work (its slots, leases and runs), check states, notifications, budgets,
settings and every read go to the shared store.  A host-scope task is this host's own
business: its slots, its run lock and its run records are kept in the local SQLite
first and shipped to the shared store from an outbox, so host tasks go on while
PostgreSQL is away and their records arrive once, whole, when it returns.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from toilbox.errors import AlreadyRunning, StateError
from toilbox.models import HostInfo, Lease, RunRecord, SlotClaim, SlotWanted, StripCell
from toilbox.store.base import Budget, ReadOnlyHistory
from toilbox.store.postgres import PostgresStore
from toilbox.store.sqlite import SqliteStore
from toilbox.store.window import MAX_POINTS, Freed, Point, TaskWindow

DAEMON_LOCK = "_daemon"


def _dead_here(owner: str) -> bool:
    """Was a lease's owner ("hostname:pid:nonce") a process of this machine that is gone?"""
    hostname, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if hostname != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class FleetStore:
    kind = "postgresql"

    def __init__(self, shared: PostgresStore, local: SqliteStore, host_id: str) -> None:
        self.shared = shared
        self.local = local
        self.host_id = host_id
        self.location = shared.location
        self.owner = shared.owner

    def close(self) -> None:
        with contextlib.suppress(StateError):
            self.ship()
        self.local.close()
        self.shared.close()

    def history_reader(self) -> ReadOnlyHistory:
        return self.shared

    def _of(self, record: RunRecord) -> SqliteStore | PostgresStore:
        return self.shared if record.scope == "fleet" else self.local

    # -- the outbox --------------------------------------------------------------------

    def ship(self, batch: int = 500) -> int:
        """Send host runs waiting locally to the shared store; how many went."""
        shipped = 0
        while True:
            waiting = self.local.unshipped(batch)
            if not waiting:
                return shipped
            self.shared.ship_runs(waiting)
            self.local.shipped(waiting)
            shipped += len(waiting)
            if len(waiting) < batch:
                return shipped

    # -- runs --------------------------------------------------------------------------

    def start_run(self, record: RunRecord) -> None:
        self._of(record).start_run(record)

    def finish_run(self, record: RunRecord) -> bool:
        return self._of(record).finish_run(record)

    def record(self, record: RunRecord) -> None:
        self._of(record).record(record)

    def get(self, run_id: str) -> RunRecord | None:
        return self.local.get(run_id) or self.shared.get(run_id)

    def history(
        self, task: str | None = None, limit: int = 20, host: str | None = None
    ) -> list[RunRecord]:
        return self.shared.history(task, limit, host)

    def last_runs(self, tasks: list[str], host: str | None = None) -> dict[str, RunRecord]:
        return self.shared.last_runs(tasks, host)

    def last_success_times(self, tasks: list[str]) -> dict[str, str]:
        return self.shared.last_success_times(tasks)

    def children(self, run_id: str) -> list[RunRecord]:
        shared = {r.run_id: r for r in self.shared.children(run_id)}
        local = {r.run_id: r for r in self.local.children(run_id)}
        return sorted({**shared, **local}.values(), key=lambda r: r.started_at)

    def running(self, host: str) -> list[RunRecord]:
        return self.local.running(host)

    def running_fleet(self, task: str) -> list[RunRecord]:
        return self.shared.running_fleet(task)

    def mark_abandoned(self, run_id: str, message: str) -> bool:
        return self.local.mark_abandoned(run_id, message) or self.shared.mark_abandoned(
            run_id, message
        )

    def runs_between(self, since: str, until: str) -> list[RunRecord]:
        return self.shared.runs_between(since, until)

    def last_runs_before(self, since: str) -> dict[str, RunRecord]:
        return self.shared.last_runs_before(since)

    def record_many(self, records: list[RunRecord]) -> None:
        self.shared.record_many(records)

    # A window of history is read where the fleet's history is: the shared store.
    def window_tasks(
        self, since: str, until: str, tasks: list[str] | None = None, host: str | None = None
    ) -> list[TaskWindow]:
        return self.shared.window_tasks(since, until, tasks, host)

    def window_failures(
        self, since: str, until: str, tasks: list[str], limit: int, host: str | None = None
    ) -> dict[str, list[RunRecord]]:
        return self.shared.window_failures(since, until, tasks, limit, host)

    def window_changes(
        self, since: str, until: str, tasks: list[str], host: str | None = None
    ) -> dict[str, list[tuple[str, str]]]:
        return self.shared.window_changes(since, until, tasks, host)

    def window_points(
        self, since: str, until: str, tasks: list[str], host: str | None = None,
        most: int = MAX_POINTS,
    ) -> dict[str, list[Point]]:
        return self.shared.window_points(since, until, tasks, host, most)

    def window_freed(
        self, since: str, until: str, tasks: list[str], host: str | None = None
    ) -> dict[str, list[Freed]]:
        return self.shared.window_freed(since, until, tasks, host)

    def window_followups(
        self, since: str, until: str, tasks: list[str] | None = None, host: str | None = None
    ) -> list[RunRecord]:
        return self.shared.window_followups(since, until, tasks, host)

    # -- slots and leases --------------------------------------------------------------

    def claim_slot(
        self, task: str, scheduled_for: str, schedule: str, claimed_by: str, host: str = ""
    ) -> bool:
        store = self.local if host else self.shared
        return store.claim_slot(task, scheduled_for, schedule, claimed_by, host)

    def last_slot(self, task: str, host: str = "") -> tuple[str, str] | None:
        return (self.local if host else self.shared).last_slot(task, host)

    def claim_slots(self, wanted: list[SlotWanted]) -> list[bool]:
        """Host slots locally, fleet slots in the shared store; answers in order."""
        local = [w for w in wanted if w.host]
        shared = [w for w in wanted if not w.host]
        answers = dict(zip(local, self.local.claim_slots(local), strict=True))
        answers.update(zip(shared, self.shared.claim_slots(shared), strict=True))
        return [answers[w] for w in wanted]

    def last_slots(self, tasks: list[str], host: str = "") -> dict[str, tuple[str, str]]:
        return (self.local if host else self.shared).last_slots(tasks, host)

    def claim_fleet_slots(
        self, wanted: list[tuple[str, str, str, Lease]], lease_s: float
    ) -> list[SlotClaim]:
        return self.shared.claim_fleet_slots(wanted, lease_s)

    def claim_fleet_slot(
        self, task: str, scheduled_for: str, schedule: str, lease: Lease, lease_s: float
    ) -> SlotClaim:
        return self.shared.claim_fleet_slot(task, scheduled_for, schedule, lease, lease_s)

    def acquire_lease(self, lease: Lease, lease_s: float) -> bool:
        return self.shared.acquire_lease(lease, lease_s)

    def renew_leases(self, owner: str, names: list[str], lease_s: float) -> list[str]:
        return self.shared.renew_leases(owner, names, lease_s)

    def held_leases(self) -> set[str]:
        return self.shared.held_leases()

    def release_lease(self, name: str, owner: str) -> None:
        self.shared.release_lease(name, owner)

    def expired_leases(self, grace_s: float) -> list[Lease]:
        return self.shared.expired_leases(grace_s)

    def take_over(self, lease: Lease, owner: str, holder: str, lease_s: float) -> Lease | None:
        return self.shared.take_over(lease, owner, holder, lease_s)

    def lease_holder(self, name: str) -> str | None:
        return self.shared.lease_holder(name)

    def lease(self, name: str) -> Lease | None:
        return self.shared.lease(name)

    # -- hosts -------------------------------------------------------------------------

    def heartbeat(self, host: HostInfo) -> None:
        self.shared.heartbeat(host)

    def hosts(self) -> list[HostInfo]:
        return self.shared.hosts()

    # -- automation --------------------------------------------------------------------

    def check_state(self, task: str, host: str = "") -> dict[str, Any] | None:
        return self.shared.check_state(task, host)

    def save_check_state(self, task: str, state: dict[str, Any], host: str = "") -> None:
        self.shared.save_check_state(task, state, host)

    def check_states(self, task: str | None = None) -> list[tuple[str, str, dict[str, Any]]]:
        return self.shared.check_states(task)

    def add_notification(
        self, dedupe_key: str, task: str, kind: str, run_id: str | None, title: str, body: str
    ) -> bool:
        return self.shared.add_notification(dedupe_key, task, kind, run_id, title, body)

    def set_notification_sent_to(self, dedupe_key: str, sent_to: list[str]) -> None:
        self.shared.set_notification_sent_to(dedupe_key, sent_to)

    def notifications_for(self, run_ids: list[str]) -> list[dict[str, Any]]:
        return self.shared.notifications_for(run_ids)

    def take_send_slot(self, destination: str, limit: int, window_s: float) -> bool:
        return self.shared.take_send_slot(destination, limit, window_s)

    def take_remediation(self, check: str, host: str, run_id: str, budget: Budget) -> str | None:
        return self.shared.take_remediation(check, host, run_id, budget)

    def count_remediations(self, window_s: float, check: str | None = None) -> int:
        return self.shared.count_remediations(window_s, check)

    def remediated_hosts(self, window_s: float) -> int:
        return self.shared.remediated_hosts(window_s)

    def setting(self, key: str) -> str | None:
        return self.shared.setting(key)

    def set_setting(self, key: str, value: str | None) -> None:
        self.shared.set_setting(key, value)

    # -- run locks ---------------------------------------------------------------------

    def hold(
        self, name: str, what: str, purpose: str, *, scope: str = "host", lease_s: float = 0
    ) -> AbstractContextManager[None]:
        if name == DAEMON_LOCK:
            return self._daemon_lock(what, purpose, lease_s)
        store = self.shared if scope == "fleet" else self.local
        return store.hold(name, what, purpose, scope=scope, lease_s=lease_s)

    @contextmanager
    def _daemon_lock(self, what: str, purpose: str, lease_s: float) -> Iterator[None]:
        """This state dir's lock, and the host id's in the fleet: two daemons may not
        share a host id.  A lease left by a dead daemon of this machine (its flock is
        free, so it is gone) is taken back at once rather than waited out."""
        with self.local.hold(DAEMON_LOCK, what, purpose):
            name = f"lock:{DAEMON_LOCK}@{self.host_id}"
            holder = f"pid {os.getpid()} on {socket.gethostname()} ({purpose})"
            lease = Lease(name, self.owner, holder)
            if not self.shared.acquire_lease(lease, lease_s):
                left = self.shared.lease(name)
                if left is None or not _dead_here(left.owner):
                    taken = self.shared.lease_holder(name) or "holder unknown"
                    raise AlreadyRunning(
                        f'host id "{self.host_id}" is in use by another daemon ({taken});'
                        " each daemon needs its own (host_id or TOILBOX_HOST_ID)"
                    )
                self.shared.release_lease(name, left.owner)
                if not self.shared.acquire_lease(lease, lease_s):
                    raise AlreadyRunning(f'host id "{self.host_id}" was just taken by another')
            self.shared.holding.add(name)
            try:
                yield
            finally:
                self.shared.holding.discard(name)
                with contextlib.suppress(StateError):
                    self.shared.release_lease(name, self.owner)

    def holder(self, name: str) -> str | None:
        return self.local.holder(name) or self.shared.holder(name)

    def slot_runs(self, task: str, scheduled_for: str) -> list[RunRecord]:
        return self.shared.slot_runs(task, scheduled_for)

    # -- the status page ---------------------------------------------------------------

    def run_strips(
        self, tasks: list[str], limit: int, host: str | None = None
    ) -> dict[str, list[StripCell]]:
        return self.shared.run_strips(tasks, limit, host)

    def last_with_status(
        self, tasks: list[str], statuses: list[str], host: str | None = None
    ) -> dict[str, dict[str, RunRecord]]:
        return self.shared.last_with_status(tasks, statuses, host)

    def notable_since(self, since: str, host: str | None = None) -> dict[str, int]:
        return self.shared.notable_since(since, host)

    # -- housekeeping ------------------------------------------------------------------

    def prune(self, before: str, slots_before: str, batch: int = 1000) -> int:
        local = self.local.prune(before, slots_before, batch)
        return local + self.shared.prune(before, slots_before, batch)

    def compact(self) -> None:
        self.local.compact()

    def size_bytes(self) -> int:
        return self.shared.size_bytes()
