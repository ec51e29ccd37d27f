-- toilbox store schema 4, as created by that version (for migration tests)
CREATE TABLE runs (
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
CREATE INDEX runs_task_started ON runs (task, started_at);
CREATE INDEX runs_started ON runs (started_at);
CREATE INDEX runs_running ON runs (status) WHERE status = 'running';
CREATE TABLE slots (
    task          TEXT NOT NULL,
    scheduled_for TEXT NOT NULL,
    schedule      TEXT NOT NULL,
    claimed_by    TEXT NOT NULL,
    claimed_at    TEXT NOT NULL,
    PRIMARY KEY (task, scheduled_for)
);
CREATE TABLE check_states (
    task  TEXT PRIMARY KEY,
    state TEXT NOT NULL
);
CREATE TABLE notifications (
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
CREATE INDEX notifications_run ON notifications (run_id);
CREATE TABLE notify_sends (
    destination TEXT NOT NULL,
    sent_at     TEXT NOT NULL
);
CREATE INDEX notify_sends_dest ON notify_sends (destination, sent_at);
CREATE TABLE remediations (
    check_task TEXT NOT NULL,
    run_id     TEXT NOT NULL,
    started_at TEXT NOT NULL
);
CREATE INDEX remediations_at ON remediations (started_at);
CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
PRAGMA user_version=4;
