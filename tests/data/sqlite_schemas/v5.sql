-- toilbox store schema 5, as created by that version (for migration tests)
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
CREATE INDEX IF NOT EXISTS runs_task_started ON runs (task, started_at);
CREATE INDEX IF NOT EXISTS runs_started ON runs (started_at);
CREATE INDEX IF NOT EXISTS runs_running ON runs (status) WHERE status = 'running';

CREATE INDEX IF NOT EXISTS runs_parent ON runs (parent_run_id) WHERE parent_run_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS runs_host_started ON runs (host, started_at);

CREATE INDEX IF NOT EXISTS runs_task_status_started ON runs (task, status, started_at);
CREATE INDEX IF NOT EXISTS runs_notable ON runs (started_at)
    WHERE status IN ('missed', 'skipped', 'unknown');

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
PRAGMA user_version=5;
