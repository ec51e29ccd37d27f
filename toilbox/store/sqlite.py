"""The SQLite store: the default backend, one file in the state directory.

SQLite in WAL mode.  A run is written when it starts (so a crash leaves evidence) and
again when it ends.  Run locks are ``flock`` files beside it (``toilbox.locks``): they
vanish with the process that holds them, so a killed toilbox never leaves one behind.
Every timestamp is a UTC instant in one ISO format (``models.utc_iso``), so strings
sort as instants.  The SQL is in ``sqlite_sql``.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import stat
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from toilbox import destinations, locks
from toilbox.errors import AlreadyRunning, StateError
from toilbox.models import (
    RUNNING,
    Claim,
    HostInfo,
    Lease,
    RunRecord,
    SlotClaim,
    SlotWanted,
    StripCell,
    now_iso,
)
from toilbox.store import sqlite_sql as sql
from toilbox.store.base import (
    ALIVE_S,
    HOSTS_WINDOW_S,
    Budget,
    ReadOnlyHistory,
    budget_verdict,
)
from toilbox.store.sqlite_history import SqliteHistory

SCHEMA_VERSION = sql.SCHEMA_VERSION
_JSON_COLUMNS = ("metrics", "data", "error")
_RUN_COLUMNS = tuple(f.name for f in fields(RunRecord))


class SqliteStore(SqliteHistory):
    """The SQLite backend of the ``Store`` port.  Open with ``SqliteStore.open(state_dir)``."""

    kind = "sqlite"

    def __init__(self, db: sqlite3.Connection, path: Path, outbox: bool = False) -> None:
        self._db = db
        self.path = path
        self.state_dir = path.parent
        self.location = str(path)
        self.outbox = outbox  # fleet mode: host runs wait here to be shipped
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{os.urandom(4).hex()}"
        self.holding: set[str] = set()  # leases held through hold() by this process
        # One connection serves the daemon's threads; sqlite3 asks callers to serialise.
        self._lock = threading.RLock()

    # -- opening -----------------------------------------------------------------------

    @classmethod
    def open(cls, state_dir: Path, *, outbox: bool = False) -> SqliteStore:
        path = state_dir / "toilbox.db"
        created = False
        try:
            state_dir = _own_state_dir(state_dir)
            path = state_dir / "toilbox.db"
            _refuse_truncated(path)
            created = _create_private(path)
            db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
            db.row_factory = sqlite3.Row
            if created:
                # Chosen before the first page is written (it cannot change after): pruned
                # history then gives its pages back to the filesystem.
                db.execute("PRAGMA auto_vacuum = INCREMENTAL")
            db.execute("PRAGMA journal_mode=WAL")
            # A WAL grown by a burst of writes is cut back after its next checkpoint.
            db.execute("PRAGMA journal_size_limit = 16777216")
            # NORMAL in WAL mode survives a crash of toilbox; only power loss can lose the tail.
            db.execute("PRAGMA synchronous=NORMAL")
            _migrate(db, path)
        except (OSError, sqlite3.Error) as exc:
            if created:  # a store we could not set up (a full disk) is not left empty
                with contextlib.suppress(OSError):
                    path.unlink()
            if isinstance(exc, OSError):
                raise StateError(f"state dir {state_dir}: {exc.strerror or exc}") from None
            raise StateError(f"state store {path}: {_explain(exc, state_dir)}") from None
        store = cls(db, path, outbox)
        if outbox:
            with store._transaction() as transaction:
                transaction.execute(sql.SEED_OUTBOX)
                transaction.execute(sql.MARK_OUTBOX_SEEDED, (now_iso(),))
        return store

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def history_reader(self) -> ReadOnlyHistory:
        return self

    # -- plumbing ----------------------------------------------------------------------

    def _fail(self, exc: sqlite3.Error) -> StateError:
        return StateError(f"state store {self.path}: {_explain(exc, self.state_dir)}")

    def _query(self, statement: str, args: Any = ()) -> list[sqlite3.Row]:
        try:
            with self._lock:
                return self._db.execute(statement, args).fetchall()
        except sqlite3.Error as exc:
            raise self._fail(exc) from None

    def _write(self, statement: str, args: Any = ()) -> int:
        try:
            with self._lock:
                return self._db.execute(statement, args).rowcount
        except sqlite3.Error as exc:
            raise self._fail(exc) from None

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE: what is read inside is still true when the writes commit."""
        try:
            with self._lock:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise self._fail(exc) from None

    # -- runs --------------------------------------------------------------------------

    def start_run(self, record: RunRecord) -> None:
        with self._transaction() as db:
            db.execute(sql.INSERT_RUN, _to_row(record))
            self._queue(db, record.run_id)

    def finish_run(self, record: RunRecord) -> bool:
        with self._transaction() as db:
            updated = db.execute(sql.FINISH_RUN, _to_row(record)).rowcount
            if updated:
                self._queue(db, record.run_id)
        return bool(updated)

    def record(self, record: RunRecord) -> None:
        self.start_run(record)

    def record_many(self, records: list[RunRecord]) -> None:
        with self._transaction() as db:
            db.executemany(sql.INSERT_RUN, [_to_row(r) for r in records])
            if self.outbox:
                db.executemany(sql.OUTBOX_ADD, [(r.run_id,) for r in records])

    def _queue(self, db: sqlite3.Connection, run_id: str) -> None:
        if self.outbox:
            db.execute(sql.OUTBOX_ADD, (run_id,))

    def get(self, run_id: str) -> RunRecord | None:
        rows = self._query(sql.GET_RUN, (run_id,))
        return _from_row(rows[0]) if rows else None

    def history(
        self, task: str | None = None, limit: int = 20, host: str | None = None
    ) -> list[RunRecord]:
        statement = sql.HISTORY_ALL if task is None else sql.HISTORY_OF
        rows = self._query(statement, {"task": task, "host": host, "limit": limit})
        return [_from_row(row) for row in rows]

    def last_runs(self, tasks: list[str], host: str | None = None) -> dict[str, RunRecord]:
        """The newest run of each task that ran (not skipped or missed); one index
        probe per task, so its cost does not grow with the history."""
        out = {}
        for task in tasks:
            rows = self._query(sql.LAST_RUN, {"task": task, "host": host})
            if rows:
                out[task] = _from_row(rows[0])
        return out

    def last_success_times(self, tasks: list[str]) -> dict[str, str]:
        out = {}
        for task in tasks:
            rows = self._query(sql.LAST_SUCCESS, (task,))
            if rows and rows[0][0]:
                out[task] = rows[0][0]
        return out

    def children(self, run_id: str) -> list[RunRecord]:
        return [_from_row(row) for row in self._query(sql.CHILDREN, (run_id,))]

    def running(self, host: str) -> list[RunRecord]:
        return [_from_row(row) for row in self._query(sql.RUNNING_ON, (host,))]

    def slot_runs(self, task: str, scheduled_for: str) -> list[RunRecord]:
        since = (datetime.fromisoformat(scheduled_for) - timedelta(days=1)).isoformat()
        rows = self._query(sql.SLOT_RUNS, (task, since, scheduled_for))
        return [_from_row(row) for row in rows]

    def running_fleet(self, task: str) -> list[RunRecord]:
        return [_from_row(row) for row in self._query(sql.RUNNING_FLEET, (task,))]

    def mark_abandoned(self, run_id: str, message: str) -> bool:
        error = json.dumps({"type": "abandoned", "message": message})
        with self._transaction() as db:
            updated = db.execute(
                sql.MARK_ABANDONED, (now_iso(), error, message, run_id, RUNNING)
            ).rowcount
            if updated:
                self._queue(db, run_id)
        return bool(updated)

    def runs_between(self, since: str, until: str) -> list[RunRecord]:
        return [_from_row(row) for row in self._query(sql.RUNS_BETWEEN, (since, until))]

    def last_runs_before(self, since: str) -> dict[str, RunRecord]:
        rows = self._query(sql.LAST_RUNS_BEFORE, (since,))
        return {row["task"]: _from_row(row) for row in rows}

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
        """A task's lease taken after it lapsed, before a sweep took it over: whatever
        fleet run of the task is still shown running has nobody left to end it."""
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

    # -- automation: check states, notifications, remediation budgets, switches --------

    def check_state(self, task: str, host: str = "") -> dict[str, Any] | None:
        rows = self._query(sql.CHECK_STATE, (task, host))
        return json.loads(rows[0][0]) if rows else None

    def save_check_state(self, task: str, state: dict[str, Any], host: str = "") -> None:
        self._write(sql.SAVE_CHECK_STATE, (task, host, json.dumps(state)))

    def check_states(self, task: str | None = None) -> list[tuple[str, str, dict[str, Any]]]:
        rows = self._query(sql.CHECK_STATES, {"task": task})
        return [(row[0], row[1], json.loads(row[2])) for row in rows]

    def add_notification(
        self, dedupe_key: str, task: str, kind: str, run_id: str | None, title: str, body: str
    ) -> bool:
        return self._write(
            sql.ADD_NOTIFICATION, (dedupe_key, task, kind, run_id, title, body, now_iso())
        ) == 1

    def set_notification_sent_to(self, dedupe_key: str, sent_to: list[str]) -> None:
        """``sent_to`` is stored as labels only: an apprise URL carries its token."""
        labels = [destinations.label(url) for url in sent_to]
        self._write(sql.SET_SENT_TO, (json.dumps(labels), dedupe_key))

    def notifications_for(self, run_ids: list[str]) -> list[dict[str, Any]]:
        if not run_ids:
            return []
        marks = ",".join("?" * len(run_ids))
        rows = self._query(sql.NOTIFICATIONS_FOR.format(marks=marks), tuple(run_ids))
        return [{**dict(row), "sent_to": json.loads(row["sent_to"])} for row in rows]

    def take_send_slot(self, destination: str, limit: int, window_s: float) -> bool:
        """Count one send to ``destination`` unless ``limit`` were sent within the window."""
        since = (datetime.now(UTC) - timedelta(seconds=window_s)).isoformat()
        dest = destinations.key(destination)
        with self._transaction() as db:
            sent = db.execute(sql.COUNT_SENDS, (dest, since)).fetchone()[0]
            if sent < limit:
                db.execute(sql.ADD_SEND, (dest, now_iso()))
        return bool(sent < limit)

    def take_remediation(self, check: str, host: str, run_id: str, budget: Budget) -> str | None:
        """Count one fix of ``check`` on ``host`` unless a budget forbids it; None when
        taken, else why not.  The counts and the insert are one transaction."""
        now = datetime.now(UTC)
        with self._transaction() as db:
            counts = db.execute(
                sql.REMEDIATION_COUNTS,
                {
                    "check": check,
                    "host": host,
                    "fleet_check": budget.fleet_check,
                    "per": (now - timedelta(seconds=budget.per_s)).isoformat(),
                    "hour": (now - timedelta(hours=1)).isoformat(),
                    "day": (now - timedelta(seconds=HOSTS_WINDOW_S)).isoformat(),
                },
            ).fetchone()
            why_not = budget_verdict(budget, *counts)
            if why_not is None:
                db.execute(sql.ADD_REMEDIATION, (check, host, run_id, now_iso()))
        return why_not

    def count_remediations(self, window_s: float, check: str | None = None) -> int:
        since = (datetime.now(UTC) - timedelta(seconds=window_s)).isoformat()
        rows = self._query(sql.COUNT_REMEDIATIONS, {"check": check, "since": since})
        return int(rows[0][0])

    def remediated_hosts(self, window_s: float) -> int:
        since = (datetime.now(UTC) - timedelta(seconds=window_s)).isoformat()
        return int(self._query(sql.REMEDIATED_HOSTS, (since,))[0][0])

    def setting(self, key: str) -> str | None:
        rows = self._query(sql.GET_SETTING, (key,))
        return str(rows[0][0]) if rows else None

    def set_setting(self, key: str, value: str | None) -> None:
        if value is None:
            self._write(sql.DELETE_SETTING, (key,))
        else:
            self._write(sql.SET_SETTING, (key, value))

    # -- run locks ---------------------------------------------------------------------

    def hold(
        self, name: str, what: str, purpose: str, *, scope: str = "host", lease_s: float = 0
    ) -> AbstractContextManager[None]:
        """A ``flock`` in the state dir; a fleet task's lock is its lease row, as on
        PostgreSQL (the one a claimed fleet slot holds)."""
        if scope != "fleet":
            return locks.hold(self.state_dir, name, what, purpose)
        return _leased(self, name, what, purpose, lease_s)

    def holder(self, name: str) -> str | None:
        return locks.holder(self.state_dir, name) or self.lease_holder(f"task:{name}")

    # -- the outbox (fleet mode: host runs shipped to the shared store) ------------------

    def unshipped(self, limit: int = 500) -> list[RunRecord]:
        return [_from_row(row) for row in self._query(sql.OUTBOX_RUNS, (limit,))]

    def shipped(self, runs: list[RunRecord]) -> None:
        """Forget what was shipped, unless it changed again since it was read."""
        with self._transaction() as db:
            for run in runs:
                db.execute(sql.OUTBOX_DONE, (run.run_id, run.run_id, run.status, run.finished_at))

    # -- the status page ---------------------------------------------------------------

    def run_strips(
        self, tasks: list[str], limit: int, host: str | None = None
    ) -> dict[str, list[StripCell]]:
        make = StripCell._make
        return {
            task: [make(row) for row in self._query(
                sql.RUN_STRIP, {"task": task, "host": host, "limit": limit})]
            for task in tasks
        }

    def last_with_status(
        self, tasks: list[str], statuses: list[str], host: str | None = None
    ) -> dict[str, dict[str, RunRecord]]:
        statement = " UNION ALL ".join(
            sql.LAST_WITH_STATUS_BRANCH.format(n=n) for n in range(len(statuses))
        )
        out: dict[str, dict[str, RunRecord]] = {}
        for task in tasks:
            args = {"task": task, "host": host, **{f"status{n}": s for n, s in enumerate(statuses)}}
            for row in self._query(statement, args):
                out.setdefault(task, {})[row["status"]] = _from_lite(row)
        return out

    def notable_since(self, since: str, host: str | None = None) -> dict[str, int]:
        row = self._query(sql.NOTABLE_SINCE, {"since": since, "host": host})[0]
        return {"missed": int(row[0]), "skipped": int(row[1]), "abandoned": int(row[2])}

    # -- housekeeping ------------------------------------------------------------------

    def prune(self, before: str, slots_before: str, batch: int = 1000) -> int:
        """Delete up to ``batch`` runs started before ``before`` (and old slots, sends and
        remediations); returns how many runs went.  Small batches keep each write lock
        short, so the scheduler never waits long for the file."""
        with self._transaction() as db:
            deleted = db.execute(sql.PRUNE_RUNS, (before, batch)).rowcount
            db.execute(sql.PRUNE_SLOTS, (slots_before, batch))
            db.execute(sql.PRUNE_NOTIFICATIONS, (before, batch))
            db.execute(sql.PRUNE_SENDS, (before, batch))
            db.execute(sql.PRUNE_REMEDIATIONS, (before, batch))
        return int(deleted)

    def compact(self) -> None:
        """Give freed pages back to the filesystem, a batch's worth at a time (stores made
        by toilbox 0.2 on; an older file keeps its free pages and reuses them)."""
        # executescript steps the pragma to its end; execute() would free a single page.
        try:
            with self._lock:
                self._db.executescript("PRAGMA incremental_vacuum(4000);")
        except sqlite3.Error as exc:
            raise self._fail(exc) from None

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.path.parent.glob(self.path.name + "*"))

    def explain_plan(self, statement: str, args: Any = ()) -> list[str]:
        """``EXPLAIN QUERY PLAN`` of one of our statements (tests keep the indexes used)."""
        return [row[3] for row in self._query("EXPLAIN QUERY PLAN " + statement, args)]


