"""``toilbox fleet``: the daemons that share this store, as the store saw them.

A host's config hash covers what every daemon of a fleet should agree on (the tasks and
policies, not host_id or state_dir); a hash that differs from the one most live hosts
report is flagged, so a half-rolled-out config is seen before it surprises anyone.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from toilbox.app import App
from toilbox.store import Store


def fleet_view(app: App, store: Store | None = None) -> dict[str, Any]:
    store = store or app.store()
    hosts = store.hosts()
    alive = [h for h in hosts if h.alive]
    usual = Counter(h.config_hash for h in (alive or hosts)).most_common(1)
    expected = usual[0][0] if usual else None
    return {
        "fleet_mode": app.fleet,
        "store": store.location,
        "this_host": app.host_id,
        "hosts_alive": len(alive),
        "hosts_seen": len(hosts),
        "config_mismatch": sorted(h.host_id for h in hosts if h.config_hash != expected),
        "hosts": [
            {**h.to_json(), "config_differs": h.config_hash != expected} for h in hosts
        ],
    }
