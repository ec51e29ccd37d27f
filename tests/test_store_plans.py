"""The history reads keep their indexes: EXPLAIN (QUERY PLAN) of each statement, on a
store with a month of runs, names the index it must use and never a scan of the runs.

A later change to a statement or to the schema that loses an index fails here, long
before a big store makes it slow (issue 14: history reads do not slow with its size).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from toilbox.models import RunRecord, utc_iso
from toilbox.store import sqlite_history as history
from toilbox.store import sqlite_sql as sql
from toilbox.store.sqlite import SqliteStore

END = datetime(2026, 11, 30, tzinfo=UTC)
TASKS = [f"t{n}" for n in range(20)]


def month(tasks: int = 20, per_task: int = 300) -> list[RunRecord]:
    step = timedelta(days=30) / per_task
    out = []
    for n in range(per_task):
        for t in range(tasks):
            at = utc_iso(END - timedelta(days=30) + step * n + timedelta(seconds=t))
            status = ["ok", "ok", "ok", "critical", "skipped"][(n + t) % 5]
            trigger = "remediation" if n % 50 == 0 else "schedule"
            out.append(RunRecord(
                run_id=f"r{n}-{t}", task=f"t{t}", task_type="check.x", status=status,
                trigger=trigger, started_at=at, hostname="vm", pid=1, finished_at=at,
                duration_s=0.1 * (n % 7), parent_run_id=f"r{n - 1}-{t}" if n % 50 == 0 else None,
                host="h1",
            ))
    return out


@pytest.fixture(scope="module")
def sqlite_store(tmp_path_factory):
    store = SqliteStore.open(tmp_path_factory.mktemp("plans") / "state")
    store.record_many(month())
    yield store
    store.close()


def args(**more: object) -> dict[str, object]:
    return {"since": utc_iso(END - timedelta(days=1)), "until": utc_iso(END), "host": None,
            "tasks": json.dumps(TASKS), "task": "t3", "limit": 10, "most": 120,
            "span_ms": 86_400_000, **more}


WINDOW = "SEARCH runs USING COVERING INDEX runs_task_window (task=? AND started_at>? AND started_at<?)"
EXPECTED = {
    "COUNTS": WINDOW,
    "PERCENTILES": WINDOW,
    "CHANGES": WINDOW,
    "POINTS": WINDOW,
    "BEFORE": "SEARCH runs USING INDEX runs_task_window (task=? AND started_at<?)",
    "LAST": "SEARCH runs USING INDEX runs_task_window (task=? AND started_at>? AND started_at<?)",
    "NEWEST_TYPE": "SEARCH runs USING INDEX runs_task_started (task=? AND started_at>? AND started_at<?)",
    "FREED": "SEARCH runs USING INDEX runs_freed (task=? AND started_at>? AND started_at<?)",
    "FAILURES": "SEARCH runs USING INDEX runs_task_status_started (task=? AND status=? AND started_at>? AND started_at<?)",
    "FOLLOWUPS": "SEARCH runs USING INDEX runs_followups (started_at>? AND started_at<?)",
    "TASKS": "SEARCH runs USING COVERING INDEX runs_task_started (task>?)",
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_window_read_uses_its_index_and_scans_no_runs(sqlite_store, name):
    plan = sqlite_store.explain_plan(getattr(history, name), args())
    assert EXPECTED[name] in plan, plan
    assert not [line for line in plan if re.match(r"SCAN (runs|r)\b", line)], plan


@pytest.mark.parametrize(("name", "expected"), [
    ("HISTORY_OF", "SEARCH runs USING INDEX runs_task_started (task=?)"),
    ("LAST_RUN", "SEARCH runs USING INDEX runs_task_started (task=?)"),
    ("RUNNING_ON", "SEARCH runs USING INDEX runs_running (status=?)"),
])
def test_list_history_and_explain_probe_an_index(sqlite_store, name, expected):
    plan = sqlite_store.explain_plan(getattr(sql, name), {"task": "t3", "host": "h1", "limit": 20}
                                     if ":" in getattr(sql, name) else ("h1",))
    assert plan == [expected], "and nothing sorted: the index gives the order"


def test_all_history_walks_the_time_index_newest_first(sqlite_store):
    plan = sqlite_store.explain_plan(sql.HISTORY_ALL, {"host": None, "limit": 20})
    assert plan == ["SCAN runs USING INDEX runs_started"], "a walk that stops at the limit"


# -- PostgreSQL --------------------------------------------------------------------------


@pytest.fixture
def pg_store(pg_url):
    import psycopg

    from toilbox.store.postgres import PostgresStore

    store = PostgresStore.open(pg_url)
    store.record_many(month(per_task=600))
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE runs")  # statistics, as autovacuum would keep them
    yield store
    store.close()


# PostgreSQL chooses by its statistics (with tasks that run evenly, walking runs_started
# back finds a task's newest runs as soon as its own index does), so the test holds it to
# an index, any of ours, and never a scan of the table.
PG_EXPECTED = {
    "window_counts": "runs_",
    "window_percentiles": "runs_",
    "window_changes": "runs_",
    "window_points": "runs_",
    "window_edges": "runs_",
    "window_failures": "runs_",
    "window_freed": "runs_",
    "window_followups": "runs_followups",
    "window_task_names": "runs_",
    "history": "runs_",
    "last_runs": "runs_",
    "last_successes": "runs_",
}


def test_postgres_reads_use_their_indexes(pg_store):
    pg_args = {**args(), "tasks": TASKS, "task": "t3", "span_ms": 86_400_000}
    for name, index in PG_EXPECTED.items():
        plan = "\n".join(pg_store.explain_plan(name, pg_args))
        assert index in plan, f"{name}:\n{plan}"
        assert "Seq Scan on runs" not in plan, f"{name}:\n{plan}"


def test_postgres_schema_1_is_migrated_to_the_window_indexes(pg_url):
    import psycopg

    from toilbox.store.postgres import SCHEMA_VERSION, PostgresStore, Q

    with psycopg.connect(pg_url, autocommit=True) as conn:  # a store as schema 1 made it
        conn.execute(Q["schema_version_table"])
        conn.execute(Q["schema_1"])
        conn.execute(Q["set_schema_version"], {"version": 1})
    PostgresStore.open(pg_url).close()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        version = conn.execute(Q["schema_version"]).fetchone()[0]
        indexes = {row[0] for row in conn.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'runs'"
            " AND schemaname = current_schema()").fetchall()}
    assert version == SCHEMA_VERSION == 2
    assert {"runs_task_window", "runs_followups", "runs_freed"} <= indexes


def test_the_sqlite_schema_is_6(tmp_path: Path):
    assert sql.SCHEMA_VERSION == 6
    SqliteStore.open(tmp_path / "s").close()
