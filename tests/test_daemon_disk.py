"""A full state filesystem under a real daemon (issue 11, item 16): one line at start,
and while it runs: /healthz says so, nothing is lost, and it recovers by itself."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import TOILBOX
from tests.fleet_support import FleetDaemon, ledger, plugin_dir, wait_for
from toilbox.store.sqlite import SqliteStore

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root to mount a tiny tmpfs as a disk"),
]


@pytest.fixture
def small_disk(tmp_path):
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(state)],
                      check=False, capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    yield state
    subprocess.run(["umount", "-l", str(state)], check=False)


def fill(directory: Path) -> Path:
    """Write until the filesystem says it is full."""
    filler = directory / "filler"
    with filler.open("wb") as out:
        try:
            while True:
                out.write(b"\0" * 65536)
                out.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


def config_for(tmp_path: Path, state: Path) -> Path:
    plugins = plugin_dir(tmp_path)
    config = tmp_path / "disk.yaml"
    config.write_text(
        f"state_dir: {state}\nplugin_dirs: [{plugins}]\n"
        "http: {listen: '127.0.0.1:0'}\n"
        "defaults: {retry: {attempts: 1}}\n"
        "tasks:\n"
        f"  beat: {{uses: check.mark, with: {{out: {tmp_path}/beat.jsonl}}, schedule: every 1s}}\n"
        f"  long: {{uses: check.mark, with: {{out: {tmp_path}/long.jsonl, sleep: 4}},"
        " schedule: every 30s}\n"
    )
    return config


def healthz(base: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(base + "/healthz", timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_a_daemon_started_on_a_full_disk_says_so_in_one_line(small_disk, tmp_path):
    config = config_for(tmp_path, small_disk)
    fill(small_disk)
    done = subprocess.run([*TOILBOX, "-c", str(config), "daemon"], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 3
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("toilbox: error")]
    assert len(lines) == 1 and "No space left on device" in lines[0], done.stderr


def test_the_disk_filling_under_a_running_daemon_loses_nothing(small_disk, tmp_path):
    config = config_for(tmp_path, small_disk)
    daemon = FleetDaemon(config, "disk", tmp_path).start()
    try:
        base = "http://" + daemon.events("http.listening")[0]["address"]
        wait_for(lambda: ledger(tmp_path / "long.jsonl"), 40, "the long run to start")
        in_flight = ledger(tmp_path / "long.jsonl")[0]
        filler = fill(small_disk)
        filled_at = time.time()
        wait_for(lambda: healthz(base)[0] == 503, 15, "/healthz to report the store")
        assert "store failing (runs cannot be recorded)" in healthz(base)[1]
        wait_for(lambda: [x for x in ledger(tmp_path / "long.jsonl") if x["event"] == "end"],
                 15, "the long run to end while the disk is full")
        time.sleep(2)
        filler.unlink()
        freed_at = time.time()
        # Recovery is the upkeep's next write (a second) once space returns; the margin is
        # for a loaded CI machine, where this once took past 20 s.
        wait_for(lambda: healthz(base)[0] == 200, 45, "/healthz to recover")
        wait_for(lambda: [x for x in ledger(tmp_path / "beat.jsonl") if x["at"] > freed_at + 1],
                 15, "runs to go on")
        assert daemon.process is not None and daemon.process.poll() is None, "no restart"
    finally:
        assert daemon.stop() == 0
    store = SqliteStore.open(small_disk)
    try:
        runs = store.history(limit=10_000)
    finally:
        store.close()
    long_run = next(r for r in runs if r.run_id == in_flight["run_id"])
    assert long_run.status == "ok", long_run  # recorded late, not "abandoned: pid died"
    assert daemon.events("run.recorded_late")
    beat = [r for r in runs if r.task == "beat"]
    missed = [r for r in beat if r.status == "missed"]
    assert missed, "fires the store could not take are recorded as missed"
    covered = sum(r.data["count"] for r in missed)
    assert covered >= int(freed_at - filled_at) - 3
    assert not [r for r in runs if r.status == "running"]
    assert not [r for r in runs if (r.error or {}).get("type") == "abandoned"]
    with contextlib.suppress(FileNotFoundError):
        json.loads((tmp_path / "beat.jsonl").read_text().splitlines()[-1])
