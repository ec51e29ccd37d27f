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
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from toilbox import destinations, locks
from toilbox.errors import AlreadyRunning, StateError
from toilbox.models import (
    RUNNING,
    Lease,
    RunRecord,
    StripCell,
    now_iso,
)
from toilbox.store import sqlite_sql as sql
from toilbox.store.base import (
    HOSTS_WINDOW_S,
    Budget,
    ReadOnlyHistory,
    budget_verdict,
)
from toilbox.store.sqlite_file import (
    create_private,
    explain,
    migrate,
    own_state_dir,
    refuse_truncated,
)
from toilbox.store.sqlite_fleet import SqliteFleet
from toilbox.store.sqlite_history import SqliteHistory

SCHEMA_VERSION = sql.SCHEMA_VERSION
_JSON_COLUMNS = ("metrics", "data", "error")
_RUN_COLUMNS = tuple(f.name for f in fields(RunRecord))


class SqliteStore(SqliteFleet, SqliteHistory):
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
            state_dir = own_state_dir(state_dir)
            path = state_dir / "toilbox.db"
            refuse_truncated(path)
            created = create_private(path)
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
            migrate(db, path)
        except (OSError, sqlite3.Error) as exc:
            if created:  # a store we could not set up (a full disk) is not left empty
                with contextlib.suppress(OSError):
                    path.unlink()
            if isinstance(exc, OSError):
                raise StateError(f"state dir {state_dir}: {exc.strerror or exc}") from None
            raise StateError(f"state store {path}: {explain(exc, state_dir)}") from None
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
        return StateError(f"state store {self.path}: {explain(exc, self.state_dir)}")

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
