"""The SQLite store's aggregate reads of a window of history (``ReadOnlyHistory``'s
``window_*``): counted, ranked and thinned in SQLite, so a report over a week of a big
store reads the rows it shows, not every run.

Each statement reads the window through an index, task by task: ``runs_task_window``
(task, started_at and the columns counts, ranks, state changes and chart points need)
without touching the table; ``runs_freed`` (cleanup runs, with what each freed); and
index probes for the few rows a report prints.  No scan of the whole table:
tests/test_store_plans.py holds each statement to its index.  What remains grows with
the runs *in the window* (each is visited once per figure drawn from it), not with the
store.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from toilbox.models import RunRecord
from toilbox.store.sqlite_sql import FREED_BYTES, FREED_DAY, FREED_FILES, FREED_RUNS
from toilbox.store.window import MAX_POINTS, Freed, LastRun, Point, TaskWindow, slicing

# The window's tasks, a JSON array (json_each), and the optional host.
_IN_WINDOW = """task IN (SELECT value FROM json_each(:tasks))
  AND started_at >= :since AND started_at < :until
  AND (:host IS NULL OR host = :host)"""
_FINISHED = "status NOT IN ('running', 'skipped', 'missed')"
_LITE = """run_id, task, task_type, status, trigger, started_at, finished_at, scheduled_for,
    parent_run_id, attempts, duration_s, summary, error, dry_run, hostname, pid, host, scope"""

# Every task in the store, one index probe each (a loose index scan): SQLite would read
# the whole index for SELECT DISTINCT.
TASKS = """
WITH RECURSIVE t(task) AS (
    SELECT MIN(task) FROM runs
    UNION ALL
    SELECT (SELECT MIN(task) FROM runs WHERE task > t.task) FROM t WHERE t.task IS NOT NULL
)
SELECT task FROM t WHERE task IS NOT NULL
"""

# A task's last finished run before the window, on any host.
BEFORE = f"""
SELECT status, summary, started_at, task_type, host FROM runs INDEXED BY runs_task_window
WHERE task = :task AND started_at < :since AND {_FINISHED}
ORDER BY started_at DESC
LIMIT 1
"""  # noqa: S608 -- our own constants

# Runs per task and status, each status in the order it was first seen.
COUNTS = f"""
SELECT task, status, COUNT(*) AS n FROM runs
WHERE {_IN_WINDOW}
GROUP BY task, status
ORDER BY task, MIN(started_at)
"""  # noqa: S608 -- our own constants

# Nearest-rank p50 and p95 of the finished runs' durations: rank ceil(p * n / 100).
PERCENTILES = f"""
SELECT task, rank, n, duration_s FROM (
    SELECT task, duration_s,
           ROW_NUMBER() OVER (PARTITION BY task ORDER BY duration_s) AS rank,
           COUNT(*) OVER (PARTITION BY task) AS n
    FROM runs
    WHERE {_IN_WINDOW} AND {_FINISHED} AND duration_s IS NOT NULL
)
WHERE rank IN ((n * 50 + 99) / 100, (n * 95 + 99) / 100)
"""  # noqa: S608 -- our own constants

# A task's newest finished run in the window, and its newest run of any kind (its type).
LAST = f"""
SELECT status, summary, started_at FROM runs INDEXED BY runs_task_window
WHERE task = :task AND started_at >= :since AND started_at < :until
  AND (:host IS NULL OR host = :host) AND {_FINISHED}
ORDER BY started_at DESC
LIMIT 1
"""  # noqa: S608 -- our own constants

NEWEST_TYPE = """
SELECT task_type FROM runs INDEXED BY runs_task_started
WHERE task = :task AND started_at >= :since AND started_at < :until
  AND (:host IS NULL OR host = :host)
ORDER BY started_at DESC, rowid DESC
LIMIT 1
"""

FAILURES = f"""
SELECT {_LITE} FROM runs INDEXED BY runs_task_status_started
WHERE task = :task AND status IN ('critical', 'unknown')
  AND started_at >= :since AND started_at < :until AND (:host IS NULL OR host = :host)