@contextmanager
def _leased(
    store: SqliteStore, name: str, what: str, purpose: str, lease_s: float
) -> Iterator[None]:
    holder = f"pid {os.getpid()} on {socket.gethostname()} ({purpose}) since {now_iso()}"
    lease = Lease(f"task:{name}", store.owner, holder, name, None, "manual")
    if not store.acquire_lease(lease, lease_s or 86400.0):
        taken_by = store.lease_holder(lease.name) or "holder unknown"
        raise AlreadyRunning(f"{what} is already running ({taken_by})")
    store.holding.add(lease.name)
    try:
        yield
    finally:
        store.holding.discard(lease.name)
        store.release_lease(lease.name, store.owner)


def _own_state_dir(state_dir: Path) -> Path:
    """The state dir, made 0700 if missing; refused if anyone but us (or root) could
    change it or a directory on its way: a local user who could swap it would choose
    what a root daemon reads and writes.  Returns the resolved path, to use from now on."""
    from toilbox import trust
    from toilbox.errors import UntrustedPath

    trusted = frozenset({0, os.geteuid()})
    try:
        real = trust.require(state_dir, "the state directory", trusted)
        missing = [d for d in [real, *real.parents] if not d.exists()]
        for directory in reversed(missing):  # made 0700 one by one: none wider than ours
            directory.mkdir(mode=0o700, exist_ok=True)
        info = real.lstat()
        if info.st_uid != os.geteuid():
            raise StateError(
                f"refusing the state directory {state_dir}: it is owned by uid {info.st_uid},"
                f" not by this user (uid {os.geteuid()})"
            )
        return trust.require(real, "the state directory", trusted)
    except UntrustedPath as exc:
        raise StateError(str(exc)) from None


