-- Every SQL statement of the PostgreSQL store, each whole and named ("-- name: X").
-- Loaded once by toilbox/store/postgres.py.  Time comes from the database (now()), so
-- hosts whose clocks disagree still agree on claim windows and leases.

-- name: schema_version_table
CREATE TABLE IF NOT EXISTS toilbox_schema (version integer NOT NULL);

-- name: migrate_lock
SELECT pg_advisory_xact_lock(hashtext('toilbox schema migration'));

-- name: schema_version
SELECT version FROM toilbox_schema;

-- name: clear_schema_version
DELETE FROM toilbox_schema;

-- name: set_schema_version
INSERT INTO toilbox_schema (version) VALUES (%(version)s);

-- name: schema_1
CREATE TABLE runs (
    run_id        text PRIMARY KEY,
    task          text NOT NULL,
    task_type     text NOT NULL,
    status        text NOT NULL,
    trigger       text NOT NULL,
    started_at    timestamptz NOT NULL,
    finished_at   timestamptz,
    scheduled_for timestamptz,
    parent_run_id text,
    attempts      integer NOT NULL DEFAULT 0,
    duration_s    double precision,
    summary       text NOT NULL DEFAULT '',
    metrics       jsonb NOT NULL DEFAULT '{}',
    data          jsonb NOT NULL DEFAULT '{}',
    error         jsonb,
    details       text NOT NULL DEFAULT '',
    output        text NOT NULL DEFAULT '',
    dry_run       boolean NOT NULL DEFAULT false,
    hostname      text NOT NULL,
    pid           integer NOT NULL,
    host          text NOT NULL,
    scope         text NOT NULL DEFAULT 'host'
);
CREATE INDEX runs_task_started ON runs (task, started_at);
CREATE INDEX runs_started ON runs (started_at);
CREATE INDEX runs_running ON runs (status) WHERE status = 'running';
CREATE INDEX runs_parent ON runs (parent_run_id) WHERE parent_run_id IS NOT NULL;
CREATE INDEX runs_host_started ON runs (host, started_at);
CREATE INDEX runs_task_status_started ON runs (task, status, started_at);
CREATE INDEX runs_notable ON runs (started_at) WHERE status IN ('missed', 'skipped', 'unknown');
CREATE TABLE slots (
    task          text NOT NULL,
    host          text NOT NULL,
    scheduled_for timestamptz NOT NULL,
    schedule      text NOT NULL,
    claimed_by    text NOT NULL,
    claimed_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (task, host, scheduled_for)
);
CREATE INDEX slots_claimed ON slots (claimed_at);
CREATE TABLE leases (
    name          text PRIMARY KEY,
    owner         text NOT NULL,
    holder        text NOT NULL,
    task          text,
    scheduled_for timestamptz,
    trigger       text,
    attempt       integer NOT NULL DEFAULT 1,
    acquired_at   timestamptz NOT NULL DEFAULT now(),
    lease_until   timestamptz NOT NULL
);
CREATE TABLE hosts (
    host_id     text PRIMARY KEY,
    hostname    text NOT NULL,
    version     text NOT NULL,
    config_hash text NOT NULL,
    started_at  timestamptz NOT NULL,
    last_seen   timestamptz NOT NULL
);
CREATE TABLE check_states (
    task  text NOT NULL,
    host  text NOT NULL,
    state jsonb NOT NULL,
    PRIMARY KEY (task, host)
);
CREATE TABLE notifications (
    id         bigserial PRIMARY KEY,
    dedupe_key text NOT NULL UNIQUE,
    task       text NOT NULL,
    kind       text NOT NULL,
    run_id     text,
    title      text NOT NULL,
    body       text NOT NULL,
    sent_to    jsonb NOT NULL DEFAULT '[]',
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX notifications_run ON notifications (run_id);
CREATE INDEX notifications_created ON notifications (created_at);
CREATE TABLE notify_sends (
    destination text NOT NULL,
    sent_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX notify_sends_dest ON notify_sends (destination, sent_at);
CREATE TABLE remediations (
    check_task text NOT NULL,
    host       text NOT NULL,
    run_id     text NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX remediations_at ON remediations (started_at);
CREATE INDEX remediations_host ON remediations (host, started_at);
CREATE TABLE settings (
    key   text PRIMARY KEY,
    value text NOT NULL
);
-- One row per budget: a fix locks it, so fixes asked for at once are counted in turn.
CREATE TABLE budgets (name text PRIMARY KEY);
INSERT INTO budgets (name) VALUES ('remediation');

-- name: schema_2
-- What the aggregate reads of a window need (postgres_history.sql): a task's runs in a
-- window with the columns they count or rank, so they are read from the index alone
-- (once vacuum has marked the pages all-visible); and the few remediation and verify runs.
CREATE INDEX IF NOT EXISTS runs_task_window ON runs (task, started_at)
    INCLUDE (status, duration_s, finished_at, host, trigger);
CREATE INDEX IF NOT EXISTS runs_followups ON runs (started_at)
    WHERE trigger IN ('remediation', 'verify') AND parent_run_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS runs_freed ON runs (task, started_at)
    WHERE task_type LIKE 'cleanup.%' AND NOT dry_run;

-- name: insert_run
INSERT INTO runs (run_id, task, task_type, status, trigger, started_at, finished_at,
                  scheduled_for, parent_run_id, attempts, duration_s, summary, metrics, data,
                  error, details, output, dry_run, hostname, pid, host, scope)
VALUES (%(run_id)s, %(task)s, %(task_type)s, %(status)s, %(trigger)s, %(started_at)s,
        %(finished_at)s, %(scheduled_for)s, %(parent_run_id)s, %(attempts)s, %(duration_s)s,
        %(summary)s, %(metrics)s, %(data)s, %(error)s, %(details)s, %(output)s, %(dry_run)s,
        %(hostname)s, %(pid)s, %(host)s, %(scope)s);

-- name: finish_run
-- Only a run still running can be finished: a run marked abandoned because its owner
-- lost the lease keeps that verdict, and the fenced owner's late write changes nothing.
UPDATE runs SET status = %(status)s, finished_at = %(finished_at)s, attempts = %(attempts)s,
                duration_s = %(duration_s)s, summary = %(summary)s, metrics = %(metrics)s,
                data = %(data)s, error = %(error)s, details = %(details)s, output = %(output)s
WHERE run_id = %(run_id)s AND status = 'running';

-- name: ship_run
-- A host's run, shipped from its local outbox: once per run id, the newest state wins,
-- and a verdict of its own replaces an "abandoned" the fleet gave it meanwhile.
INSERT INTO runs (run_id, task, task_type, status, trigger, started_at, finished_at,
                  scheduled_for, parent_run_id, attempts, duration_s, summary, metrics, data,
                  error, details, output, dry_run, hostname, pid, host, scope)
VALUES (%(run_id)s, %(task)s, %(task_type)s, %(status)s, %(trigger)s, %(started_at)s,
        %(finished_at)s, %(scheduled_for)s, %(parent_run_id)s, %(attempts)s, %(duration_s)s,
        %(summary)s, %(metrics)s, %(data)s, %(error)s, %(details)s, %(output)s, %(dry_run)s,
        %(hostname)s, %(pid)s, %(host)s, %(scope)s)
ON CONFLICT (run_id) DO UPDATE SET
    status = excluded.status, finished_at = excluded.finished_at,
    attempts = excluded.attempts, duration_s = excluded.duration_s,
    summary = excluded.summary, metrics = excluded.metrics, data = excluded.data,
    error = excluded.error, details = excluded.details, output = excluded.output
WHERE runs.status = 'running' OR runs.error ->> 'type' = 'abandoned';

-- name: get_run
SELECT * FROM runs WHERE run_id = %(run_id)s;

-- name: history
-- A task's history from its own index (with "task IS NULL OR" in one statement the
-- planner walks runs_started, reading every newer run of the other tasks); all tasks'
-- from runs_started.
SELECT * FROM runs
WHERE task = %(task)s AND (%(host)s::text IS NULL OR host = %(host)s)
ORDER BY task DESC, started_at DESC, run_id DESC
LIMIT %(limit)s;

-- name: history_all
SELECT * FROM runs
WHERE %(host)s::text IS NULL OR host = %(host)s
ORDER BY started_at DESC, run_id DESC
LIMIT %(limit)s;

-- name: last_runs
-- Each task's newest run: one index probe per task, all in one round trip (a daemon
-- starting with 10,000 tasks asked 10,000 times).
SELECT r.* FROM unnest(%(tasks)s::text[]) AS t(task)
CROSS JOIN LATERAL (
    SELECT * FROM runs
    WHERE runs.task = t.task AND status NOT IN ('skipped', 'missed')
      AND (%(host)s::text IS NULL OR host = %(host)s)
    ORDER BY started_at DESC, run_id DESC
    LIMIT 1
) AS r;

-- name: last_successes
SELECT t.task, s.finished_at FROM unnest(%(tasks)s::text[]) AS t(task)
CROSS JOIN LATERAL (
    SELECT finished_at FROM runs
    WHERE runs.task = t.task AND status = 'ok'
    ORDER BY started_at DESC
    LIMIT 1
) AS s;

-- name: children
SELECT * FROM runs WHERE parent_run_id = %(run_id)s ORDER BY started_at, run_id;

-- name: running_on
SELECT * FROM runs WHERE status = 'running' AND host = %(host)s;

-- name: slot_runs
-- A slot's runs: the task's index from a day before the slot (no run starts earlier).
SELECT * FROM runs
WHERE task = %(task)s AND scheduled_for = %(scheduled_for)s
  AND started_at >= %(scheduled_for)s::timestamptz - interval '1 day'
ORDER BY started_at, run_id;

-- name: running_fleet
SELECT * FROM runs WHERE status = 'running' AND scope = 'fleet' AND task = %(task)s;

-- name: mark_abandoned
UPDATE runs SET status = 'unknown', finished_at = now(), error = %(error)s,
                summary = %(message)s
WHERE run_id = %(run_id)s AND status = 'running';

-- name: runs_between
SELECT * FROM runs WHERE started_at >= %(since)s AND started_at < %(until)s
ORDER BY started_at, run_id;

-- name: last_runs_before
SELECT DISTINCT ON (task) * FROM runs
WHERE started_at < %(since)s AND status NOT IN ('skipped', 'missed', 'running')
ORDER BY task, started_at DESC;

-- name: claim_slot
-- A fleet slot ('' host) is never claimed before it is due on the database's clock, not
-- even to record it skipped or missed: a host whose clock runs ahead claims nothing early.
INSERT INTO slots (task, host, scheduled_for, schedule, claimed_by)
SELECT %(task)s, %(host)s, %(scheduled_for)s, %(schedule)s, %(claimed_by)s
WHERE %(host)s <> '' OR %(scheduled_for)s::timestamptz <= now()
ON CONFLICT DO NOTHING
RETURNING task;

-- name: claim_slots
-- Many slots in one statement (a burst of fires costs one round trip); the same rule.
INSERT INTO slots (task, host, scheduled_for, schedule, claimed_by)
SELECT w.task, w.host, w.scheduled_for, w.schedule, w.claimed_by
FROM unnest(%(tasks)s::text[], %(hosts)s::text[], %(slots)s::timestamptz[],
            %(schedules)s::text[], %(claimed_by)s::text[])
     AS w(task, host, scheduled_for, schedule, claimed_by)
WHERE w.host <> '' OR w.scheduled_for <= now()
ON CONFLICT DO NOTHING
RETURNING task, host, scheduled_for;

-- name: claim_fleet_slot
-- One fleet slot with its task's lease: claim_fleet_slots for one row, without the
-- arrays (a third cheaper: the common case when fires are spread out).
WITH claimed AS (
    INSERT INTO slots (task, host, scheduled_for, schedule, claimed_by)
    SELECT %(task)s, '', %(slot)s, %(schedule)s, %(owner)s
    WHERE %(slot)s::timestamptz <= now()
    ON CONFLICT DO NOTHING
    RETURNING 1
), leased AS (
    INSERT INTO leases (name, owner, holder, task, scheduled_for, trigger, attempt, lease_until)
    SELECT 'task:' || %(task)s, %(owner)s, %(holder)s, %(task)s, %(slot)s, %(trigger)s, 1,
           now() + make_interval(secs => %(lease_s)s)
    WHERE EXISTS (SELECT 1 FROM claimed)
    ON CONFLICT (name) DO UPDATE SET
        owner = excluded.owner, holder = excluded.holder, task = excluded.task,
        scheduled_for = excluded.scheduled_for, trigger = excluded.trigger,
        attempt = excluded.attempt, acquired_at = now(), lease_until = excluded.lease_until
    WHERE leases.lease_until < now()
    RETURNING task, holder
), lapsed AS (
    -- Read from the statement's snapshot: the lease as it was before this claim.  Our
    -- own lapsed lease is left out: its run may have ended with its end not yet written
    -- (the store was away); the upkeep writes it, then tidies what is left.
    SELECT task, holder FROM leases
    WHERE name = 'task:' || %(task)s AND lease_until < now() AND owner <> %(owner)s
), orphaned AS (
    -- A lapsed lease taken before any sweep took it over: the old holder's run has
    -- nobody left to end it.
    UPDATE runs SET status = 'unknown', finished_at = now(), summary = o.message,
                    error = jsonb_build_object('type', 'abandoned', 'message', o.message)
    FROM (SELECT p.task, 'abandoned: ' || p.holder || ' stopped renewing its lease; a later'
                 || ' slot was claimed by ' || l.holder AS message
          FROM lapsed p JOIN leased l USING (task)) AS o
    WHERE runs.task = o.task AND runs.scope = 'fleet' AND runs.status = 'running'
    RETURNING 1
)
SELECT %(task)s AS task,
       EXTRACT(EPOCH FROM (%(slot)s::timestamptz - now()))::float8 AS early_s,
       EXISTS (SELECT 1 FROM claimed) AS claimed,
       EXISTS (SELECT 1 FROM leased) AS leased,
       (SELECT holder FROM leases WHERE name = 'task:' || %(task)s) AS holder;

-- name: claim_fleet_slots
-- Fleet slots with their tasks' leases, many in one statement and one transaction:
-- a slot due on the database's clock is claimed, and the task's lease taken with it
-- unless another daemon's lease on that task is still live (the slot is then claimed
-- for the record: the task is still running).  One row per wanted slot comes back.
WITH wanted AS (
    SELECT * FROM unnest(%(tasks)s::text[], %(slots)s::timestamptz[], %(schedules)s::text[],
                         %(holders)s::text[], %(triggers)s::text[])
         AS w(task, scheduled_for, schedule, holder, trigger)
), claimed AS (
    INSERT INTO slots (task, host, scheduled_for, schedule, claimed_by)
    SELECT task, '', scheduled_for, schedule, %(owner)s FROM wanted
    WHERE scheduled_for <= now()
    ON CONFLICT DO NOTHING
    RETURNING task, scheduled_for
), leased AS (
    INSERT INTO leases (name, owner, holder, task, scheduled_for, trigger, attempt, lease_until)
    SELECT 'task:' || w.task, %(owner)s, w.holder, w.task, w.scheduled_for, w.trigger, 1,
           now() + make_interval(secs => %(lease_s)s)
    FROM claimed c JOIN wanted w USING (task, scheduled_for)
    ON CONFLICT (name) DO UPDATE SET
        owner = excluded.owner, holder = excluded.holder, task = excluded.task,
        scheduled_for = excluded.scheduled_for, trigger = excluded.trigger,
        attempt = excluded.attempt, acquired_at = now(), lease_until = excluded.lease_until
    WHERE leases.lease_until < now()
    RETURNING task, holder
), lapsed AS (
    SELECT task, holder FROM leases
    WHERE name IN (SELECT 'task:' || task FROM wanted) AND lease_until < now()
      AND owner <> %(owner)s
), orphaned AS (
    -- As in claim_fleet_slot: the old holders' runs of lapsed leases taken here end.
    UPDATE runs SET status = 'unknown', finished_at = now(), summary = o.message,
                    error = jsonb_build_object('type', 'abandoned', 'message', o.message)
    FROM (SELECT p.task, 'abandoned: ' || p.holder || ' stopped renewing its lease; a later'
                 || ' slot was claimed by ' || l.holder AS message
          FROM lapsed p JOIN leased l USING (task)) AS o
    WHERE runs.task = o.task AND runs.scope = 'fleet' AND runs.status = 'running'
    RETURNING 1
)
SELECT w.task,
       EXTRACT(EPOCH FROM (w.scheduled_for - now()))::float8 AS early_s,
       c.task IS NOT NULL AS claimed,
       l.task IS NOT NULL AS leased,
       (SELECT x.holder FROM leases x WHERE x.name = 'task:' || w.task) AS holder
