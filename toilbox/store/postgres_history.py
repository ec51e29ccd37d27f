"""The PostgreSQL store's aggregate reads of a window of history (``ReadOnlyHistory``'s
``window_*``), counted, ranked and thinned in the database; the SQL is in
postgres_history.sql.  Mixed into ``PostgresStore``, which gives ``_conn``."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from toilbox.models import RunRecord, utc_iso
from toilbox.store import sqlfile
from toilbox.store.window import (
    MAX_POINTS,
    NOT_RUNS,
    Freed,
    LastRun,
    Point,
    TaskWindow,
    slicing,
)

if TYPE_CHECKING:
    import psycopg

Q = sqlfile.load("postgres_history.sql")


class PostgresHistory:
    """The ``window_*`` reads, mixed into ``PostgresStore``."""

    def _conn(self, probe: bool = False) -> AbstractContextManager[psycopg.Connection[Any]]:
        raise NotImplementedError

    def _rows(self, name: str, args: dict[str, Any]) -> list[dict[str, Any]]:
        with self._conn() as conn:
            return conn.execute(Q[name], args).fetchall()

    @staticmethod
    def _args(
        since: str, until: str, tasks: list[str] | None, host: str | None
    ) -> dict[str, Any]:
        return {"since": since, "until": until, "tasks": tasks, "host": host}

    def window_tasks(
        self, since: str, until: str, tasks: list[str] | None = None, host: str | None = None
    ) -> list[TaskWindow]:
        with self._conn() as conn:
            names = [row["task"] for row in conn.execute(Q["window_task_names"]).fetchall()]
            if tasks is not None:
                names = [name for name in names if name in set(tasks)]
            args = self._args(since, until, names, host)
            counts: dict[str, dict[str, int]] = {}
            for row in conn.execute(Q["window_counts"], args).fetchall():
                counts.setdefault(row["task"], {})[row["status"]] = int(row["n"])
            ranks = {row["task"]: row for row in
                     conn.execute(Q["window_percentiles"], args).fetchall()}
            edges = {row["task"]: row for row in conn.execute(Q["window_edges"], args).fetchall()}
        out = []
        for name in names:
            edge = edges[name]
            before = edge["before_status"] is not None and (
                host is None or edge["before_host"] == host)
            statuses = counts.get(name, {})
            if not statuses and not before:
                continue
            if edge["last_status"] is not None:
                last = LastRun(edge["last_status"], edge["last_summary"],
                               utc_iso(edge["last_started_at"]))
            elif before:
                last = LastRun(edge["before_status"], edge["before_summary"],
                               utc_iso(edge["before_started_at"]))
            else:
                last = None
            rank = ranks.get(name)
            out.append(TaskWindow(
                task=name,
                task_type=edge["newest_type"] or edge["before_type"],
                statuses=statuses,
                runs=sum(n for status, n in statuses.items() if status not in NOT_RUNS),
                duration_p50=rank["p50"] if rank else None,
                duration_p95=rank["p95"] if rank else None,
                last=last,
                before=edge["before_status"] if before else None,
            ))
        return out

    def window_failures(
        self, since: str, until: str, tasks: list[str], limit: int, host: str | None = None
    ) -> dict[str, list[RunRecord]]:
        out: dict[str, list[RunRecord]] = {}
        args = self._args(since, until, tasks, host) | {"limit": limit}
        for row in self._rows("window_failures", args):
            out.setdefault(row["task"], []).append(_lite(row))
        return out

    def window_changes(
        self, since: str, until: str, tasks: list[str], host: str | None = None
    ) -> dict[str, list[tuple[str, str]]]:
        out: dict[str, list[tuple[str, str]]] = {}
        for row in self._rows("window_changes", self._args(since, until, tasks, host)):
            out.setdefault(row["task"], []).append((utc_iso(row["at"]), row["status"]))
        return out

    def window_points(
        self,
        since: str,
        until: str,
        tasks: list[str],
        host: str | None = None,
        most: int = MAX_POINTS,
    ) -> dict[str, list[Point]]:
        args = self._args(since, until, tasks, host) | slicing(since, until, most)
        out: dict[str, list[Point]] = {}
        for row in self._rows("window_points", args):
            out.setdefault(row["task"], []).append(Point(
                utc_iso(row["started_at"]), row["status"], row["duration_s"], row["trigger"]))
        return out

    def window_freed(
        self, since: str, until: str, tasks: list[str], host: str | None = None
    ) -> dict[str, list[Freed]]:
        out: dict[str, list[Freed]] = {}
        for row in self._rows("window_freed", self._args(since, until, tasks, host)):
            out.setdefault(row["task"], []).append(
                Freed(row["day"], int(row["files"]), int(row["bytes"])))
        return out

    def window_followups(
        self, since: str, until: str, tasks: list[str] | None = None, host: str | None = None
    ) -> list[RunRecord]:
        rows = self._rows("window_followups", self._args(since, until, tasks, host))
        return [_lite(row) for row in rows]


def _lite(row: dict[str, Any]) -> RunRecord:
    """A run read without its heavy columns (metrics, data, details, output)."""
    values = dict(row)
    for column in ("started_at", "finished_at", "scheduled_for"):
        if values[column] is not None:
            values[column] = utc_iso(values[column])
    return RunRecord(**values)