def _create_private(path: Path) -> bool:
    """Create the database file 0600 (SQLite would follow the umask), never through a
    symlink; an existing one is tightened to 0600.  SQLite gives its WAL the same mode.
    True if it was created here."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        if stat.S_IMODE(path.lstat().st_mode) & 0o077:
            path.chmod(0o600)
        return False
    os.close(fd)
    return True


def _refuse_truncated(path: Path) -> None:
    """An existing store cut to zero bytes is damage, not a new store: creating one on
    top would silently drop every slot claim and the whole history."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return
    if stat.S_ISLNK(info.st_mode):
        raise StateError(f"state store {path} is a symlink; refusing to follow it")
    if not stat.S_ISREG(info.st_mode):
        raise StateError(f"state store {path} is not a regular file")
    if info.st_size == 0:
        raise StateError(
            f"state store {path} is empty (0 bytes): it was truncated or damaged; restore it"
            " from a backup, or move it away to start a new history"
        )


def _migrate(db: sqlite3.Connection, path: Path) -> None:
    if db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION:
        return
    # Two processes may open an old store at once: one migrates, the other then sees it done.
    db.execute("BEGIN IMMEDIATE")
    try:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StateError(
                f"state store {path} was written by a newer toilbox (schema {version})"
            )
        if version == 0:
            for statement in _statements(sql.SCHEMA):
                db.execute(statement)
        else:
            for step in range(version + 1, SCHEMA_VERSION + 1):
                _MIGRATIONS[step](db)
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _statements(script: str) -> list[str]:
    # One statement at a time: executescript() would commit the transaction first.
    return [s for s in script.split(";") if s.strip()]


