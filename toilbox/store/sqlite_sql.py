"""Every SQL statement of the SQLite store, each whole and named.

Timestamps are UTC ISO strings of one format, so comparing strings compares instants.
"""

from __future__ import annotations

SCHEMA_VERSION = 6

_RUNS = """
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
    pid           INTEGER NOT NULL,
    host          TEXT NOT NULL DEFAULT '',
    scope         TEXT NOT NULL DEFAULT 'host'
);
"""

_RUN_INDEXES_1 = """
CREATE INDEX IF NOT EXISTS runs_task_started ON runs (task, started_at);
CREATE INDEX IF NOT EXISTS runs_started ON runs (started_at);
CREATE INDEX IF NOT EXISTS runs_running ON runs (status) WHERE status = 'running';
"""

_INDEXES_5 = """
CREATE INDEX IF NOT EXISTS runs_parent ON runs (parent_run_id) WHERE parent_run_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS runs_host_started ON runs (host, started_at);
"""

# What the status page reads: a task's newest run of each status, and the day's notable
# runs (missed, skipped, abandoned), each an index probe or a short range.
_PAGE_INDEXES_5 = """
CREATE INDEX IF NOT EXISTS runs_task_status_started ON runs (task, status, started_at);
CREATE INDEX IF NOT EXISTS runs_notable ON runs (started_at)
    WHERE status IN ('missed', 'skipped', 'unknown');
"""

# What a cleanup run freed, as sqlite_history's FREED reads it: the same expressions
# index and query, so the query reads them from the index, not from each run's JSON.
FREED_DAY = "substr(COALESCE(finished_at, started_at), 1, 10)"
FREED_FILES = """CAST(COALESCE(json_extract(metrics, '$.files_deleted.value'),
                      json_extract(data, '$.deleted.files'), 0) AS INTEGER)"""
FREED_BYTES = """CAST(COALESCE(json_extract(metrics, '$.bytes_freed.value'),
                      json_extract(data, '$.deleted.bytes'), 0) AS INTEGER)"""
FREED_RUNS = """task_type LIKE 'cleanup.%' AND dry_run = 0
    AND status NOT IN ('running', 'skipped', 'missed')"""

# Schema 6: what the aggregate reads of a window (sqlite_history) need.  A task's runs in a
# window with every column those reads count or rank, so they never read the table; and
# the few runs a remediation or a verify is (a report's fix chains).
_HISTORY_INDEXES_6 = f"""
CREATE INDEX IF NOT EXISTS runs_task_window
    ON runs (task, started_at, status, duration_s, finished_at, host, trigger);
CREATE INDEX IF NOT EXISTS runs_followups ON runs (started_at)
    WHERE trigger IN ('remediation', 'verify') AND parent_run_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS runs_freed
    ON runs (task, started_at, host, {FREED_DAY}, {FREED_FILES}, {FREED_BYTES})
    WHERE {FREED_RUNS};
"""

_SLOTS_V3 = """
CREATE TABLE IF NOT EXISTS slots (
    task          TEXT NOT NULL,
    scheduled_for TEXT NOT NULL,
    schedule      TEXT NOT NULL,
    claimed_by    TEXT NOT NULL,
    claimed_at    TEXT NOT NULL,
    PRIMARY KEY (task, scheduled_for)
);
"""

