"""The state store: a port (``Store``) and the factory that opens its backend.

SQLite in the state directory is the default and needs nothing configured.  With
``store: {url: postgresql://...}`` the daemons of a fleet share PostgreSQL (see
``fleet_store``): fleet-scope work is coordinated there, and host-scope runs are kept
locally first, so they go on while the database is away.
"""

from __future__ import annotations

from pathlib import Path

from toilbox.store.base import Budget, ReadOnlyHistory, Store


def open_store(
    state_dir: Path, url: str | None = None, host_id: str = "", pooled: bool = False
) -> Store:
    """Open the configured store: SQLite in ``state_dir``, or the fleet's PostgreSQL
    (``pooled``: a connection pool for a daemon's threads; otherwise one connection, and
    no thread, so that a one-shot command may still fork its attempts)."""
    from toilbox.store.sqlite import SqliteStore

    if url is None:
        return SqliteStore.open(state_dir)
    from toilbox.store.fleet_store import FleetStore
    from toilbox.store.postgres import PostgresStore

    local = SqliteStore.open(state_dir, outbox=True)
    try:
        shared = PostgresStore.open(url, pooled=pooled, name=f"toilbox {host_id}")
    except BaseException:
        local.close()
        raise
    return FleetStore(shared, local, host_id)


def open_history(state_dir: Path, url: str | None = None) -> ReadOnlyHistory:
    """The store, for reading only (a plugin's ``ctx.history()``)."""
    if url is None:
        from toilbox.store.sqlite import SqliteStore

        return SqliteStore.open(state_dir)
    from toilbox.store.postgres import PostgresStore

    return PostgresStore.open(url)


def recover_abandoned(store: Store, host: str) -> list[str]:
    """Close runs left ``running`` on this host by a process that died: their task lock
    is free.  (A fleet run's lease says whether it is alive: the fleet sweep decides.)"""
    import structlog

    log = structlog.get_logger("toilbox.store")
    abandoned = []
    for run in store.running(host):
        if run.scope == "fleet":
            continue
        if store.holder(run.task) is None:
            store.mark_abandoned(
                run.run_id, f"abandoned: pid {run.pid} died while the run was in progress"
            )
            abandoned.append(run.run_id)
            log.warning("run.abandoned", task=run.task, run_id=run.run_id, pid=run.pid)
    return abandoned


__all__ = ["Budget", "ReadOnlyHistory", "Store", "open_history", "open_store", "recover_abandoned"]