def _run_script(script: str) -> Callable[[sqlite3.Connection], None]:
    def step(db: sqlite3.Connection) -> None:
        for statement in _statements(script):
            db.execute(statement)

    return step


def _to_v5(db: sqlite3.Connection) -> None:
    """Hosts and scopes; UTC slots; destinations stored without their secrets."""
    here = {"here": socket.gethostname()}
    for statement in _statements(sql.MIGRATE_5):
        db.execute(statement, here if ":here" in statement else ())
    for row_id, sent_to in db.execute(sql.NOTIFICATIONS_SENT_TO).fetchall():
        labels = [destinations.label(url) for url in json.loads(sent_to or "[]")]
        db.execute(sql.SET_NOTIFICATION_SENT_TO, (json.dumps(labels), row_id))
    for row_id, destination in db.execute(sql.SENDS).fetchall():
        db.execute(sql.SET_SEND_DESTINATION, (destinations.key(destination), row_id))


# Steps from each older version to the next; a new database gets the schema directly.
_MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {
    2: _run_script(sql.MIGRATE_2),
    3: _run_script(sql.MIGRATE_3),
    4: _run_script(sql.MIGRATE_4),
    5: _to_v5,
    6: _run_script(sql.MIGRATE_6),
}


def _to_row(record: RunRecord) -> dict[str, Any]:
    # Not dataclasses.asdict: it deep-copies metrics and data, only to serialise them.
    row = {name: getattr(record, name) for name in _RUN_COLUMNS}
    for column in _JSON_COLUMNS:
        row[column] = json.dumps(row[column]) if row[column] is not None else None
    row["dry_run"] = int(record.dry_run)
    return row


def _from_row(row: sqlite3.Row) -> RunRecord:
    values = {name: row[name] for name in _RUN_COLUMNS}
    for column in _JSON_COLUMNS:
        values[column] = json.loads(values[column]) if values[column] is not None else None
    values["dry_run"] = bool(values["dry_run"])
    return RunRecord(**values)


def _from_lite(row: sqlite3.Row) -> RunRecord:
    """A run read without its heavy columns (metrics, data, details, output)."""
    values = {name: row[name] for name in row.keys()}  # noqa: SIM118 -- a Row, not a dict
    values["error"] = json.loads(values["error"]) if values["error"] is not None else None
    values["dry_run"] = bool(values["dry_run"])
    return RunRecord(**values)


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


def _explain(exc: sqlite3.Error, state_dir: Path) -> str:
    """SQLite says "unable to open database file"; the OS knows why (read-only, full, ...)."""
    probe = state_dir / f".toilbox-write-test-{os.getpid()}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, b"x" * 4096)
            os.fsync(fd)
        finally:
            os.close(fd)
            probe.unlink()
    except OSError as os_error:
        return f"{exc} ({os_error.strerror or os_error})"
    return str(exc)