_AUTOMATION_V4 = """
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

_SLOTS_5 = """
CREATE TABLE IF NOT EXISTS slots (
    task          TEXT NOT NULL,
    host          TEXT NOT NULL,
    scheduled_for TEXT NOT NULL,
    schedule      TEXT NOT NULL,
    claimed_by    TEXT NOT NULL,
    claimed_at    TEXT NOT NULL,
    PRIMARY KEY (task, host, scheduled_for)
);
CREATE INDEX IF NOT EXISTS slots_claimed ON slots (claimed_at);
"""

_CHECK_STATES_5 = """
CREATE TABLE IF NOT EXISTS check_states (
    task  TEXT NOT NULL,
    host  TEXT NOT NULL,
    state TEXT NOT NULL,
    PRIMARY KEY (task, host)
);
"""

_FLEET_5 = """
CREATE TABLE IF NOT EXISTS leases (
    name          TEXT PRIMARY KEY,
    owner         TEXT NOT NULL,
    holder        TEXT NOT NULL,
    task          TEXT,
    scheduled_for TEXT,
    trigger       TEXT,
    attempt       INTEGER NOT NULL DEFAULT 1,
    acquired_at   TEXT NOT NULL,
    lease_until   TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS hosts (
    host_id     TEXT PRIMARY KEY,
    hostname    TEXT NOT NULL,
    version     TEXT NOT NULL,
    config_hash TEXT NOT NULL,
    started_at  TEXT NOT NULL,
    last_seen   TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
    run_id TEXT PRIMARY KEY
);
CREATE INDEX IF NOT EXISTS remediations_host ON remediations (host, started_at);
CREATE INDEX IF NOT EXISTS notifications_created ON notifications (created_at);
"""

_AUTOMATION_5 = """
CREATE TABLE IF NOT EXISTS check_states (
    task  TEXT NOT NULL,
    host  TEXT NOT NULL,
    state TEXT NOT NULL,
    PRIMARY KEY (task, host)
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
    started_at TEXT NOT NULL,
    host       TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS remediations_at ON remediations (started_at);
CREATE TABLE IF NOT EXISTS settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""

# A new store (the store chooses incremental auto-vacuum before it writes a page).
SCHEMA = (
    _RUNS
    + _RUN_INDEXES_1
    + _INDEXES_5
    + _PAGE_INDEXES_5
    + _HISTORY_INDEXES_6
    + _SLOTS_5
    + _AUTOMATION_5
    + _FLEET_5
)

MIGRATE_2 = "ALTER TABLE runs ADD COLUMN details TEXT NOT NULL DEFAULT '';"
MIGRATE_3 = _SLOTS_V3
MIGRATE_4 = _AUTOMATION_V4


# From schema 4: runs get their host and scope; slots and check states are keyed by
# host too; every scheduled_for becomes a UTC instant with microseconds (schema 4 stored
# a run's slot with its task's offset).  ``:here`` is this machine's hostname, the
# default host id, for rows that predate hosts.
_UTC_SLOT = """CASE WHEN substr(scheduled_for, 20, 1) = '.'
    THEN strftime('%Y-%m-%dT%H:%M:%S', scheduled_for) || substr(scheduled_for, 20, 7) || '+00:00'
    ELSE strftime('%Y-%m-%dT%H:%M:%S', scheduled_for) || '.000000+00:00' END"""

MIGRATE_5 = f"""
ALTER TABLE runs ADD COLUMN host TEXT NOT NULL DEFAULT '';
ALTER TABLE runs ADD COLUMN scope TEXT NOT NULL DEFAULT 'host';
UPDATE runs SET host = hostname;
UPDATE runs SET scheduled_for = {_UTC_SLOT} WHERE scheduled_for IS NOT NULL;
CREATE INDEX IF NOT EXISTS runs_parent ON runs (parent_run_id) WHERE parent_run_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS runs_host_started ON runs (host, started_at);
CREATE TABLE slots_5 (
    task          TEXT NOT NULL,
    host          TEXT NOT NULL,
    scheduled_for TEXT NOT NULL,
    schedule      TEXT NOT NULL,
    claimed_by    TEXT NOT NULL,
    claimed_at    TEXT NOT NULL,
    PRIMARY KEY (task, host, scheduled_for)
);
INSERT INTO slots_5 SELECT task, :here, {_UTC_SLOT}, schedule, claimed_by, claimed_at FROM slots;
DROP TABLE slots;
ALTER TABLE slots_5 RENAME TO slots;
CREATE INDEX IF NOT EXISTS slots_claimed ON slots (claimed_at);
CREATE TABLE check_states_5 (
    task  TEXT NOT NULL,
    host  TEXT NOT NULL,
    state TEXT NOT NULL,
    PRIMARY KEY (task, host)
);
INSERT INTO check_states_5 SELECT task, :here, state FROM check_states;
DROP TABLE check_states;
ALTER TABLE check_states_5 RENAME TO check_states;
ALTER TABLE remediations ADD COLUMN host TEXT NOT NULL DEFAULT '';
UPDATE remediations SET host = :here;
{_FLEET_5}
{_PAGE_INDEXES_5}
"""  # noqa: S608 -- our own constants, no input

# Every index the reads name (INDEXED BY), made if a store lacks one: a store from before
# schema 2 may have been made without them.
MIGRATE_6 = _RUN_INDEXES_1 + _INDEXES_5 + _PAGE_INDEXES_5 + _HISTORY_INDEXES_6

NOTIFICATIONS_SENT_TO = "SELECT id, sent_to FROM notifications"
SET_NOTIFICATION_SENT_TO = "UPDATE notifications SET sent_to = ? WHERE id = ?"
SENDS = "SELECT rowid, destination FROM notify_sends"
SET_SEND_DESTINATION = "UPDATE notify_sends SET destination = ? WHERE rowid = ?"

# -- runs ----------------------------------------------------------------------------------

INSERT_RUN = """
INSERT INTO runs (run_id, task, task_type, status, trigger, started_at, finished_at,
                  scheduled_for, parent_run_id, attempts, duration_s, summary, metrics, data,
                  error, details, output, dry_run, hostname, pid, host, scope)
VALUES (:run_id, :task, :task_type, :status, :trigger, :started_at, :finished_at,
        :scheduled_for, :parent_run_id, :attempts, :duration_s, :summary, :metrics, :data,
        :error, :details, :output, :dry_run, :hostname, :pid, :host, :scope)
"""

# Only a run still running can be finished: one that was marked abandoned (its owner
# was fenced off and the run taken over) keeps that verdict.
FINISH_RUN = """
UPDATE runs SET status = :status, finished_at = :finished_at, attempts = :attempts,
                duration_s = :duration_s, summary = :summary, metrics = :metrics,
                data = :data, error = :error, details = :details, output = :output
WHERE run_id = :run_id AND status = 'running'
"""

GET_RUN = "SELECT * FROM runs WHERE run_id = ?"

# A task's history walks its index from the newest run; all tasks' walk runs_started.
# (One statement with ":task IS NULL OR" would walk runs_started for a task too, reading
# every newer run of the other tasks.)
HISTORY_OF = """
SELECT * FROM runs INDEXED BY runs_task_started
WHERE task = :task AND (:host IS NULL OR host = :host)
ORDER BY started_at DESC, rowid DESC
LIMIT :limit
"""

HISTORY_ALL = """
SELECT * FROM runs
WHERE :host IS NULL OR host = :host
ORDER BY started_at DESC, rowid DESC
LIMIT :limit
"""

# INDEXED BY: on status NOT IN, SQLite may pick runs_task_status_started, and then
# sort all of the task's runs to find the newest.
LAST_RUN = """
SELECT * FROM runs INDEXED BY runs_task_started
WHERE task = :task AND status NOT IN ('skipped', 'missed')
  AND (:host IS NULL OR host = :host)
ORDER BY started_at DESC, rowid DESC
LIMIT 1
"""

LAST_SUCCESS = """
SELECT finished_at FROM runs
WHERE task = ? AND status = 'ok'
ORDER BY started_at DESC, rowid DESC
LIMIT 1
"""

CHILDREN = "SELECT * FROM runs WHERE parent_run_id = ? ORDER BY started_at, rowid"

# The partial index of running runs, never the host's index: every command that opens
# the store asks this (recover_abandoned), and a host's index holds all of its history.
RUNNING_ON = "SELECT * FROM runs INDEXED BY runs_running WHERE status = 'running' AND host = ?"

# A slot's runs: the task's index from a day before the slot (no run starts earlier).
SLOT_RUNS = """
SELECT * FROM runs
WHERE task = ? AND started_at >= ? AND scheduled_for = ?
ORDER BY started_at, rowid
"""

RUNNING_FLEET = "SELECT * FROM runs WHERE status = 'running' AND scope = 'fleet' AND task = ?"
RUNNING_FLEET_IDS = (
    "SELECT run_id FROM runs WHERE status = 'running' AND scope = 'fleet' AND task = ?"
)

MARK_ABANDONED = """
UPDATE runs SET status = 'unknown', finished_at = ?, error = ?, summary = ?
WHERE run_id = ? AND status = ?
"""

RUNS_BETWEEN = """
SELECT * FROM runs WHERE started_at >= ? AND started_at < ?
ORDER BY started_at, rowid
"""

LAST_RUNS_BEFORE = """
SELECT r.* FROM runs r
JOIN (SELECT task, MAX(started_at) AS started_at FROM runs
      WHERE started_at < ? AND status NOT IN ('skipped', 'missed', 'running')
      GROUP BY task) last USING (task, started_at)
"""

# -- slots and leases ----------------------------------------------------------------------

# A fleet slot ('' host) is never claimed before it is due, as on PostgreSQL.
CLAIM_SLOT = """
INSERT INTO slots (task, host, scheduled_for, schedule, claimed_by, claimed_at)
SELECT :task, :host, :scheduled_for, :schedule, :claimed_by, :now
WHERE :host <> '' OR :scheduled_for <= :now
ON CONFLICT DO NOTHING
"""

LAST_SLOT = """
SELECT scheduled_for, schedule FROM slots
WHERE task = ? AND host = ?
ORDER BY scheduled_for DESC
LIMIT 1
"""

LAPSED_LEASE_HOLDER = """
SELECT holder FROM leases WHERE name = :name AND lease_until < :now AND owner <> :owner
"""

# Taken when free or expired; a live lease, ours included, is not taken again.
TAKE_LEASE = """
INSERT INTO leases (name, owner, holder, task, scheduled_for, trigger, attempt, acquired_at,
                    lease_until)
VALUES (:name, :owner, :holder, :task, :scheduled_for, :trigger, :attempt, :now, :until)
ON CONFLICT (name) DO UPDATE SET
    owner = excluded.owner, holder = excluded.holder, task = excluded.task,
    scheduled_for = excluded.scheduled_for, trigger = excluded.trigger,
    attempt = excluded.attempt, acquired_at = excluded.acquired_at,
    lease_until = excluded.lease_until
WHERE leases.lease_until < :now
"""

RENEW_LEASES = """
UPDATE leases SET lease_until = ?
WHERE owner = ? AND name IN (SELECT value FROM json_each(?))
RETURNING name
"""

RELEASE_LEASE = "DELETE FROM leases WHERE name = ? AND owner = ?"

EXPIRED_LEASES = "SELECT * FROM leases WHERE lease_until < ? ORDER BY lease_until"

TAKE_OVER = """
UPDATE leases SET owner = :owner, holder = :holder, attempt = attempt + 1,
                  acquired_at = :now, lease_until = :until
WHERE name = :name AND owner = :old AND lease_until < :now
"""

LEASE_HOLDER = "SELECT holder FROM leases WHERE name = ?"

GET_LEASE = "SELECT * FROM leases WHERE name = ?"

LIVE_LEASE_HOLDER = "SELECT holder FROM leases WHERE name = ? AND lease_until >= ?"

# -- hosts ---------------------------------------------------------------------------------

HEARTBEAT = """
INSERT INTO hosts (host_id, hostname, version, config_hash, started_at, last_seen)
VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (host_id) DO UPDATE SET
    hostname = excluded.hostname, version = excluded.version,
    config_hash = excluded.config_hash, started_at = excluded.started_at,
    last_seen = excluded.last_seen
"""

HOSTS = """
SELECT h.*,
       (SELECT COUNT(*) FROM runs r
        WHERE r.host = h.host_id AND r.started_at >= :day
          AND r.status NOT IN ('skipped', 'missed', 'running')) AS runs_day,
       (SELECT COUNT(*) FROM runs r
        WHERE r.host = h.host_id AND r.started_at >= :day
          AND r.status IN ('critical', 'unknown')) AS failures_day
FROM hosts h
ORDER BY h.host_id
"""

# -- automation ----------------------------------------------------------------------------

CHECK_STATE = "SELECT state FROM check_states WHERE task = ? AND host = ?"

SAVE_CHECK_STATE = """
INSERT INTO check_states (task, host, state) VALUES (?, ?, ?)
ON CONFLICT (task, host) DO UPDATE SET state = excluded.state
"""

CHECK_STATES = """
SELECT task, host, state FROM check_states
WHERE :task IS NULL OR task = :task
ORDER BY task, host
"""

ADD_NOTIFICATION = """
INSERT OR IGNORE INTO notifications (dedupe_key, task, kind, run_id, title, body, sent_to,
                                     created_at)
VALUES (?, ?, ?, ?, ?, ?, '[]', ?)
"""

SET_SENT_TO = "UPDATE notifications SET sent_to = ? WHERE dedupe_key = ?"

NOTIFICATIONS_FOR = """
SELECT kind, run_id, title, body, sent_to, created_at FROM notifications
WHERE run_id IN ({marks})
ORDER BY id
"""

COUNT_SENDS = "SELECT COUNT(*) FROM notify_sends WHERE destination = ? AND sent_at >= ?"

ADD_SEND = "INSERT INTO notify_sends (destination, sent_at) VALUES (?, ?)"

# One row: fixes of this check on this host in its window; fixes on this host in the
# last hour; distinct hosts fixed in the last hour; this host among them; hosts seen in
# the last day (the fleet budget's denominator: a dying fleet does not shrink it).
REMEDIATION_COUNTS = """
SELECT
    (SELECT COUNT(*) FROM remediations
     WHERE check_task = :check AND (:fleet_check OR host = :host) AND started_at >= :per),
    (SELECT COUNT(*) FROM remediations WHERE host = :host AND started_at >= :hour),
    (SELECT COUNT(DISTINCT host) FROM remediations WHERE started_at >= :hour),
    (SELECT COUNT(*) FROM remediations WHERE host = :host AND started_at >= :hour) > 0,
    (SELECT COUNT(*) FROM hosts WHERE last_seen >= :day)
"""

ADD_REMEDIATION = """
INSERT INTO remediations (check_task, host, run_id, started_at) VALUES (?, ?, ?, ?)
"""

COUNT_REMEDIATIONS = """
SELECT COUNT(*) FROM remediations
WHERE started_at >= :since AND (:check IS NULL OR check_task = :check)
"""

REMEDIATED_HOSTS = "SELECT COUNT(DISTINCT host) FROM remediations WHERE started_at >= ?"

GET_SETTING = "SELECT value FROM settings WHERE key = ?"

SET_SETTING = """
INSERT INTO settings (key, value) VALUES (?, ?)
ON CONFLICT (key) DO UPDATE SET value = excluded.value
"""

DELETE_SETTING = "DELETE FROM settings WHERE key = ?"

# -- the outbox ----------------------------------------------------------------------------

OUTBOX_ADD = "INSERT OR IGNORE INTO outbox (run_id) VALUES (?)"

# The first time a host joins a fleet, the history it kept alone is shipped too.
SEED_OUTBOX = """
INSERT OR IGNORE INTO outbox (run_id)
SELECT run_id FROM runs
WHERE NOT EXISTS (SELECT 1 FROM settings WHERE key = 'outbox_seeded')
"""

MARK_OUTBOX_SEEDED = "INSERT OR IGNORE INTO settings (key, value) VALUES ('outbox_seeded', ?)"

OUTBOX_RUNS = """
SELECT r.* FROM outbox o JOIN runs r USING (run_id)
ORDER BY r.started_at
LIMIT ?
"""

OUTBOX_DONE = """
DELETE FROM outbox
WHERE run_id = ?
  AND EXISTS (SELECT 1 FROM runs WHERE run_id = ? AND status = ? AND finished_at IS ?)
"""

# -- housekeeping --------------------------------------------------------------------------

PRUNE_RUNS = """
DELETE FROM runs WHERE rowid IN (
    SELECT rowid FROM runs WHERE started_at < ? AND status != 'running'
    ORDER BY started_at LIMIT ?)
"""

PRUNE_SLOTS = """
DELETE FROM slots WHERE rowid IN (
    SELECT rowid FROM slots WHERE claimed_at < ? ORDER BY claimed_at LIMIT ?)
"""

PRUNE_NOTIFICATIONS = """
DELETE FROM notifications WHERE id IN (
    SELECT id FROM notifications WHERE created_at < ? ORDER BY created_at LIMIT ?)
"""

PRUNE_SENDS = """
DELETE FROM notify_sends WHERE rowid IN (
    SELECT rowid FROM notify_sends WHERE sent_at < ? LIMIT ?)
"""

PRUNE_REMEDIATIONS = """
DELETE FROM remediations WHERE rowid IN (
    SELECT rowid FROM remediations WHERE started_at < ? ORDER BY started_at LIMIT ?)
"""

# -- the status page ---------------------------------------------------------------------
# A run without its heavy columns (metrics, data, details, output): what a table shows.

RUN_LITE = """run_id, task, task_type, status, trigger, started_at, finished_at, scheduled_for,
    parent_run_id, attempts, duration_s, summary, error, dry_run, hostname, pid, host, scope"""

RUN_STRIP = """
SELECT run_id, status, started_at, duration_s, summary, trigger, json_extract(error, '$.type')
FROM runs
WHERE task = :task AND (:host IS NULL OR host = :host)
ORDER BY started_at DESC, rowid DESC
LIMIT :limit
"""

# A task's newest run of one status: one index probe, a branch per status asked for.
LAST_WITH_STATUS_BRANCH = f"""
SELECT * FROM (
    SELECT {RUN_LITE} FROM runs
    WHERE task = :task AND status = :status{{n}} AND (:host IS NULL OR host = :host)
    ORDER BY started_at DESC
    LIMIT 1
)"""  # noqa: S608 -- our own constants

NOTABLE_SINCE = """
SELECT
    COALESCE(SUM(CASE WHEN status = 'missed' THEN json_extract(data, '$.count') END), 0),
    COUNT(CASE WHEN status = 'skipped' THEN 1 END),
    COUNT(CASE WHEN status = 'unknown' AND json_extract(error, '$.type') = 'abandoned'
               THEN 1 END)
FROM runs
WHERE started_at >= :since AND status IN ('missed', 'skipped', 'unknown')
  AND (:host IS NULL OR host = :host)
"""
