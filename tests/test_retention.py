"""History does not grow without bound (issue 11, item 19): old runs and slots are
pruned by a real daemon in small batches, the file shrinks, and fires stay on time."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from tests.fleet_support import FleetDaemon, plugin_dir, wait_for
from toilbox.models import RunRecord, utc_iso
from toilbox.store.sqlite import SqliteStore

pytestmark = pytest.mark.slow


def test_old_history_is_pruned_in_batches_without_delaying_fires(tmp_path):
    state = tmp_path / "state"
    store = SqliteStore.open(state)
    old = datetime.now(UTC) - timedelta(days=3)
    template = RunRecord("x", "beat", "check.mark", "ok", "schedule", "", "m", 1,
                         output="o" * 2000, finished_at=None, duration_s=0.1)
    try:
        for index in range(30_000):
            when = utc_iso(old + timedelta(seconds=index))
            store.record(replace(template, run_id=f"old-{index}", started_at=when,
                                 finished_at=when))
            if index % 1000 == 0:
                store.claim_slot("beat", when, "s", "x", "here")
        store.record(replace(template, run_id="recent", started_at=utc_iso(datetime.now(UTC))))
        before = store.size_bytes()
    finally:
        store.close()
    plugins = plugin_dir(tmp_path)
    config = tmp_path / "keep.yaml"
    config.write_text(
        f"state_dir: {state}\nplugin_dirs: [{plugins}]\nhistory_retention: 2d\n"
        f"tasks:\n  beat: {{uses: check.mark, with: {{out: {tmp_path}/beat.jsonl}},"
        " schedule: every 1s}\n"
    )
    daemon = FleetDaemon(config, "here", tmp_path).start()
    try:
        wait_for(lambda: daemon.events("history.pruned"), 60, "the prune")
        time.sleep(3)
    finally:
        assert daemon.stop() == 0
    assert daemon.events("history.pruned")[0]["runs"] == 30_000
    store = SqliteStore.open(state)
    try:
        kept = store.history(limit=100_000)
        after = store.size_bytes()
        slots = store.last_slots(["beat"], "here")
    finally:
        store.close()
    assert not [r for r in kept if r.run_id.startswith("old-")]
    assert "recent" in {r.run_id for r in kept}
    assert slots["beat"][0] >= utc_iso(datetime.now(UTC) - timedelta(minutes=5)), "old slots go"
    assert after < before / 4, (before, after)
    lags = [e["dispatch_lag_ms"] for e in daemon.events("task.fired")]
    assert lags and max(lags) < 500, max(lags)
    assert json.loads((tmp_path / "beat.jsonl").read_text().splitlines()[-1])["event"] == "end"