FROM wanted w
LEFT JOIN claimed c USING (task, scheduled_for)
LEFT JOIN leased l ON l.task = w.task;

-- name: last_slot
SELECT scheduled_for, schedule FROM slots
WHERE task = %(task)s AND host = %(host)s
ORDER BY scheduled_for DESC
LIMIT 1;

-- name: last_slots
-- Each task's newest slot: one index probe per task, all in one round trip.
SELECT t.task, s.scheduled_for, s.schedule
FROM unnest(%(tasks)s::text[]) AS t(task)
CROSS JOIN LATERAL (
    SELECT scheduled_for, schedule FROM slots
    WHERE slots.task = t.task AND slots.host = %(host)s
    ORDER BY scheduled_for DESC
    LIMIT 1
) AS s;

-- name: take_lease
-- Taken when free or expired; a live lease, ours included, is not taken again.  A task's
-- lapsed lease taken here ends its old holder's run, as in claim_fleet_slot.
WITH taken AS (
    INSERT INTO leases (name, owner, holder, task, scheduled_for, trigger, attempt,
                        lease_until)
    VALUES (%(name)s, %(owner)s, %(holder)s, %(task)s, %(scheduled_for)s, %(trigger)s,
            %(attempt)s, now() + make_interval(secs => %(lease_s)s))
    ON CONFLICT (name) DO UPDATE SET
        owner = excluded.owner, holder = excluded.holder, task = excluded.task,
        scheduled_for = excluded.scheduled_for, trigger = excluded.trigger,
        attempt = excluded.attempt, acquired_at = now(), lease_until = excluded.lease_until
    WHERE leases.lease_until < now()
    RETURNING name, task, holder
), lapsed AS (
    SELECT name, holder FROM leases
    WHERE name = %(name)s AND name LIKE 'task:%%' AND lease_until < now()
      AND owner <> %(owner)s
), orphaned AS (
    UPDATE runs SET status = 'unknown', finished_at = now(), summary = o.message,
                    error = jsonb_build_object('type', 'abandoned', 'message', o.message)
    FROM (SELECT t.task, 'abandoned: ' || p.holder || ' stopped renewing its lease; a later'
                 || ' slot was claimed by ' || t.holder AS message
          FROM lapsed p JOIN taken t USING (name)) AS o
    WHERE runs.task = o.task AND runs.scope = 'fleet' AND runs.status = 'running'
    RETURNING 1
)
SELECT name FROM taken;

