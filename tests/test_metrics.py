"""The daemon's /metrics: valid for Prometheus' own linter, and meaningful after a restart."""

from __future__ import annotations

import shutil
import subprocess
import urllib.request
from datetime import datetime

import pytest

from tests.test_daemon import DaemonProcess, runs
from tests.test_runner import wait_for

pytestmark = pytest.mark.slow


def scrape(daemon: DaemonProcess) -> str:
    address = daemon.events("http.listening")[-1]["address"]
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as response:
        return response.read().decode()


def samples(body: str, name: str) -> dict[str, float]:
    """``{labels: value}`` of one metric family's samples."""
    found = {}
    for line in body.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            labels, _, value = line.rpartition(" ")
            found[labels[len(name):]] = float(value)
    return found


def start(config, tmp_path, name) -> DaemonProcess:
    daemon = DaemonProcess(config, tmp_path, name)
    daemon.wait_started()
    return daemon


def test_metrics_survive_a_restart_and_pass_promtool(write_config, tmp_path):
    config = write_config("""
        http: {listen: "127.0.0.1:0"}
        tasks:
          good: {uses: check.faults, schedule: every 1s}
          bad: {uses: check.faults, schedule: every 1s, with: {status: critical}}
          manual: {uses: check.faults}
    """)
    first = start(config, tmp_path, "first")
    try:
        wait_for(lambda: runs(tmp_path, "good", "ok") and runs(tmp_path, "bad", "critical"), 20)
        before = scrape(first)
    finally:
        assert first.stop() == 0
    last_ok = runs(tmp_path, "good", "ok")[0].finished_at
    second = start(config, tmp_path, "second")
    try:
        after = scrape(second)  # straight away: no run of this daemon has finished yet
    finally:
        assert second.stop() == 0
    seeded = samples(after, "toilbox_last_success_timestamp_seconds")
    assert seeded['{task="good"}'] >= datetime.fromisoformat(last_ok).timestamp() - 0.001
    assert '{task="bad"}' not in seeded, "never succeeded: no series, so absent() can alert"
    assert samples(after, "toilbox_task_state") == {'{task="bad"}': 2.0, '{task="good"}': 0.0}
    from toilbox import __version__

    assert f'version="{__version__}"' in next(iter(samples(after, "toilbox_build_info")))
    assert "_created" not in before + after
    assert samples(before, "toilbox_runs_total")['{status="critical",task="bad"}'] >= 1

    if shutil.which("promtool") is None:
        pytest.skip("promtool (Debian: prometheus) is not installed")
    for body in (before, after):
        checked = subprocess.run(["promtool", "check", "metrics"], input=body,
                                 capture_output=True, text=True, check=False)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert checked.stdout + checked.stderr == "", "no lint warnings either"


def test_manual_runs_count_for_last_success_after_a_restart(write_config, tmp_path, toilbox):
    config = write_config("""
        http: {listen: "127.0.0.1:0"}
        tasks:
          nightly: {uses: check.faults}
    """)
    assert toilbox("-c", str(config), "run", "nightly").code == 0
    assert runs(tmp_path, "nightly", "ok")
    daemon = start(config, tmp_path, "daemon")
    try:
        body = scrape(daemon)
    finally:
        assert daemon.stop() == 0
    assert '{task="nightly"}' in samples(body, "toilbox_last_success_timestamp_seconds")