ORDER BY started_at DESC, rowid DESC
LIMIT :limit
"""  # noqa: S608 -- our own constants

# A check's state changes: each finished run whose status differs from the one before it.
CHANGES = f"""
SELECT task, at, status FROM (
    SELECT task, COALESCE(finished_at, started_at) AS at, status, started_at, rowid AS seq,
           LAG(status) OVER (PARTITION BY task
                             ORDER BY COALESCE(finished_at, started_at), started_at, rowid)
               AS previous
    FROM runs
    WHERE {_IN_WINDOW} AND {_FINISHED}
)
WHERE previous IS NULL OR previous <> status
ORDER BY task, at, started_at, seq
"""  # noqa: S608 -- our own constants

# Every finished run of a task with at most :most of them; else the worst of each slice.
# Slices are counted in whole milliseconds: a run at a slice's start is in that slice.
# One GROUP BY, not a window function (three times the CPU on a week of a big store): of
# each group, SQLite gives the bare columns of the row that holds the MAX().
POINTS = f"""
WITH sizes AS (
    SELECT task, COUNT(*) AS n FROM runs WHERE {_IN_WINDOW} AND {_FINISHED} GROUP BY task
)
SELECT r.task, r.started_at, r.status, r.duration_s, r.trigger,
       MAX((CASE r.status WHEN 'critical' THEN 3 WHEN 'warning' THEN 2
                          WHEN 'unknown' THEN 1 ELSE 0 END) * 1e12
           + COALESCE(r.duration_s, -1) * 1e3) AS worst
FROM runs r JOIN sizes ON sizes.task = r.task
WHERE r.task IN (SELECT value FROM json_each(:tasks))
  AND r.started_at >= :since AND r.started_at < :until
  AND (:host IS NULL OR r.host = :host)
  AND r.status NOT IN ('running', 'skipped', 'missed')
GROUP BY r.task, CASE WHEN sizes.n <= :most THEN r.rowid ELSE
    CAST(ROUND((julianday(r.started_at) - julianday(:since)) * 86400000) AS INTEGER)
        * :most / :span_ms END
ORDER BY r.task, r.started_at, r.rowid
"""  # noqa: S608 -- our own constants

FREED = f"""
SELECT task, {FREED_DAY} AS day, SUM({FREED_FILES}) AS files, SUM({FREED_BYTES}) AS bytes
FROM runs INDEXED BY runs_freed
WHERE {_IN_WINDOW} AND {FREED_RUNS}
GROUP BY task, day
ORDER BY task, day
"""  # noqa: S608 -- our own constants

# Remediation and verify runs (a partial index holds only them), and their parents.
FOLLOWUPS = f"""
WITH f AS (
    SELECT rowid AS seq, parent_run_id FROM runs INDEXED BY runs_followups
    WHERE trigger IN ('remediation', 'verify') AND parent_run_id IS NOT NULL
      AND started_at >= :since AND started_at < :until
      AND (:host IS NULL OR host = :host)
      AND (:tasks IS NULL OR task IN (SELECT value FROM json_each(:tasks)))
)
SELECT {_LITE}, rowid AS seq FROM runs WHERE rowid IN (SELECT seq FROM f)
UNION
SELECT {_LITE}, rowid AS seq FROM runs
WHERE run_id IN (SELECT parent_run_id FROM f)
  AND started_at >= :since AND started_at < :until
  AND (:host IS NULL OR host = :host)
  AND (:tasks IS NULL OR task IN (SELECT value FROM json_each(:tasks)))