-- name: renew_leases
UPDATE leases SET lease_until = now() + make_interval(secs => %(lease_s)s)
WHERE owner = %(owner)s AND name = ANY(%(names)s)
RETURNING name;

-- name: release_lease
DELETE FROM leases WHERE name = %(name)s AND owner = %(owner)s;

-- name: expired_leases
SELECT * FROM leases
WHERE lease_until < now() - make_interval(secs => %(grace_s)s)
ORDER BY lease_until;

-- name: take_over
UPDATE leases SET owner = %(owner)s, holder = %(holder)s, attempt = attempt + 1,
                  acquired_at = now(), lease_until = now() + make_interval(secs => %(lease_s)s)
WHERE name = %(name)s AND owner = %(old)s AND lease_until < now()
RETURNING name;

-- name: get_lease
SELECT * FROM leases WHERE name = %(name)s;

-- name: lease_holder
SELECT holder FROM leases WHERE name = %(name)s;

-- name: live_lease_holder
SELECT holder FROM leases WHERE name = %(name)s AND lease_until >= now();

-- name: heartbeat
INSERT INTO hosts (host_id, hostname, version, config_hash, started_at, last_seen)
VALUES (%(host_id)s, %(hostname)s, %(version)s, %(config_hash)s, %(started_at)s, now())
ON CONFLICT (host_id) DO UPDATE SET
    hostname = excluded.hostname, version = excluded.version,
    config_hash = excluded.config_hash, started_at = excluded.started_at,
    last_seen = excluded.last_seen;

