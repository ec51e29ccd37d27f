"""The SQLite store's slots, leases and hosts, mixed into ``SqliteStore``.

On one host they stand in for the fleet's (a fleet task on SQLite runs once per slot on
that host); the same contract as PostgreSQL's, held by tests/test_store_contract.py.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from typing import Any

from toilbox.models import (
    RUNNING,
    Claim,
    HostInfo,
    Lease,
    SlotClaim,
    SlotWanted,
    now_iso,
)
from toilbox.store import sqlite_sql as sql
from toilbox.store.base import ALIVE_S, HOSTS_WINDOW_S


class SqliteFleet:
    """Slots, leases and hosts (``SqliteStore`` gives the plumbing below)."""

    holding: set[str]  # leases held through hold() by this process

    def _query(self, statement: str, args: Any = ()) -> list[sqlite3.Row]:
        raise NotImplementedError

    def _write(self, statement: str, args: Any = ()) -> int:
        raise NotImplementedError

    def _transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError

    def _queue(self, db: sqlite3.Connection, run_id: str) -> None:
        raise NotImplementedError

    # -- slots -------------------------------------------------------------------------

    def claim_slot(
        self, task: str, scheduled_for: str, schedule: str, claimed_by: str, host: str = ""
    ) -> bool:
        row = {"task": task, "host": host, "scheduled_for": scheduled_for, "schedule": schedule,
               "claimed_by": claimed_by, "now": now_iso()}
        return self._write(sql.CLAIM_SLOT, row) == 1

    def last_slot(self, task: str, host: str = "") -> tuple[str, str] | None:
        rows = self._query(sql.LAST_SLOT, (task, host))
        return (rows[0][0], rows[0][1]) if rows else None

    def last_slots(self, tasks: list[str], host: str = "") -> dict[str, tuple[str, str]]:
        found = {task: self.last_slot(task, host) for task in tasks}
        return {task: slot for task, slot in found.items() if slot is not None}

    def claim_slots(self, wanted: list[SlotWanted]) -> list[bool]:
        """Many slots in one transaction: a burst of fires commits once."""
        if not wanted:
            return []
        now = now_iso()
        with self._transaction() as db:
            return [
                db.execute(
                    sql.CLAIM_SLOT,
                    {"task": w.task, "host": w.host, "scheduled_for": w.scheduled_for,
                     "schedule": w.schedule, "claimed_by": w.claimed_by, "now": now},
                ).rowcount == 1
                for w in wanted
            ]

    def claim_fleet_slot(
        self, task: str, scheduled_for: str, schedule: str, lease: Lease, lease_s: float
    ) -> SlotClaim:
        return self.claim_fleet_slots([(task, scheduled_for, schedule, lease)], lease_s)[0]

    def claim_fleet_slots(
        self, wanted: list[tuple[str, str, str, Lease]], lease_s: float
    ) -> list[SlotClaim]:
        """Each slot and its task's lease, all in one transaction: a claimed slot always
        has a lease, so a daemon dying between the two can never lose the slot."""
        with self._transaction() as db:
            return [self._claim_fleet(db, *one, lease_s) for one in wanted]

    def _claim_fleet(
        self,
        db: sqlite3.Connection,
        task: str,
        scheduled_for: str,
        schedule: str,
        lease: Lease,
        lease_s: float,
    ) -> SlotClaim:
        now = datetime.now(UTC)
        early = (datetime.fromisoformat(scheduled_for) - now).total_seconds()
        if early > 0:
            return SlotClaim(Claim.EARLY, early_s=early)
        row = {"task": task, "host": "", "scheduled_for": scheduled_for,
               "schedule": schedule, "claimed_by": lease.owner, "now": now_iso()}
        if not db.execute(sql.CLAIM_SLOT, row).rowcount:
            return SlotClaim(Claim.LOST)
        if not self._take_lease(db, lease, lease_s):
            holder = db.execute(sql.LEASE_HOLDER, (lease.name,)).fetchone()
            return SlotClaim(Claim.BUSY, holder=holder[0] if holder else None)
        return SlotClaim(Claim.WON)

    # -- leases ------------------------------------------------------------------------

    def _take_lease(self, db: sqlite3.Connection, lease: Lease, lease_s: float) -> bool:
        now = datetime.now(UTC)
        row = {
            "name": lease.name,
            "owner": lease.owner,
            "holder": lease.holder,
            "task": lease.task,
            "scheduled_for": lease.scheduled_for,
            "trigger": lease.trigger,
            "attempt": lease.attempt,
            "now": now.isoformat(timespec="microseconds"),
            "until": (now + timedelta(seconds=lease_s)).isoformat(timespec="microseconds"),
        }
        lapsed = db.execute(sql.LAPSED_LEASE_HOLDER, row).fetchone()
        if not db.execute(sql.TAKE_LEASE, row).rowcount:
            return False
        if lapsed is not None and lease.name.startswith("task:"):
            self._end_orphans(db, lease, lapsed[0])
        return True

    def _end_orphans(self, db: sqlite3.Connection, lease: Lease, old_holder: str) -> None:
        """Another owner's lease on a task, taken after it lapsed and before a sweep took
        it over: whatever fleet run of the task is still shown running has nobody left to
        end it.  (Our own is left out: its end may be waiting to be written.)"""
        message = (f"abandoned: {old_holder} stopped renewing its lease; a later slot was"
                   f" claimed by {lease.holder}")
        error = json.dumps({"type": "abandoned", "message": message})
        for (run_id,) in db.execute(sql.RUNNING_FLEET_IDS, (lease.task,)).fetchall():
            db.execute(sql.MARK_ABANDONED, (now_iso(), error, message, run_id, RUNNING))
            self._queue(db, run_id)

    def acquire_lease(self, lease: Lease, lease_s: float) -> bool:
        with self._transaction() as db:
            return self._take_lease(db, lease, lease_s)

    def renew_leases(self, owner: str, names: list[str], lease_s: float) -> list[str]:
        until = (datetime.now(UTC) + timedelta(seconds=lease_s)).isoformat(
            timespec="microseconds"
        )
        rows = self._query(sql.RENEW_LEASES, (until, owner, json.dumps(names)))
        return [row[0] for row in rows]

    def held_leases(self) -> set[str]:
        return set(self.holding)

    def release_lease(self, name: str, owner: str) -> None:
        self._write(sql.RELEASE_LEASE, (name, owner))

    def expired_leases(self, grace_s: float) -> list[Lease]:
        before = (datetime.now(UTC) - timedelta(seconds=grace_s)).isoformat(
            timespec="microseconds"
        )
        return [_lease(row) for row in self._query(sql.EXPIRED_LEASES, (before,))]

    def take_over(self, lease: Lease, owner: str, holder: str, lease_s: float) -> Lease | None:
        """Move an expired lease to ``owner``, once: of several daemons, one wins."""
        with self._transaction() as db:
            now = datetime.now(UTC)
            moved = db.execute(
                sql.TAKE_OVER,
                {
                    "name": lease.name,
                    "old": lease.owner,
                    "owner": owner,
                    "holder": holder,
                    "now": now.isoformat(timespec="microseconds"),
                    "until": (now + timedelta(seconds=lease_s)).isoformat(
                        timespec="microseconds"
                    ),
                },
            ).rowcount
        if not moved:
            return None
        return Lease(
            lease.name, owner, holder, lease.task, lease.scheduled_for, lease.trigger,
            lease.attempt + 1,
        )

    def lease(self, name: str) -> Lease | None:
        rows = self._query(sql.GET_LEASE, (name,))
        return _lease(rows[0]) if rows else None

    def lease_holder(self, name: str) -> str | None:
        rows = self._query(sql.LIVE_LEASE_HOLDER, (name, now_iso()))
        return str(rows[0][0]) if rows else None

    # -- hosts -------------------------------------------------------------------------

    def heartbeat(self, host: HostInfo) -> None:
        self._write(
            sql.HEARTBEAT,
            (host.host_id, host.hostname, host.version, host.config_hash, host.started_at,
             now_iso()),
        )

    def hosts(self) -> list[HostInfo]:
        now = datetime.now(UTC)
        day = (now - timedelta(seconds=HOSTS_WINDOW_S)).isoformat(timespec="microseconds")
        alive_after = (now - timedelta(seconds=ALIVE_S)).isoformat(timespec="microseconds")
        return [
            HostInfo(
                host_id=row["host_id"],
                hostname=row["hostname"],
                version=row["version"],
                config_hash=row["config_hash"],
                started_at=row["started_at"],
                last_seen=row["last_seen"],
                alive=row["last_seen"] >= alive_after,
                runs_day=row["runs_day"],
                failures_day=row["failures_day"],
            )
            for row in self._query(sql.HOSTS, {"day": day})
        ]


def _lease(row: sqlite3.Row) -> Lease:
    return Lease(
        name=row["name"],
        owner=row["owner"],
        holder=row["holder"],
        task=row["task"],
        scheduled_for=row["scheduled_for"],
        trigger=row["trigger"],
        attempt=row["attempt"],
        lease_until=row["lease_until"],
    )
