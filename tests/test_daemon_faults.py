"""The daemon under faults: a second stop signal, a killed zygote (issue 11, items 15
and 18).  A real `toilbox daemon` process, real signals."""

from __future__ import annotations

import os
import signal
import time
import urllib.error
import urllib.request

import pytest

from tests.test_daemon import runs, start_daemon  # noqa: F401 -- start_daemon is a fixture
from tests.test_process_tree import escaped, escaped_pids
from tests.test_runner import child_started, pid_alive, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _no_sleeper_left(tmp_path):
    """Whatever a failing test leaves behind is not left on this shared machine."""
    yield
    marker_child = tmp_path / "marker.child"
    pids = escaped_pids(tmp_path)
    if marker_child.exists():
        pids.append(int(marker_child.read_text()))
    for pid in pids:
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("second", [signal.SIGTERM, signal.SIGINT])
def test_a_second_stop_signal_ends_the_grace_at_once(start_daemon, write_config, tmp_path,  # noqa: F811
                                                     second):
    marker = tmp_path / "marker"
    config = write_config(f"""
        shutdown_grace: 60s
        tasks:
          long: {{uses: check.faults, schedule: every 1s, timeout: 120s, retry: {{attempts: 1}},
                 with: {{mode: hang, marker: "{marker}", escapes: [setsid, double-fork]}}}}
    """)
    daemon = start_daemon(config)
    wait_for(lambda: child_started(tmp_path) and escaped(tmp_path), 15)
    task_pid = int(marker.read_text().split()[0])
    sleep_pid = int((tmp_path / "marker.child").read_text())
    daemon.process.send_signal(signal.SIGTERM)
    wait_for(lambda: daemon.events("daemon.stopping"), 10)
    time.sleep(0.5)  # well into the 60 s grace
    assert daemon.process.poll() is None, "the first signal waits for the running task"
    daemon.process.send_signal(second)
    # Without the second signal this would take the whole 60 s grace.
    assert daemon.process.wait(timeout=20) == 0
    assert daemon.events("daemon.grace_cut_short")
    [run] = [r for r in runs(tmp_path, "long") if r.status != "skipped"]
    assert run.status == "unknown"
    assert run.error["type"] == "interrupted"
    left = [p for p in [task_pid, sleep_pid, *escaped_pids(tmp_path)] if pid_alive(p)]
    assert left == [], "no process of the run outlives the daemon"


def healthz(address: str) -> int:
    try:
        with urllib.request.urlopen(f"http://{address}/healthz", timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_a_killed_zygote_is_replaced_and_the_daemon_goes_on(start_daemon, write_config,  # noqa: F811
                                                            tmp_path):
    marker = tmp_path / "marker"
    config = write_config(f"""
        http: {{listen: "127.0.0.1:0"}}
        shutdown_grace: 1s
        defaults:
          retry: {{attempts: 3, backoff: 0.2s, max_backoff: 0.2s}}
        tasks:
          tick: {{uses: check.faults, schedule: every 1s}}
          long: {{uses: check.faults, schedule: every 1s, timeout: 60s, retry: {{attempts: 2}},
                 with: {{mode: hang, marker: "{marker}", escapes: [setsid, double-fork]}}}}
    """)
    daemon = start_daemon(config)
    address = daemon.events("http.listening")[0]["address"]
    wait_for(lambda: escaped(tmp_path) and runs(tmp_path, "tick", "ok"), 15)
    assert healthz(address) == 200
    first_attempt = escaped_pids(tmp_path)
    [zygote] = [e["pid"] for e in daemon.events("zygote.started") if not e.get("spare")]
    [spare] = [e["pid"] for e in daemon.events("zygote.started") if e.get("spare")]

    # The spare dies: the zygote makes another.
    os.kill(spare, signal.SIGKILL)
    wait_for(lambda: len(daemon.events("zygote.started")) == 3, 10)

    # The zygote dies: the spare takes over, and the attempts it was running die with it.
    os.kill(zygote, signal.SIGKILL)
    wait_for(lambda: daemon.events("zygote.restarted"), 10)
    assert daemon.events("zygote.restarted")[0]["died"] == zygote
    wait_for(lambda: not any(pid_alive(p) for p in first_attempt), 10)
    wait_for(lambda: healthz(address) == 200, 10)
    ticks = len(runs(tmp_path, "tick", "ok"))
    wait_for(lambda: len(runs(tmp_path, "tick", "ok")) >= ticks + 3, 15)
    # The run in flight saw a transient crash, and its retry runs on the new zygote.
    wait_for(lambda: len(marker.read_text().split()) == 2, 15)
    lost = [e for e in daemon.events("attempt.failed") if e["task"] == "long"]
    assert lost[0]["error_type"] == "crashed"
    assert "the zygote died during the attempt" in lost[0]["message"]
    assert daemon.process.poll() is None
    assert not daemon.events("zygote.died")

    assert daemon.stop() == 0
    crashed = [r for r in runs(tmp_path) if r.error and r.error["type"] == "crashed"]
    assert crashed == [], "no run is recorded as crashed: the retry policy took over"
    [long_run] = [r for r in runs(tmp_path, "long") if r.status != "skipped"]
    assert long_run.attempts == 2
    assert long_run.error["type"] == "interrupted"