-- name: hosts
SELECT h.*, h.last_seen >= now() - make_interval(secs => %(alive_s)s) AS alive,
       (SELECT count(*) FROM runs r
        WHERE r.host = h.host_id AND r.started_at >= now() - make_interval(secs => %(day_s)s)
          AND r.status NOT IN ('skipped', 'missed', 'running')) AS runs_day,
       (SELECT count(*) FROM runs r
        WHERE r.host = h.host_id AND r.started_at >= now() - make_interval(secs => %(day_s)s)
          AND r.status IN ('critical', 'unknown')) AS failures_day
FROM hosts h
ORDER BY h.host_id;

-- name: check_state
SELECT state FROM check_states WHERE task = %(task)s AND host = %(host)s;

-- name: save_check_state
INSERT INTO check_states (task, host, state) VALUES (%(task)s, %(host)s, %(state)s)
ON CONFLICT (task, host) DO UPDATE SET state = excluded.state;

-- name: check_states
SELECT task, host, state FROM check_states
WHERE %(task)s::text IS NULL OR task = %(task)s
ORDER BY task, host;

-- name: add_notification
INSERT INTO notifications (dedupe_key, task, kind, run_id, title, body)
VALUES (%(dedupe_key)s, %(task)s, %(kind)s, %(run_id)s, %(title)s, %(body)s)
ON CONFLICT DO NOTHING
RETURNING id;