ORDER BY started_at, seq
"""  # noqa: S608 -- our own constants


class SqliteHistory:
    """The ``window_*`` reads, mixed into ``SqliteStore`` (which gives ``_query``)."""

    def _query(self, statement: str, args: Any = ()) -> list[sqlite3.Row]:
        raise NotImplementedError

    def _args(
        self, since: str, until: str, tasks: list[str] | None, host: str | None
    ) -> dict[str, Any]:
        return {"since": since, "until": until, "host": host,
                "tasks": None if tasks is None else json.dumps(tasks)}

    def window_tasks(
        self, since: str, until: str, tasks: list[str] | None = None, host: str | None = None
    ) -> list[TaskWindow]:
        names = [row[0] for row in self._query(TASKS)]
        if tasks is not None:
            names = [name for name in names if name in set(tasks)]
        args = self._args(since, until, names, host)
        counts: dict[str, dict[str, int]] = {}
        for row in self._query(COUNTS, args):
            counts.setdefault(row["task"], {})[row["status"]] = row["n"]
        ranks: dict[str, dict[int, float]] = {}
        sizes: dict[str, int] = {}
        for row in self._query(PERCENTILES, args):
            ranks.setdefault(row["task"], {})[row["rank"]] = row["duration_s"]
            sizes[row["task"]] = row["n"]
        out = []
        for name in names:
            one = {**args, "task": name}
            before = self._query(BEFORE, one)
            if before and host is not None and before[0]["host"] != host:
                before = []
            statuses = counts.get(name, {})
            if not statuses and not before:
                continue
            finished = sum(n for status, n in statuses.items()
                           if status not in ("running", "skipped", "missed"))
            last = self._query(LAST, one) if finished else []
            newest = self._query(NEWEST_TYPE, one) if statuses else []
            task_type = newest[0][0] if newest else before[0]["task_type"]
            n = sizes.get(name, 0)
            durations = ranks.get(name, {})
            out.append(TaskWindow(
                task=name,
                task_type=task_type,
                statuses=statuses,
                runs=finished,
                duration_p50=durations.get((n * 50 + 99) // 100) if n else None,
                duration_p95=durations.get((n * 95 + 99) // 100) if n else None,
                last=LastRun(*(last or before)[0][:3]) if last or before else None,
                before=before[0]["status"] if before else None,
            ))
        return out

    def window_failures(
        self, since: str, until: str, tasks: list[str], limit: int, host: str | None = None
    ) -> dict[str, list[RunRecord]]:
        args = self._args(since, until, None, host) | {"limit": limit}
        out = {}
        for task in tasks:
            rows = self._query(FAILURES, {**args, "task": task})
            if rows:
                out[task] = [lite_run(row) for row in rows]
        return out

    def window_changes(
        self, since: str, until: str, tasks: list[str], host: str | None = None
    ) -> dict[str, list[tuple[str, str]]]:
        out: dict[str, list[tuple[str, str]]] = {}
        for row in self._query(CHANGES, self._args(since, until, tasks, host)):
            out.setdefault(row["task"], []).append((row["at"], row["status"]))
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
        for row in self._query(POINTS, args):
            out.setdefault(row[0], []).append(Point(*tuple(row)[1:5]))
        return out

    def window_freed(
        self, since: str, until: str, tasks: list[str], host: str | None = None
    ) -> dict[str, list[Freed]]:
        out: dict[str, list[Freed]] = {}
        for row in self._query(FREED, self._args(since, until, tasks, host)):
            out.setdefault(row["task"], []).append(Freed(row["day"], row["files"], row["bytes"]))
        return out

    def window_followups(
        self, since: str, until: str, tasks: list[str] | None = None, host: str | None = None
    ) -> list[RunRecord]:
        rows = self._query(FOLLOWUPS, self._args(since, until, tasks, host))
        return [lite_run(row, skip=("seq",)) for row in rows]


def lite_run(row: sqlite3.Row, skip: tuple[str, ...] = ()) -> RunRecord:
    """A run read without its heavy columns (metrics, data, details, output)."""
    values = {name: row[name] for name in row.keys() if name not in skip}  # noqa: SIM118
    values["error"] = json.loads(values["error"]) if values["error"] is not None else None
    values["dry_run"] = bool(values["dry_run"])
    return RunRecord(**values)
