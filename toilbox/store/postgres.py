"""The PostgreSQL store: the shared state of a fleet of daemons.

psycopg 3 with its connection pool, in autocommit: a transaction is opened only where
reads and writes must be one step (a slot and its lease, a budget and its fix), and
never across a run.  Every connection has a statement timeout, an idle-in-transaction
timeout and TCP keepalives, so a database that goes away costs seconds, not a hung
daemon.  After a failure the store answers "unavailable" at once for a few seconds
instead of making every caller wait for its own timeout.  The SQL is in postgres.sql.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import fields
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from toilbox import destinations
from toilbox.errors import AlreadyRunning, ConfigError, StateError
from toilbox.models import (
    Lease,
    RunRecord,
    StripCell,
    utc_iso,
)
from toilbox.store import sqlfile
from toilbox.store.base import HOSTS_WINDOW_S, Budget, ReadOnlyHistory, budget_verdict
from toilbox.store.postgres_fleet import PostgresFleet
from toilbox.store.postgres_history import PostgresHistory

if TYPE_CHECKING:
    import psycopg
    from psycopg_pool import ConnectionPool

SCHEMA_VERSION = 2
POOL_SIZE = 4  # connections per daemon at most: scheduler, workers, the fleet loop, the page
POOL_WAIT_S = 3.0  # how long a caller waits for a free connection
CONNECT_S = 5.0
FAIL_FAST_S = 3.0  # after a failure, answer "unavailable" at once for this long
_CONNECTION = {
    "autocommit": True,
    "connect_timeout": int(CONNECT_S),
    "application_name": "toilbox",
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 15000,
    # Never hold a transaction (or a lock) open for long, whatever a caller does.
    "options": "-c statement_timeout=5000 -c idle_in_transaction_session_timeout=10000"
    " -c lock_timeout=5000",
}
_RUN_COLUMNS = tuple(f.name for f in fields(RunRecord))
_TIME_COLUMNS = ("started_at", "finished_at", "scheduled_for")


Q = sqlfile.load("postgres.sql") | sqlfile.load("postgres_history.sql")


def redacted_url(url: str) -> str:
    """The URL as it may be shown: no password."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        parts = conninfo_to_dict(url)
    except Exception:
        return "postgresql://(unparsable URL)"
    user = f"{parts['user']}@" if parts.get("user") else ""
    port = f":{parts['port']}" if parts.get("port") else ""
    return f"postgresql://{user}{parts.get('host', '')}{port}/{parts.get('dbname', '')}"