-- name: set_sent_to
UPDATE notifications SET sent_to = %(sent_to)s WHERE dedupe_key = %(dedupe_key)s;

-- name: notifications_for
SELECT kind, run_id, title, body, sent_to, created_at FROM notifications
WHERE run_id = ANY(%(run_ids)s)
ORDER BY id;

-- name: lock_sends
SELECT pg_advisory_xact_lock(hashtext('toilbox sends:' || %(destination)s));

-- name: count_sends
SELECT count(*) FROM notify_sends
WHERE destination = %(destination)s
  AND sent_at >= now() - make_interval(secs => %(window_s)s);

-- name: add_send
INSERT INTO notify_sends (destination) VALUES (%(destination)s);

-- name: lock_budget
SELECT name FROM budgets WHERE name = 'remediation' FOR UPDATE;

-- name: remediation_counts
-- Fixes of this check on this host in its window; fixes on this host in the last hour;
-- distinct hosts fixed in the last hour; this host among them; hosts seen in the last
-- day (the fleet budget's denominator: a dying fleet does not shrink it).
SELECT
    (SELECT count(*) FROM remediations
     WHERE check_task = %(check)s AND (%(fleet_check)s OR host = %(host)s)
       AND started_at >= now() - make_interval(secs => %(per_s)s)) AS check_fixes,
    (SELECT count(*) FROM remediations
     WHERE host = %(host)s AND started_at >= now() - interval '1 hour') AS host_fixes_hour,
    (SELECT count(DISTINCT host) FROM remediations
     WHERE started_at >= now() - interval '1 hour') AS hosts_fixed_hour,
    (SELECT count(*) FROM remediations
     WHERE host = %(host)s AND started_at >= now() - interval '1 hour') > 0
        AS this_host_counted,
    (SELECT count(*) FROM hosts
     WHERE last_seen >= now() - make_interval(secs => %(day_s)s)) AS hosts_seen_day;

-- name: add_remediation
INSERT INTO remediations (check_task, host, run_id) VALUES (%(check)s, %(host)s, %(run_id)s);

-- name: count_remediations
SELECT count(*) FROM remediations
WHERE started_at >= now() - make_interval(secs => %(window_s)s)
  AND (%(check)s::text IS NULL OR check_task = %(check)s);

-- name: remediated_hosts
SELECT count(DISTINCT host) FROM remediations
WHERE started_at >= now() - make_interval(secs => %(window_s)s);

-- name: get_setting
SELECT value FROM settings WHERE key = %(key)s;

-- name: set_setting
INSERT INTO settings (key, value) VALUES (%(key)s, %(value)s)
ON CONFLICT (key) DO UPDATE SET value = excluded.value;

-- name: delete_setting
DELETE FROM settings WHERE key = %(key)s;

-- name: prune_runs
DELETE FROM runs WHERE run_id IN (
    SELECT run_id FROM runs WHERE started_at < %(before)s AND status <> 'running'
    ORDER BY started_at LIMIT %(batch)s);

-- name: prune_slots
DELETE FROM slots WHERE ctid IN (
    SELECT ctid FROM slots WHERE claimed_at < %(slots_before)s
    ORDER BY claimed_at LIMIT %(batch)s);

-- name: prune_notifications
DELETE FROM notifications WHERE id IN (
    SELECT id FROM notifications WHERE created_at < %(before)s
    ORDER BY created_at LIMIT %(batch)s);

-- name: prune_sends
DELETE FROM notify_sends WHERE ctid IN (
    SELECT ctid FROM notify_sends WHERE sent_at < %(before)s LIMIT %(batch)s);

-- name: prune_remediations
DELETE FROM remediations WHERE ctid IN (
    SELECT ctid FROM remediations WHERE started_at < %(before)s
    ORDER BY started_at LIMIT %(batch)s);

-- name: database_size
SELECT pg_database_size(current_database());

-- The status page: many tasks in one round trip, each an index probe.

-- name: run_strips
SELECT t.task, r.run_id, r.status, r.started_at, r.duration_s, r.summary, r.trigger,
       r.error ->> 'type' AS error_type
FROM unnest(%(tasks)s::text[]) AS t(task)
CROSS JOIN LATERAL (
    SELECT * FROM runs
    WHERE runs.task = t.task AND (%(host)s::text IS NULL OR runs.host = %(host)s)
    ORDER BY started_at DESC, run_id DESC
    LIMIT %(limit)s
) AS r
ORDER BY r.task, r.started_at DESC, r.run_id DESC;

-- name: last_with_status
SELECT r.run_id, r.task, r.task_type, r.status, r.trigger, r.started_at, r.finished_at,
       r.scheduled_for, r.parent_run_id, r.attempts, r.duration_s, r.summary, r.error,
       r.dry_run, r.hostname, r.pid, r.host, r.scope
FROM unnest(%(tasks)s::text[]) AS t(task)
CROSS JOIN unnest(%(statuses)s::text[]) AS s(status)
CROSS JOIN LATERAL (
    SELECT * FROM runs
    WHERE runs.task = t.task AND runs.status = s.status
      AND (%(host)s::text IS NULL OR runs.host = %(host)s)
    ORDER BY started_at DESC
    LIMIT 1
) AS r;

-- name: notable_since
SELECT
    COALESCE(SUM((data ->> 'count')::integer) FILTER (WHERE status = 'missed'), 0) AS missed,
    count(*) FILTER (WHERE status = 'skipped') AS skipped,
    count(*) FILTER (WHERE status = 'unknown' AND error ->> 'type' = 'abandoned') AS abandoned
FROM runs
WHERE started_at >= %(since)s AND status IN ('missed', 'skipped', 'unknown')
  AND (%(host)s::text IS NULL OR host = %(host)s);
