-- The PostgreSQL store's aggregate reads of a window of history (postgres_history.py),
-- each whole and named ("-- name: X").  A window is [since, until) by start; tasks is a
-- text[] (NULL: all) and host a host id (NULL: every host).  The window's rows are read
-- through runs_task_window (task, started_at, with the counted columns included).

-- name: window_task_names
-- Every task in the store, one index probe each (a loose index scan).
WITH RECURSIVE t(task) AS (
    SELECT MIN(task) FROM runs
    UNION ALL
    SELECT (SELECT MIN(r.task) FROM runs r WHERE r.task > t.task) FROM t WHERE t.task IS NOT NULL
)
SELECT task FROM t WHERE task IS NOT NULL;

-- name: window_counts
SELECT task, status, count(*) AS n FROM runs
WHERE task = ANY(%(tasks)s) AND started_at >= %(since)s AND started_at < %(until)s
  AND (%(host)s::text IS NULL OR host = %(host)s)
GROUP BY task, status
ORDER BY task, min(started_at);

-- name: window_percentiles
-- percentile_disc is the nearest rank: the value at rank ceil(p * n).
SELECT task,
       percentile_disc(0.5) WITHIN GROUP (ORDER BY duration_s) AS p50,
       percentile_disc(0.95) WITHIN GROUP (ORDER BY duration_s) AS p95
FROM runs
WHERE task = ANY(%(tasks)s) AND started_at >= %(since)s AND started_at < %(until)s
  AND (%(host)s::text IS NULL OR host = %(host)s)
  AND status NOT IN ('running', 'skipped', 'missed') AND duration_s IS NOT NULL
GROUP BY task;

-- name: window_edges
-- Each task's last finished run before the window (any host), newest finished run in
-- it, and newest run of any kind in it (its type): three index probes a task.  Each is
-- ordered by (task, started_at), the task index's order, so that the planner walks that
-- index rather than runs_started (which, for a task with no such run, reads it all).
SELECT t.task,
       b.status AS before_status, b.summary AS before_summary,
       b.started_at AS before_started_at, b.task_type AS before_type, b.host AS before_host,
       l.status AS last_status, l.summary AS last_summary, l.started_at AS last_started_at,
       n.task_type AS newest_type
FROM unnest(%(tasks)s::text[]) AS t(task)
LEFT JOIN LATERAL (
    SELECT status, summary, started_at, task_type, host FROM runs
    WHERE task = t.task AND started_at < %(since)s
      AND status NOT IN ('running', 'skipped', 'missed')
    ORDER BY task DESC, started_at DESC LIMIT 1
) b ON true
LEFT JOIN LATERAL (
    SELECT status, summary, started_at FROM runs
    WHERE task = t.task AND started_at >= %(since)s AND started_at < %(until)s
      AND (%(host)s::text IS NULL OR host = %(host)s)
      AND status NOT IN ('running', 'skipped', 'missed')
    ORDER BY task DESC, started_at DESC LIMIT 1
) l ON true
LEFT JOIN LATERAL (
    SELECT task_type FROM runs
    WHERE task = t.task AND started_at >= %(since)s AND started_at < %(until)s
      AND (%(host)s::text IS NULL OR host = %(host)s)
    ORDER BY task DESC, started_at DESC LIMIT 1
) n ON true;

-- name: window_failures
SELECT f.* FROM unnest(%(tasks)s::text[]) AS t(task)
CROSS JOIN LATERAL (
    SELECT run_id, task, task_type, status, trigger, started_at, finished_at, scheduled_for,
           parent_run_id, attempts, duration_s, summary, error, dry_run, hostname, pid, host,
           scope
    FROM runs
    WHERE task = t.task AND status IN ('critical', 'unknown')
      AND started_at >= %(since)s AND started_at < %(until)s
      AND (%(host)s::text IS NULL OR host = %(host)s)
    ORDER BY started_at DESC, run_id DESC LIMIT %(limit)s
) f;

