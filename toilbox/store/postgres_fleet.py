"""The PostgreSQL store's slots, leases and hosts: how a fleet of daemons shares its
slots, each judged on the database's clock.  Mixed into ``PostgresStore``, which gives
the plumbing (``_all``, ``_one``, ``_run``); the SQL is in postgres.sql."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from toilbox.models import Claim, HostInfo, Lease, SlotClaim, SlotWanted, utc_iso
from toilbox.store.base import ALIVE_S, HOSTS_WINDOW_S


class PostgresFleet:
    """Slots, leases and hosts."""

    holding: set[str]  # leases held through hold() by this process

    def _all(
        self, name: str, args: dict[str, Any] | None = None, probe: bool = False
    ) -> list[dict[str, Any]]:
        raise NotImplementedError

    def _one(self, name: str, args: dict[str, Any] | None = None) -> Any:
        raise NotImplementedError

    def _run(self, name: str, args: dict[str, Any]) -> int:
        raise NotImplementedError

    # -- slots and leases --------------------------------------------------------------

    def claim_slot(
        self, task: str, scheduled_for: str, schedule: str, claimed_by: str, host: str = ""
    ) -> bool:
        args = {
            "task": task,
            "host": host,
            "scheduled_for": scheduled_for,
            "schedule": schedule,
            "claimed_by": claimed_by,
        }
        return bool(self._all("claim_slot", args))

    def last_slot(self, task: str, host: str = "") -> tuple[str, str] | None:
        rows = self._all("last_slot", {"task": task, "host": host})
        return (utc_iso(rows[0]["scheduled_for"]), rows[0]["schedule"]) if rows else None

    def claim_slots(self, wanted: list[SlotWanted]) -> list[bool]:
        if not wanted:
            return []
        args = {
            "tasks": [w.task for w in wanted],
            "hosts": [w.host for w in wanted],
            "slots": [w.scheduled_for for w in wanted],
            "schedules": [w.schedule for w in wanted],
            "claimed_by": [w.claimed_by for w in wanted],
        }
        won = {(r["task"], r["host"], utc_iso(r["scheduled_for"]))
               for r in self._all("claim_slots", args)}
        return [(w.task, w.host, utc_iso(datetime.fromisoformat(w.scheduled_for))) in won
                for w in wanted]

    def last_slots(self, tasks: list[str], host: str = "") -> dict[str, tuple[str, str]]:
        rows = self._all("last_slots", {"tasks": tasks, "host": host})
        return {r["task"]: (utc_iso(r["scheduled_for"]), r["schedule"]) for r in rows}

    def claim_fleet_slot(
        self, task: str, scheduled_for: str, schedule: str, lease: Lease, lease_s: float
    ) -> SlotClaim:
        args = {"task": task, "slot": scheduled_for, "schedule": schedule,
                "owner": lease.owner, "holder": lease.holder, "trigger": lease.trigger,
                "lease_s": lease_s}
        return _claim(self._all("claim_fleet_slot", args)[0])

    def claim_fleet_slots(
        self, wanted: list[tuple[str, str, str, Lease]], lease_s: float
    ) -> list[SlotClaim]:
        """Slots and their tasks' leases in one statement, judged on the database's
        clock: a daemon whose clock runs ahead cannot claim early, and a daemon dying
        between the two can never leave a slot claimed with nobody holding it.  The
        tasks must be distinct (a task has one lease)."""
        if not wanted:
            return []
        if len(wanted) == 1:
            return [self.claim_fleet_slot(*wanted[0], lease_s)]
        owners = {lease.owner for *_, lease in wanted}
        if len(owners) != 1 or len({task for task, *_ in wanted}) != len(wanted):
            raise ValueError("claim_fleet_slots takes distinct tasks of one owner")
        args = {
            "tasks": [task for task, *_ in wanted],
            "slots": [slot for _, slot, _, _ in wanted],
            "schedules": [schedule for _, _, schedule, _ in wanted],
            "holders": [lease.holder for *_, lease in wanted],
            "triggers": [lease.trigger for *_, lease in wanted],
            "owner": owners.pop(),
            "lease_s": lease_s,
        }
        rows = {r["task"]: r for r in self._all("claim_fleet_slots", args)}
        return [_claim(rows[task]) for task, *_ in wanted]

    def acquire_lease(self, lease: Lease, lease_s: float) -> bool:
        return bool(self._all("take_lease", _lease_row(lease, lease_s)))

    def renew_leases(self, owner: str, names: list[str], lease_s: float) -> list[str]:
        """Also the daemon's probe: the one call that goes to a store marked unavailable."""
        args = {"owner": owner, "names": names, "lease_s": lease_s}
        return [row["name"] for row in self._all("renew_leases", args, probe=True)]

    def held_leases(self) -> set[str]:
        return set(self.holding)

    def release_lease(self, name: str, owner: str) -> None:
        self._run("release_lease", {"name": name, "owner": owner})

    def expired_leases(self, grace_s: float) -> list[Lease]:
        return [_lease(row) for row in self._all("expired_leases", {"grace_s": grace_s})]

    def take_over(self, lease: Lease, owner: str, holder: str, lease_s: float) -> Lease | None:
        args = {"name": lease.name, "old": lease.owner, "owner": owner, "holder": holder,
                "lease_s": lease_s}
        if not self._all("take_over", args):
            return None
        return Lease(lease.name, owner, holder, lease.task, lease.scheduled_for, lease.trigger,
                     lease.attempt + 1)

    def lease(self, name: str) -> Lease | None:
        rows = self._all("get_lease", {"name": name})
        return _lease(rows[0]) if rows else None

    def lease_holder(self, name: str) -> str | None:
        holder = self._one("live_lease_holder", {"name": name})
        return str(holder) if holder is not None else None

    # -- hosts -------------------------------------------------------------------------

    def heartbeat(self, host: HostInfo) -> None:
        self._run(
            "heartbeat",
            {
                "host_id": host.host_id,
                "hostname": host.hostname,
                "version": host.version,
                "config_hash": host.config_hash,
                "started_at": host.started_at,
            },
        )

    def hosts(self) -> list[HostInfo]:
        rows = self._all("hosts", {"alive_s": ALIVE_S, "day_s": HOSTS_WINDOW_S})
        return [
            HostInfo(
                host_id=row["host_id"],
                hostname=row["hostname"],
                version=row["version"],
                config_hash=row["config_hash"],
                started_at=utc_iso(row["started_at"]),
                last_seen=utc_iso(row["last_seen"]),
                alive=bool(row["alive"]),
                runs_day=int(row["runs_day"]),
                failures_day=int(row["failures_day"]),
            )
            for row in rows
        ]


def _claim(row: dict[str, Any]) -> SlotClaim:
    if row["leased"]:
        return SlotClaim(Claim.WON)
    if row["claimed"]:
        return SlotClaim(Claim.BUSY, holder=row["holder"])
    if row["early_s"] > 0:
        return SlotClaim(Claim.EARLY, early_s=float(row["early_s"]))
    return SlotClaim(Claim.LOST)


def _lease_row(lease: Lease, lease_s: float) -> dict[str, Any]:
    return {
        "name": lease.name,
        "owner": lease.owner,
        "holder": lease.holder,
        "task": lease.task,
        "scheduled_for": lease.scheduled_for,
        "trigger": lease.trigger,
        "attempt": lease.attempt,
        "lease_s": lease_s,
    }


def _lease(row: dict[str, Any]) -> Lease:
    return Lease(
        name=row["name"],
        owner=row["owner"],
        holder=row["holder"],
        task=row["task"],
        scheduled_for=utc_iso(row["scheduled_for"]) if row["scheduled_for"] else None,
        trigger=row["trigger"],
        attempt=row["attempt"],
        lease_until=utc_iso(row["lease_until"]),
    )
