"""The state store: a port (``Store``) and the factory that opens its backend.

SQLite in the state directory is the default and needs nothing configured.
"""

from __future__ import annotations

from pathlib import Path

from toilbox.store.base import Store


def open_store(state_dir: Path) -> Store:
    """Open the configured store (today: SQLite in ``state_dir``)."""
    from toilbox.store.sqlite import SqliteStore

    return SqliteStore.open(state_dir)


__all__ = ["Store", "open_store"]
