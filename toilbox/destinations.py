"""Notification destinations as they may be stored and shown.

An apprise URL carries its secret in the URL itself (``slack://T000/B000/XXXX``,
``json://host/path?key=...``, ``mailto://user:password@host``), so a destination is
only ever stored or printed as its scheme and host, and rate limits are keyed by a
hash of the whole URL.
"""

from __future__ import annotations

import hashlib


def label(url: str) -> str:
    """``scheme://host``: no path, no query, no credentials, no port."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "(unparsable destination)"
    host = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0].rsplit("@", 1)[-1]
    # An IPv6 literal keeps its brackets; any port goes.
    host = host.split("]", 1)[0] + "]" if host.startswith("[") else host.split(":", 1)[0]
    return f"{scheme.lower()}://{host}"


def key(url: str) -> str:
    """A stable key for one destination that does not reveal it."""
    return hashlib.sha256(url.encode()).hexdigest()[:32]
