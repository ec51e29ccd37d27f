"""No process an attempt starts outlives it: not through setsid, a double fork or by
ignoring SIGTERM, whether the attempt times out, returns, is interrupted or loses its
parent (issue 11, item 14).  Real `toilbox` processes, real escapes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import TOILBOX
from tests.test_daemon import DaemonProcess, runs
from tests.test_runner import pid_alive, wait_for
from toilbox.isolation import KILL_GRACE_S

ESCAPES = "[setsid, double-fork, ignore-term]"


def escaped(tmp_path: Path) -> dict[int, dict[str, int]]:
    """The processes each attempt started to escape: {plugin pid: {kind: pid}}."""
    found = {}
    for path in tmp_path.glob("marker.escaped.*"):
        if path.suffix[1:].isdigit():
            rows = (line.split() for line in path.read_text().splitlines())
            found[int(path.suffix[1:])] = {kind: int(pid) for kind, pid in rows}
    return found


def escaped_pids(tmp_path: Path) -> list[int]:
    return [pid for kinds in escaped(tmp_path).values() for pid in kinds.values()]


def really_escaped(pid: int, plugin_pid: int) -> bool:
    """Out of the task's session, so out of reach of a signal to its process group."""
    return os.getsid(pid) != os.getsid(plugin_pid)


@pytest.fixture(autouse=True)
def _no_sleeper_left(tmp_path: Path) -> Iterator[None]:
    """Whatever a failing test leaves behind is not left on this shared machine."""
    yield
    for pid in escaped_pids(tmp_path):
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def config(write_config, tmp_path):
    marker = tmp_path / "marker"
    return write_config(f"""
        shutdown_grace: 1s
        defaults:
          retry: {{attempts: 1}}
        tasks:
          timeout: {{uses: check.faults, timeout: 1s,
                    with: {{mode: hang, marker: "{marker}", escapes: {ESCAPES}}}}}
          returns: {{uses: check.faults, with: {{marker: "{marker}", escapes: {ESCAPES}}}}}
          slow: {{uses: check.faults, timeout: 60s,
                 with: {{mode: hang, marker: "{marker}", escapes: {ESCAPES}}}}}
          scheduled: {{uses: check.faults, schedule: every 1s, timeout: 1s,
                      with: {{mode: hang, marker: "{marker}", escapes: {ESCAPES}}}}}
    """)


def start_run(config: Path, tmp_path: Path, task: str) -> subprocess.Popen[str]:
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path)}
    process = subprocess.Popen([*TOILBOX, "-c", str(config), "run", task, "--json"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    wait_for(lambda: escaped(tmp_path), 15)
    return process


@pytest.mark.slow
def test_a_timeout_kills_every_descendant_however_it_hid(toilbox, config, tmp_path):
    started = time.monotonic()
    result = toilbox("-c", str(config), "run", "timeout", "--json")
    elapsed = time.monotonic() - started
    assert result.code == 2, result.err
    assert json.loads(result.out)["error"]["type"] == "timeout"
    [(plugin_pid, kinds)] = escaped(tmp_path).items()
    assert set(kinds) == {"setsid", "double-fork", "ignore-term"}
    # Gone, not just dying, when `toilbox run` returns: the reaper has reaped them all.
    alive = {kind: pid for kind, pid in kinds.items() if pid_alive(pid)}
    assert alive == {}, f"left behind after the timeout: {alive}"
    assert not pid_alive(plugin_pid)
    # One grace for the process that ignores SIGTERM, not one per process.
    assert elapsed < 1 + KILL_GRACE_S + 5


def test_processes_left_behind_by_a_normal_exit_are_killed_at_once(toilbox, config, tmp_path):
    result = toilbox("-c", str(config), "run", "returns", "--json")
    assert result.code == 0, result.err
    record = json.loads(result.out)
    assert record["status"] == "ok"
    alive = [pid for pid in escaped_pids(tmp_path) if pid_alive(pid)]
    assert alive == [], "what a task leaves running is killed when it returns"
    # SIGKILL at once: no grace is spent on the one that ignores SIGTERM.
    assert record["duration_s"] < KILL_GRACE_S


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_an_interrupted_run_kills_every_descendant(config, tmp_path, signum):
    process = start_run(config, tmp_path, "slow")
    [(plugin_pid, kinds)] = escaped(tmp_path).items()
    assert all(really_escaped(pid, plugin_pid) for pid in kinds.values())
    process.send_signal(signum)
    out, _ = process.communicate(timeout=30)
    assert process.returncode == 3
    assert json.loads(out)["error"]["type"] == "interrupted"
    alive = [pid for pid in kinds.values() if pid_alive(pid)]
    assert alive == [], "left behind by an interrupted run"


@pytest.mark.slow
def test_a_killed_runner_takes_every_descendant_down(config, tmp_path):
    process = start_run(config, tmp_path, "slow")
    process.kill()
    process.communicate(timeout=30)
    # The reaper's parent-death signal: SIGKILL to all, no grace.
    wait_for(lambda: not any(pid_alive(pid) for pid in escaped_pids(tmp_path)), 10)


@pytest.mark.slow
def test_the_daemon_kills_every_descendant_on_timeout_and_on_shutdown(config, tmp_path):
    daemon = DaemonProcess(config, tmp_path)
    try:
        daemon.wait_started()
        wait_for(lambda: [r for r in runs(tmp_path, "scheduled") if r.error], 20)
        first = [r for r in runs(tmp_path, "scheduled") if r.error][-1]
        assert first.error["type"] == "timeout"
        first_plugin = int((tmp_path / "marker").read_text().split()[0])
        first_escapes = escaped(tmp_path)[first_plugin]
        assert [p for p in first_escapes.values() if pid_alive(p)] == [], "after a timeout"
        # The next run is in flight when the daemon is told to stop.
        wait_for(lambda: len(escaped(tmp_path)) >= 2, 20)
        assert daemon.stop() == 0
    finally:
        if daemon.process.poll() is None:
            daemon.process.kill()
    alive = [pid for pid in escaped_pids(tmp_path) if pid_alive(pid)]
    assert alive == [], "left behind by the daemon's shutdown"