class PostgresStore(PostgresFleet, PostgresHistory):
    """The PostgreSQL backend of the ``Store`` port."""

    kind = "postgresql"

    def __init__(self, pool: ConnectionPool[Any] | OneConnection, location: str) -> None:
        self._pool = pool
        self._remake: Callable[[], ConnectionPool[Any]] | None = None
        # A daemon's store stays "unavailable" after a failure until its upkeep loop's
        # next call finds the database again, so no scheduler or worker thread ever
        # waits for a connection that is not coming; a one-shot command retries after
        # FAIL_FAST_S.
        self._wait_for_probe = not isinstance(pool, OneConnection)
        self.location = location
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{os.urandom(4).hex()}"
        self._down_until = 0.0
        self.holding: set[str] = set()  # leases held through hold() by this process
        self._down_reason = ""
        self._state_lock = threading.Lock()

    @classmethod
    def open(cls, url: str, *, pooled: bool = False, name: str = "toilbox") -> PostgresStore:
        """``pooled``: a pool of up to POOL_SIZE connections for a daemon's threads (the
        pool runs threads of its own); otherwise one connection and no thread, so that a
        one-shot command may still fork its attempts safely."""
        try:
            import psycopg
            from psycopg.rows import dict_row
            from psycopg_pool import PoolTimeout
        except ImportError:
            raise ConfigError(
                "store.url needs the PostgreSQL driver: pip install 'toilbox[postgresql]'"
            ) from None
        location = redacted_url(url)
        # The application name says which daemon a connection is (pg_stat_activity).
        settings = {**_CONNECTION, "row_factory": dict_row, "application_name": name[:63]}
        given = _url_options(url)
        if given:  # the URL's own options (a search_path, say) are kept beside ours
            settings["options"] = f"{given} {settings['options']}"
        pool: ConnectionPool[Any] | OneConnection
        if pooled:
            try:
                pool = new_pool(url, settings)
            except PoolTimeout:
                raise StateError(f"state store {location}: cannot connect (is it up?)") from None
        else:
            pool = OneConnection(url, settings)
        store = cls(pool, location)
        store._remake = (lambda: new_pool(url, settings)) if pooled else None
        try:
            store._migrate()
        except psycopg.Error as exc:
            pool.close()
            raise StateError(f"state store {location}: {_first_line(exc)}") from None
        except BaseException:
            pool.close()
            raise
        return store

    def close(self) -> None:
        self._pool.close()

    def history_reader(self) -> ReadOnlyHistory:
        return self

    # -- plumbing ----------------------------------------------------------------------

    @contextmanager
    def _conn(self, probe: bool = False) -> Iterator[psycopg.Connection[Any]]:
        import psycopg
        from psycopg_pool import PoolTimeout

        if not probe and time.monotonic() < self._down_until:
            raise StateError(f"state store {self.location}: unavailable ({self._down_reason})")
        try:
            if probe and self._down_until and self._remake is not None:
                # After an outage the pool's connections are dead and its refills back
                # off: a fresh pool, made only if the database answers, replaces it.
                fresh, old = self._remake(), self._pool
                self._pool = fresh
                threading.Thread(target=old.close, kwargs={"timeout": 5}, daemon=True).start()
            with self._pool.connection() as conn:
                yield conn
            if probe:
                self._down_until = 0.0
        except (psycopg.OperationalError, PoolTimeout) as exc:
            with self._state_lock:
                self._down_reason = _first_line(exc)
                self._down_until = (
                    float("inf") if self._wait_for_probe else time.monotonic() + FAIL_FAST_S
                )
            raise StateError(f"state store {self.location}: {_first_line(exc)}") from None
        except psycopg.Error as exc:
            raise StateError(f"state store {self.location}: {_first_line(exc)}") from None

    def _all(
        self, name: str, args: dict[str, Any] | None = None, probe: bool = False
    ) -> list[dict[str, Any]]:
        with self._conn(probe=probe) as conn:
            return conn.execute(Q[name], args or {}).fetchall()

    def _one(self, name: str, args: dict[str, Any] | None = None) -> Any:
        rows = self._all(name, args)
        return next(iter(rows[0].values())) if rows else None

    def _run(self, name: str, args: dict[str, Any]) -> int:
        with self._conn() as conn:
            return conn.execute(Q[name], args).rowcount

    def _migrate(self) -> None:
        with self._pool.connection() as conn, conn.transaction():
            conn.execute(Q["migrate_lock"])  # one daemon migrates; the others wait, then see it
            conn.execute(Q["schema_version_table"])
            row = conn.execute(Q["schema_version"]).fetchone()
            version = int(next(iter(row.values()))) if row else 0
            if version > SCHEMA_VERSION:
                raise StateError(
                    f"state store {self.location} was written by a newer toilbox"
                    f" (schema {version})"
                )
            if version == SCHEMA_VERSION:
                return
            for step in range(version + 1, SCHEMA_VERSION + 1):
                conn.execute(Q[f"schema_{step}"])
            conn.execute(Q["clear_schema_version"])
            conn.execute(Q["set_schema_version"], {"version": SCHEMA_VERSION})

    # -- runs --------------------------------------------------------------------------

    def start_run(self, record: RunRecord) -> None:
        self._run("insert_run", _to_row(record))

    def finish_run(self, record: RunRecord) -> bool:
        return self._run("finish_run", _to_row(record)) == 1

    def record(self, record: RunRecord) -> None:
        self.start_run(record)

    def record_many(self, records: list[RunRecord]) -> None:
        with self._conn() as conn, conn.transaction(), conn.cursor() as cursor:
            cursor.executemany(Q["insert_run"], [_to_row(r) for r in records])

    def ship_runs(self, records: list[RunRecord]) -> None:
        """Host runs from a daemon's local outbox, in one transaction; idempotent."""
        with self._conn() as conn, conn.transaction(), conn.cursor() as cursor:
            cursor.executemany(Q["ship_run"], [_to_row(r) for r in records])

    def get(self, run_id: str) -> RunRecord | None:
        rows = self._all("get_run", {"run_id": run_id})
        return _from_row(rows[0]) if rows else None

    def history(
        self, task: str | None = None, limit: int = 20, host: str | None = None
    ) -> list[RunRecord]:
        rows = self._all("history_all" if task is None else "history",
                         {"task": task, "host": host, "limit": limit})
        return [_from_row(row) for row in rows]

    def last_runs(self, tasks: list[str], host: str | None = None) -> dict[str, RunRecord]:
        rows = self._all("last_runs", {"tasks": tasks, "host": host})
        return {row["task"]: _from_row(row) for row in rows}

    def last_success_times(self, tasks: list[str]) -> dict[str, str]:
        rows = self._all("last_successes", {"tasks": tasks})
        return {row["task"]: utc_iso(row["finished_at"]) for row in rows if row["finished_at"]}

    def children(self, run_id: str) -> list[RunRecord]:
        return [_from_row(row) for row in self._all("children", {"run_id": run_id})]

    def running(self, host: str) -> list[RunRecord]:
        return [_from_row(row) for row in self._all("running_on", {"host": host})]

    def slot_runs(self, task: str, scheduled_for: str) -> list[RunRecord]:
        rows = self._all("slot_runs", {"task": task, "scheduled_for": scheduled_for})
        return [_from_row(row) for row in rows]

    def running_fleet(self, task: str) -> list[RunRecord]:
        return [_from_row(row) for row in self._all("running_fleet", {"task": task})]

    def mark_abandoned(self, run_id: str, message: str) -> bool:
        from psycopg.types.json import Jsonb

        error = Jsonb({"type": "abandoned", "message": message})
        args = {"run_id": run_id, "message": message, "error": error}
        return self._run("mark_abandoned", args) == 1

    def runs_between(self, since: str, until: str) -> list[RunRecord]:
        rows = self._all("runs_between", {"since": since, "until": until})
        return [_from_row(row) for row in rows]

    def last_runs_before(self, since: str) -> dict[str, RunRecord]:
        rows = self._all("last_runs_before", {"since": since})
        return {row["task"]: _from_row(row) for row in rows}

    # -- automation --------------------------------------------------------------------

    def check_state(self, task: str, host: str = "") -> dict[str, Any] | None:
        state = self._one("check_state", {"task": task, "host": host})
        return dict(state) if state is not None else None

    def save_check_state(self, task: str, state: dict[str, Any], host: str = "") -> None:
        from psycopg.types.json import Jsonb

        self._run("save_check_state", {"task": task, "host": host, "state": Jsonb(state)})

    def check_states(self, task: str | None = None) -> list[tuple[str, str, dict[str, Any]]]:
        rows = self._all("check_states", {"task": task})
        return [(row["task"], row["host"], dict(row["state"])) for row in rows]

    def add_notification(
        self, dedupe_key: str, task: str, kind: str, run_id: str | None, title: str, body: str
    ) -> bool:
        args = {"dedupe_key": dedupe_key, "task": task, "kind": kind, "run_id": run_id,
                "title": title, "body": body}
        return bool(self._all("add_notification", args))

    def set_notification_sent_to(self, dedupe_key: str, sent_to: list[str]) -> None:
        from psycopg.types.json import Jsonb

        labels = Jsonb([destinations.label(url) for url in sent_to])
        self._run("set_sent_to", {"sent_to": labels, "dedupe_key": dedupe_key})

    def notifications_for(self, run_ids: list[str]) -> list[dict[str, Any]]:
        rows = self._all("notifications_for", {"run_ids": run_ids})
        return [{**row, "created_at": utc_iso(row["created_at"])} for row in rows]

    def take_send_slot(self, destination: str, limit: int, window_s: float) -> bool:
        args = {"destination": destinations.key(destination), "window_s": window_s}
        with self._conn() as conn, conn.transaction():
            conn.execute(Q["lock_sends"], args)
            sent = conn.execute(Q["count_sends"], args).fetchone()
            count = int(next(iter(sent.values()))) if sent else 0
            if count < limit:
                conn.execute(Q["add_send"], args)
        return count < limit

    def take_remediation(self, check: str, host: str, run_id: str, budget: Budget) -> str | None:
        """The budgets' counts and this fix's record in one transaction that holds the
        budget's row: fixes asked for at once on many hosts are counted in turn."""
        args = {"check": check, "host": host, "run_id": run_id, "per_s": budget.per_s,
                "day_s": HOSTS_WINDOW_S, "fleet_check": budget.fleet_check}
        with self._conn() as conn, conn.transaction():
            conn.execute(Q["lock_budget"])
            counts = conn.execute(Q["remediation_counts"], args).fetchone() or {}
            why_not = budget_verdict(
                budget,
                int(counts["check_fixes"]),
                int(counts["host_fixes_hour"]),
                int(counts["hosts_fixed_hour"]),
                bool(counts["this_host_counted"]),
                int(counts["hosts_seen_day"]),
            )
            if why_not is None:
                conn.execute(Q["add_remediation"], args)
        return why_not

    def count_remediations(self, window_s: float, check: str | None = None) -> int:
        return int(self._one("count_remediations", {"window_s": window_s, "check": check}))

    def remediated_hosts(self, window_s: float) -> int:
        return int(self._one("remediated_hosts", {"window_s": window_s}))

    def setting(self, key: str) -> str | None:
        value = self._one("get_setting", {"key": key})
        return str(value) if value is not None else None

    def set_setting(self, key: str, value: str | None) -> None:
        if value is None:
            self._run("delete_setting", {"key": key})
        else:
            self._run("set_setting", {"key": key, "value": value})

    # -- run locks ---------------------------------------------------------------------

    def hold(
        self, name: str, what: str, purpose: str, *, scope: str = "host", lease_s: float = 0
    ) -> AbstractContextManager[None]:
        """A lease row: a fleet task's is ``task:NAME`` (the one a claimed slot holds);
        anything else's is ``lock:NAME``.  Renewed by a daemon, or long enough."""
        lease_name = f"task:{name}" if scope == "fleet" else f"lock:{name}"
        return self._held(lease_name, what, purpose, name, lease_s or 86400.0)

    @contextmanager
    def _held(
        self, lease_name: str, what: str, purpose: str, task: str, lease_s: float
    ) -> Iterator[None]:
        holder = f"pid {os.getpid()} on {socket.gethostname()} ({purpose}) since {_now()}"
        lease = Lease(lease_name, self.owner, holder, task, None, "manual")
        if not self.acquire_lease(lease, lease_s):
            taken_by = self.lease_holder(lease_name) or "holder unknown"
            raise AlreadyRunning(f"{what} is already running ({taken_by})")
        self.holding.add(lease_name)
        try:
            yield
        finally:
            self.holding.discard(lease_name)
            self.release_lease(lease_name, self.owner)

    def holder(self, name: str) -> str | None:
        return self.lease_holder(f"task:{name}") or self.lease_holder(f"lock:{name}")

    # -- the status page ---------------------------------------------------------------

    def run_strips(
        self, tasks: list[str], limit: int, host: str | None = None
    ) -> dict[str, list[StripCell]]:
        out: dict[str, list[StripCell]] = {task: [] for task in tasks}
        for row in self._all("run_strips", {"tasks": tasks, "host": host, "limit": limit}):
            out[row["task"]].append(StripCell(
                row["run_id"], row["status"], utc_iso(row["started_at"]), row["duration_s"],
                row["summary"], row["trigger"], row["error_type"]))
        return out

    def last_with_status(
        self, tasks: list[str], statuses: list[str], host: str | None = None
    ) -> dict[str, dict[str, RunRecord]]:
        out: dict[str, dict[str, RunRecord]] = {}
        args = {"tasks": tasks, "statuses": statuses, "host": host}
        for row in self._all("last_with_status", args):
            out.setdefault(row["task"], {})[row["status"]] = _from_lite(row)
        return out

    def notable_since(self, since: str, host: str | None = None) -> dict[str, int]:
        row = self._all("notable_since", {"since": since, "host": host})[0]
        return {key: int(row[key]) for key in ("missed", "skipped", "abandoned")}

    # -- housekeeping ------------------------------------------------------------------

    def prune(self, before: str, slots_before: str, batch: int = 1000) -> int:
        args = {"before": before, "slots_before": slots_before, "batch": batch}
        with self._conn() as conn, conn.transaction():
            deleted = conn.execute(Q["prune_runs"], args).rowcount
            for name in ("prune_slots", "prune_notifications", "prune_sends",
                         "prune_remediations"):
                conn.execute(Q[name], args)
        return int(deleted)

    def compact(self) -> None:
        """PostgreSQL's autovacuum reclaims what pruning frees."""

    def size_bytes(self) -> int:
        return int(self._one("database_size"))

    def explain_plan(self, name: str, args: dict[str, Any]) -> list[str]:
        with self._conn() as conn:
            rows = conn.execute("EXPLAIN " + Q[name], args).fetchall()
        return [str(next(iter(row.values()))) for row in rows]


