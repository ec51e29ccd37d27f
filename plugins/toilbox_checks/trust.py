"""The system's trust store, loaded once per process, for the checks that verify TLS.

The daemon's zygote loads it once (a check type's ``preload``) for every check it forks;
loading it costs about 20 ms of CPU, more than the rest of a check.  It is loaded again
when its files change: the cache is keyed on the trust store's paths and modification
times (a CA bundle update, or c_rehash of a CA directory, changes them), so a long-lived
daemon does not go on trusting what the system no longer does.  A check that gets the
context must not change it: checks run in one process share it (in the daemon, each
check's process has its own copy).
"""

from __future__ import annotations

import ssl
from pathlib import Path

_loaded: dict[tuple[tuple[str | None, int | None], ...], ssl.SSLContext] = {}


def system_trust() -> ssl.SSLContext:
    """``ssl.create_default_context()``, loaded once until the trust store changes."""
    found = ssl.get_default_verify_paths()
    key = tuple((path, _mtime_ns(path)) for path in (found.cafile, found.capath))
    if key not in _loaded:
        _loaded.clear()
        _loaded[key] = ssl.create_default_context()
    return _loaded[key]


def _mtime_ns(path: str | None) -> int | None:
    try:
        return Path(path).stat().st_mtime_ns if path else None
    except OSError:
        return None
