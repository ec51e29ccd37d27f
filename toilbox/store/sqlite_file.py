"""The SQLite store's file: the state directory it lives in, judged and made private;
a truncated file refused; the schema migrated from every older version; an error
explained by what the OS says of the directory."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import stat
from collections.abc import Callable
from pathlib import Path

from toilbox import destinations
from toilbox.errors import StateError
from toilbox.store import sqlite_sql as sql

SCHEMA_VERSION = sql.SCHEMA_VERSION


def own_state_dir(state_dir: Path) -> Path:
    """The state dir, made 0700 if missing; refused if anyone but us (or root) could
    change it or a directory on its way: a local user who could swap it would choose
    what a root daemon reads and writes.  Returns the resolved path, to use from now on."""
    from toilbox import trust
    from toilbox.errors import UntrustedPath

    trusted = frozenset({0, os.geteuid()})
    try:
        real = trust.require(state_dir, "the state directory", trusted)
        missing = [d for d in [real, *real.parents] if not d.exists()]
        for directory in reversed(missing):  # made 0700 one by one: none wider than ours
            directory.mkdir(mode=0o700, exist_ok=True)
        info = real.lstat()
        if info.st_uid != os.geteuid():
            raise StateError(
                f"refusing the state directory {state_dir}: it is owned by uid {info.st_uid},"
                f" not by this user (uid {os.geteuid()})"
            )
        return trust.require(real, "the state directory", trusted)
    except UntrustedPath as exc:
        raise StateError(str(exc)) from None


def create_private(path: Path) -> bool:
    """Create the database file 0600 (SQLite would follow the umask), never through a
    symlink; an existing one is tightened to 0600.  SQLite gives its WAL the same mode.
    True if it was created here."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        if stat.S_IMODE(path.lstat().st_mode) & 0o077:
            path.chmod(0o600)
        return False
    os.close(fd)
    return True


def refuse_truncated(path: Path) -> None:
    """An existing store cut to zero bytes is damage, not a new store: creating one on
    top would silently drop every slot claim and the whole history."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return
    if stat.S_ISLNK(info.st_mode):
        raise StateError(f"state store {path} is a symlink; refusing to follow it")
    if not stat.S_ISREG(info.st_mode):
        raise StateError(f"state store {path} is not a regular file")
    if info.st_size == 0:
        raise StateError(
            f"state store {path} is empty (0 bytes): it was truncated or damaged; restore it"
            " from a backup, or move it away to start a new history"
        )


def migrate(db: sqlite3.Connection, path: Path) -> None:
    if db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION:
        return
    # Two processes may open an old store at once: one migrates, the other then sees it done.
    db.execute("BEGIN IMMEDIATE")
    try:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StateError(
                f"state store {path} was written by a newer toilbox (schema {version})"
            )
        if version == 0:
            for statement in _statements(sql.SCHEMA):
                db.execute(statement)
        else:
            for step in range(version + 1, SCHEMA_VERSION + 1):
                _MIGRATIONS[step](db)
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _statements(script: str) -> list[str]:
    # One statement at a time: executescript() would commit the transaction first.
    return [s for s in script.split(";") if s.strip()]


def _run_script(script: str) -> Callable[[sqlite3.Connection], None]:
    def step(db: sqlite3.Connection) -> None:
        for statement in _statements(script):
            db.execute(statement)

    return step


def _to_v5(db: sqlite3.Connection) -> None:
    """Hosts and scopes; UTC slots; destinations stored without their secrets."""
    here = {"here": socket.gethostname()}
    for statement in _statements(sql.MIGRATE_5):
        db.execute(statement, here if ":here" in statement else ())
    for row_id, sent_to in db.execute(sql.NOTIFICATIONS_SENT_TO).fetchall():
        labels = [destinations.label(url) for url in json.loads(sent_to or "[]")]
        db.execute(sql.SET_NOTIFICATION_SENT_TO, (json.dumps(labels), row_id))
    for row_id, destination in db.execute(sql.SENDS).fetchall():
        db.execute(sql.SET_SEND_DESTINATION, (destinations.key(destination), row_id))


# Steps from each older version to the next; a new database gets the schema directly.
_MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {
    2: _run_script(sql.MIGRATE_2),
    3: _run_script(sql.MIGRATE_3),
    4: _run_script(sql.MIGRATE_4),
    5: _to_v5,
    6: _run_script(sql.MIGRATE_6),
}


def explain(exc: sqlite3.Error, state_dir: Path) -> str:
    """SQLite says "unable to open database file"; the OS knows why (read-only, full, ...)."""
    probe = state_dir / f".toilbox-write-test-{os.getpid()}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, b"x" * 4096)
            os.fsync(fd)
        finally:
            os.close(fd)
            probe.unlink()
    except OSError as os_error:
        return f"{exc} ({os_error.strerror or os_error})"
    return str(exc)
