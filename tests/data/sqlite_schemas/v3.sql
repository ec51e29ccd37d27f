-- toilbox store schema 3, as created by that version (for migration tests)
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
PRAGMA user_version=3;