-- name: window_changes
-- A check's state changes: each finished run whose status differs from the one before.
SELECT task, at, status FROM (
    SELECT task, coalesce(finished_at, started_at) AS at, status, started_at, run_id,
           lag(status) OVER (PARTITION BY task
                             ORDER BY coalesce(finished_at, started_at), started_at, run_id)
               AS previous
    FROM runs
    WHERE task = ANY(%(tasks)s) AND started_at >= %(since)s AND started_at < %(until)s
      AND (%(host)s::text IS NULL OR host = %(host)s)
      AND status NOT IN ('running', 'skipped', 'missed')
) c
WHERE previous IS NULL OR previous <> status
ORDER BY task, at, started_at, run_id;

-- name: window_points
-- Every finished run of a task with at most most of them; else the worst of each slice
-- (slices counted in whole milliseconds, as on SQLite).
SELECT task, started_at, status, duration_s, trigger FROM (
    SELECT task, started_at, status, duration_s, trigger, run_id,
           count(*) OVER (PARTITION BY task) AS n,
           row_number() OVER (
               PARTITION BY task,
                   round(extract(epoch FROM started_at - %(since)s::timestamptz) * 1000)::bigint
                   * %(most)s / %(span_ms)s
               ORDER BY CASE status WHEN 'critical' THEN 3 WHEN 'warning' THEN 2
                                    WHEN 'unknown' THEN 1 ELSE 0 END DESC,
                        duration_s DESC NULLS LAST, started_at) AS worst
    FROM runs
    WHERE task = ANY(%(tasks)s) AND started_at >= %(since)s AND started_at < %(until)s
      AND (%(host)s::text IS NULL OR host = %(host)s)
      AND status NOT IN ('running', 'skipped', 'missed')
) p
WHERE n <= %(most)s OR worst = 1
ORDER BY task, started_at, run_id;

-- name: window_freed
SELECT task, to_char(coalesce(finished_at, started_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day,
       sum(trunc(coalesce((metrics -> 'files_deleted' ->> 'value')::float8,
                          (data -> 'deleted' ->> 'files')::float8, 0)))::bigint AS files,
       sum(trunc(coalesce((metrics -> 'bytes_freed' ->> 'value')::float8,
                          (data -> 'deleted' ->> 'bytes')::float8, 0)))::bigint AS bytes
FROM runs
WHERE task = ANY(%(tasks)s) AND started_at >= %(since)s AND started_at < %(until)s
  AND (%(host)s::text IS NULL OR host = %(host)s)
  AND status NOT IN ('running', 'skipped', 'missed') AND NOT dry_run
  AND task_type LIKE 'cleanup.%%'
GROUP BY task, day
ORDER BY task, day;

-- name: window_followups
-- Remediation and verify runs (a partial index holds only them), and their parents: a
-- UNION, as one WHERE with OR would read the whole table.
WITH f AS (
    SELECT run_id, parent_run_id FROM runs
    WHERE trigger IN ('remediation', 'verify') AND parent_run_id IS NOT NULL
      AND started_at >= %(since)s AND started_at < %(until)s
      AND (%(host)s::text IS NULL OR host = %(host)s)
      AND (%(tasks)s::text[] IS NULL OR task = ANY(%(tasks)s))
)
SELECT run_id, task, task_type, status, trigger, started_at, finished_at, scheduled_for,
       parent_run_id, attempts, duration_s, summary, error, dry_run, hostname, pid, host, scope
FROM runs
WHERE run_id IN (SELECT run_id FROM f)
UNION
SELECT run_id, task, task_type, status, trigger, started_at, finished_at, scheduled_for,
       parent_run_id, attempts, duration_s, summary, error, dry_run, hostname, pid, host, scope
FROM runs
WHERE run_id IN (SELECT parent_run_id FROM f)
  AND started_at >= %(since)s AND started_at < %(until)s
  AND (%(host)s::text IS NULL OR host = %(host)s)
  AND (%(tasks)s::text[] IS NULL OR task = ANY(%(tasks)s))
ORDER BY started_at, run_id;