def new_pool(url: str, settings: dict[str, Any]) -> ConnectionPool[Any]:
    """A daemon's pool, open once one connection is made (PoolTimeout if none can be)."""
    from psycopg_pool import ConnectionPool

    pool: ConnectionPool[Any] = ConnectionPool(
        url,
        min_size=1,
        max_size=POOL_SIZE,
        kwargs=settings,
        timeout=POOL_WAIT_S,
        open=False,
        name="toilbox",
    )
    try:
        pool.open(wait=True, timeout=CONNECT_S)
    except BaseException:
        pool.close()
        raise
    return pool


class OneConnection:
    """One connection, made on first use and made again after it broke: the pool's
    interface without the pool's threads."""

    def __init__(self, url: str, settings: dict[str, Any]) -> None:
        self._url = url
        self._settings = settings
        self._conn: psycopg.Connection[Any] | None = None
        self._lock = threading.RLock()

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        import psycopg

        with self._lock:
            if self._conn is None or self._conn.closed:
                self._conn = psycopg.connect(self._url, **self._settings)
            try:
                yield self._conn
            except psycopg.OperationalError:
                self._conn.close()
                raise

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()

    def check(self) -> None:
        """The pool's: a broken connection is made again on next use anyway."""


def _url_options(url: str) -> str:
    from psycopg.conninfo import conninfo_to_dict

    try:
        return str(conninfo_to_dict(url).get("options") or "")
    except Exception:
        return ""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _to_row(record: RunRecord) -> dict[str, Any]:
    from psycopg.types.json import Jsonb

    row = {name: getattr(record, name) for name in _RUN_COLUMNS}
    for column in ("metrics", "data", "error"):
        row[column] = Jsonb(row[column]) if row[column] is not None else None
    return row


def _from_row(row: dict[str, Any]) -> RunRecord:
    values = {name: row[name] for name in _RUN_COLUMNS}
    for column in _TIME_COLUMNS:
        if values[column] is not None:
            values[column] = utc_iso(values[column])
    values["metrics"] = values["metrics"] or {}
    values["data"] = values["data"] or {}
    return RunRecord(**values)


def _from_lite(row: dict[str, Any]) -> RunRecord:
    """A run read without its heavy columns (metrics, data, details, output)."""
    values = dict(row)
    for column in _TIME_COLUMNS:
        if values[column] is not None:
            values[column] = utc_iso(values[column])
    return RunRecord(**values)
