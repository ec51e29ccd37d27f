"""The SQLite store: the default backend, a file in the state directory.

SQLite in WAL mode.  A run is written when it starts (so a crash leaves evidence) and
again when it ends.  Run locks are ``flock`` files beside it (``toilbox.locks``): they
vanish with the process that holds them.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from contextlib import AbstractContextManager
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from toilbox import locks
from toilbox.errors import StateError
from toilbox.models import RUNNING, RunRecord, now_iso

SCHEMA_VERSION = 4
_AUTOMATION = """
CREATE TABLE IF NOT EXISTS check_states (
    task  TEXT PRIMARY KEY,
    state TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS notifications (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    dedupe_key TEXT NOT NULL UNIQUE,
    task       TEXT NOT NULL,
    kind       TEXT NOT NULL,
    run_id     TEXT,
    title      TEXT NOT NULL,
    body       TEXT NOT NULL,
    sent_to    TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS notifications_run ON notifications (run_id);
CREATE TABLE IF NOT EXISTS notify_sends (
    destination TEXT NOT NULL,
    sent_at     TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS notify_sends_dest ON notify_sends (destination, sent_at);
CREATE TABLE IF NOT EXISTS remediations (
    check_task TEXT NOT NULL,
    run_id     TEXT NOT NULL,
    started_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS remediations_at ON remediations (started_at);
CREATE TABLE IF NOT EXISTS settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""
_SLOTS = """
CREATE TABLE IF NOT EXISTS slots (
    task          TEXT NOT NULL,
    scheduled_for TEXT NOT NULL,
    schedule      TEXT NOT NULL,
    claimed_by    TEXT NOT NULL,
    claimed_at    TEXT NOT NULL,
    PRIMARY KEY (task, scheduled_for)
);
"""
_SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS runs (
    run_id        TEXT PRIMARY KEY,
    task          TEXT NOT NULL,
    task_type     TEXT NOT NULL,
    status        TEXT NOT NULL,
    trigger       TEXT NOT NULL,
    started_at    TEXT NOT NULL,
    finished_at   TEXT,
    scheduled_for TEXT,
    parent_run_id TEXT,
    attempts      INTEGER NOT NULL DEFAULT 0,
    duration_s    REAL,
    summary       TEXT NOT NULL DEFAULT '',
    metrics       TEXT NOT NULL DEFAULT '{}',
    data          TEXT NOT NULL DEFAULT '{}',
    error         TEXT,
    details       TEXT NOT NULL DEFAULT '',
    output        TEXT NOT NULL DEFAULT '',
    dry_run       INTEGER NOT NULL DEFAULT 0,
    hostname      TEXT NOT NULL,
    pid           INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_task_started ON runs (task, started_at);
CREATE INDEX IF NOT EXISTS runs_started ON runs (started_at);
CREATE INDEX IF NOT EXISTS runs_running ON runs (status) WHERE status = 'running';
"""
    + _SLOTS
    + _AUTOMATION
)
# Steps from each older version to the next; a new database gets _SCHEMA directly.
_MIGRATIONS = {
    2: "ALTER TABLE runs ADD COLUMN details TEXT NOT NULL DEFAULT '';",
    3: _SLOTS,
    4: _AUTOMATION,
}
_JSON_COLUMNS = ("metrics", "data", "error")


class SqliteStore:
    """The SQLite backend of the ``Store`` port.  Open with ``SqliteStore.open(state_dir)``."""

    def __init__(self, db: sqlite3.Connection, path: Path) -> None:
        self._db = db
        self.path = path
        self.state_dir = path.parent
        self.location = str(path)
        # One connection serves the daemon's threads; sqlite3 asks callers to serialise.
        self._lock = threading.RLock()

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    @classmethod
    def open(cls, state_dir: Path) -> SqliteStore:
        path = state_dir / "toilbox.db"
        try:
            state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode survives a crash of toilbox; only power loss can lose the tail.
            db.execute("PRAGMA synchronous=NORMAL")
            _migrate(db, path)
        except OSError as exc:
            raise StateError(f"state dir {state_dir}: {exc.strerror or exc}") from None
        except sqlite3.Error as exc:
            raise StateError(f"state store {path}: {_explain(exc, state_dir)}") from None
        return cls(db, path)

    def close(self) -> None:
        self._db.close()

    def _write(self, sql: str, args: tuple[Any, ...] | dict[str, Any]) -> None:
        try:
            with self._lock:
                self._db.execute(sql, args)
        except sqlite3.Error as exc:
            reason = _explain(exc, self.path.parent)
            raise StateError(f"state store {self.path}: {reason}") from None

    def start_run(self, record: RunRecord) -> None:
        row = _to_row(record)
        columns = ", ".join(row)
        self._write(
            f"INSERT INTO runs ({columns}) VALUES ({', '.join(':' + c for c in row)})",  # noqa: S608 -- column names are ours
            row,
        )

    def finish_run(self, record: RunRecord) -> None:
        row = _to_row(record)
        assignments = ", ".join(f"{c} = :{c}" for c in row if c != "run_id")
        self._write(f"UPDATE runs SET {assignments} WHERE run_id = :run_id", row)  # noqa: S608

    def get(self, run_id: str) -> RunRecord | None:
        rows = self._query("SELECT * FROM runs WHERE run_id = ?", (run_id,))
        return _from_row(rows[0]) if rows else None

    def history(self, task: str | None = None, limit: int = 20) -> list[RunRecord]:
        if task is None:
            rows = self._query(
                "SELECT * FROM runs ORDER BY started_at DESC, rowid DESC LIMIT ?", (limit,)
            )
        else:
            rows = self._query(
                "SELECT * FROM runs WHERE task = ? ORDER BY started_at DESC, rowid DESC LIMIT ?",
                (task, limit),
            )
        return [_from_row(row) for row in rows]

    def last_runs(self) -> dict[str, RunRecord]:
        """The newest run of each task."""
        rows = self._query(
            "SELECT r.* FROM runs r JOIN (SELECT task, MAX(started_at) AS started_at"
            " FROM runs WHERE status NOT IN ('skipped', 'missed') GROUP BY task) last"
            " USING (task, started_at)"
        )
        return {row["task"]: _from_row(row) for row in rows}

    def claim_slot(self, task: str, scheduled_for: str, schedule: str, claimed_by: str) -> bool:
        """Claim a scheduled fire; False if it was claimed before (by anyone, ever)."""
        try:
            with self._lock:
                cursor = self._db.execute(
                    "INSERT OR IGNORE INTO slots (task, scheduled_for, schedule, claimed_by,"
                    " claimed_at) VALUES (?, ?, ?, ?, ?)",
                    (task, scheduled_for, schedule, claimed_by, now_iso()),
                )
        except sqlite3.Error as exc:
            raise StateError(f"state store {self.path}: {exc}") from None
        return cursor.rowcount == 1

    def last_slot(self, task: str) -> tuple[str, str] | None:
        """The newest claimed slot of a task and the schedule it was claimed under."""
        rows = self._query(
            "SELECT scheduled_for, schedule FROM slots WHERE task = ?"
            " ORDER BY scheduled_for DESC LIMIT 1",
            (task,),
        )
        return (rows[0][0], rows[0][1]) if rows else None

    def record(self, record: RunRecord) -> None:
        """Store a record that is already final (a skipped or missed slot)."""
        self.start_run(record)

    def hold(self, name: str, what: str, purpose: str) -> AbstractContextManager[None]:
        return locks.hold(self.state_dir, name, what, purpose)

    def holder(self, name: str) -> str | None:
        return locks.holder(self.state_dir, name)

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.path.parent.glob(self.path.name + "*"))

    # -- automation: check states, notifications, remediation budgets, switches --------

    def check_state(self, task: str) -> dict[str, Any] | None:
        rows = self._query("SELECT state FROM check_states WHERE task = ?", (task,))
        return json.loads(rows[0][0]) if rows else None

    def save_check_state(self, task: str, state: dict[str, Any]) -> None:
        self._write(
            "INSERT INTO check_states (task, state) VALUES (?, ?)"
            " ON CONFLICT (task) DO UPDATE SET state = excluded.state",
            (task, json.dumps(state)),
        )

    def add_notification(
        self, dedupe_key: str, task: str, kind: str, run_id: str | None, title: str, body: str
    ) -> bool:
        """Record a notification once; False if this one was recorded before."""
        try:
            with self._lock:
                cursor = self._db.execute(
                    "INSERT OR IGNORE INTO notifications (dedupe_key, task, kind, run_id, title,"
                    " body, sent_to, created_at) VALUES (?, ?, ?, ?, ?, ?, '[]', ?)",
                    (dedupe_key, task, kind, run_id, title, body, now_iso()),
                )
        except sqlite3.Error as exc:
            raise StateError(f"state store {self.path}: {exc}") from None
        return cursor.rowcount == 1

    def set_notification_sent_to(self, dedupe_key: str, destinations: list[str]) -> None:
        self._write(
            "UPDATE notifications SET sent_to = ? WHERE dedupe_key = ?",
            (json.dumps(destinations), dedupe_key),
        )

    def notifications_for(self, run_ids: list[str]) -> list[dict[str, Any]]:
        marks = ",".join("?" * len(run_ids))
        rows = self._query(
            "SELECT kind, run_id, title, body, sent_to, created_at FROM notifications"  # noqa: S608
            f" WHERE run_id IN ({marks}) ORDER BY id",
            tuple(run_ids),
        )
        return [{**dict(row), "sent_to": json.loads(row["sent_to"])} for row in rows]

    def take_send_slot(self, destination: str, limit: int, window_s: float) -> bool:
        """Count one send to ``destination`` unless ``limit`` were sent within the window."""
        since = (datetime.now(UTC) - timedelta(seconds=window_s)).isoformat()
        try:
            with self._lock:
                # IMMEDIATE: the count and the insert are one step for every process.
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    sent = self._db.execute(
                        "SELECT COUNT(*) FROM notify_sends WHERE destination = ? AND sent_at >= ?",
                        (destination, since),
                    ).fetchone()[0]
                    if sent < limit:
                        self._db.execute(
                            "INSERT INTO notify_sends VALUES (?, ?)", (destination, now_iso())
                        )
                finally:
                    self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StateError(f"state store {self.path}: {exc}") from None
        return bool(sent < limit)

    def count_remediations(self, window_s: float, check: str | None = None) -> int:
        since = (datetime.now(UTC) - timedelta(seconds=window_s)).isoformat()
        if check is None:
            rows = self._query("SELECT COUNT(*) FROM remediations WHERE started_at >= ?", (since,))
        else:
            rows = self._query(
                "SELECT COUNT(*) FROM remediations WHERE check_task = ? AND started_at >= ?",
                (check, since),
            )
        return int(rows[0][0])

    def add_remediation(self, check: str, run_id: str) -> None:
        self._write("INSERT INTO remediations VALUES (?, ?, ?)", (check, run_id, now_iso()))

    def children(self, run_id: str) -> list[RunRecord]:
        rows = self._query(
            "SELECT * FROM runs WHERE parent_run_id = ? ORDER BY started_at, rowid", (run_id,)
        )
        return [_from_row(row) for row in rows]

    def setting(self, key: str) -> str | None:
        rows = self._query("SELECT value FROM settings WHERE key = ?", (key,))
        return str(rows[0][0]) if rows else None

    def set_setting(self, key: str, value: str | None) -> None:
        if value is None:
            self._write("DELETE FROM settings WHERE key = ?", (key,))
        else:
            self._write(
                "INSERT INTO settings (key, value) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    def running(self, hostname: str) -> list[RunRecord]:
        rows = self._query(
            "SELECT * FROM runs WHERE status = ? AND hostname = ?", (RUNNING, hostname)
        )
        return [_from_row(row) for row in rows]

    def mark_abandoned(self, run_id: str, message: str) -> None:
        error = json.dumps({"type": "abandoned", "message": message})
        self._write(
            "UPDATE runs SET status = 'unknown', finished_at = ?, error = ?,"
            " summary = ? WHERE run_id = ? AND status = ?",
            (now_iso(), error, message, run_id, RUNNING),
        )

    def runs_between(self, since: str, until: str) -> list[RunRecord]:
        """Runs started in [since, until), oldest first (reports read a window of history)."""
        rows = self._query(
            "SELECT * FROM runs WHERE started_at >= ? AND started_at < ?"
            " ORDER BY started_at, rowid",
            (since, until),
        )
        return [_from_row(row) for row in rows]

    def last_runs_before(self, since: str) -> dict[str, RunRecord]:
        """The newest finished run of each task started before ``since``: states at a
        window's start."""
        rows = self._query(
            "SELECT r.* FROM runs r JOIN (SELECT task, MAX(started_at) AS started_at FROM runs"
            " WHERE started_at < ? AND status NOT IN ('skipped', 'missed', 'running')"
            " GROUP BY task) last USING (task, started_at)",
            (since,),
        )
        return {row["task"]: _from_row(row) for row in rows}


def _migrate(db: sqlite3.Connection, path: Path) -> None:
    if db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION:
        return
    # Two processes may open an old store at once: one migrates, the other then sees it done.
    db.execute("BEGIN IMMEDIATE")
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version == SCHEMA_VERSION:
        db.execute("COMMIT")
        return
    if version > SCHEMA_VERSION:
        db.execute("ROLLBACK")
        raise StateError(f"state store {path} was written by a newer toilbox (schema {version})")
    script = (
        _SCHEMA
        if version == 0
        else "".join(_MIGRATIONS[v] for v in range(version + 1, SCHEMA_VERSION + 1))
    )
    # One statement at a time: executescript() would commit the transaction first.
    for statement in f"{script}; PRAGMA user_version={SCHEMA_VERSION}".split(";"):
        if statement.strip():
            db.execute(statement)
    db.execute("COMMIT")


def _to_row(record: RunRecord) -> dict[str, Any]:
    # Not dataclasses.asdict: it deep-copies metrics and data, only to serialise them.
    row = {f.name: getattr(record, f.name) for f in fields(record)}
    for column in _JSON_COLUMNS:
        row[column] = json.dumps(row[column]) if row[column] is not None else None
    row["dry_run"] = int(record.dry_run)
    return row


def _from_row(row: sqlite3.Row) -> RunRecord:
    values = dict(row)
    for column in _JSON_COLUMNS:
        values[column] = json.loads(values[column]) if values[column] is not None else None
    values["dry_run"] = bool(values["dry_run"])
    return RunRecord(**values)


def _explain(exc: sqlite3.Error, state_dir: Path) -> str:
    """SQLite says "unable to open database file"; the OS knows why (read-only, full, ...)."""
    probe = state_dir / f".toilbox-write-test-{os.getpid()}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, b"x" * 4096)
            os.fsync(fd)
        finally:
            os.close(fd)
            probe.unlink()
    except OSError as os_error:
        return f"{exc} ({os_error.strerror or os_error})"
    return str(exc)
