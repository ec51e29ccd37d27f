"""The daemon as users run it: a real `toilbox daemon` process, real signals, real time."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import TOILBOX
from tests.test_runner import child_started, pid_alive, wait_for
from toilbox.store.sqlite import SqliteStore

pytestmark = pytest.mark.slow


class DaemonProcess:
    def __init__(self, config: Path, tmp_path: Path, name: str = "daemon") -> None:
        self.log_path = tmp_path / f"{name}.log"
        self.log_file = self.log_path.open("w")
        env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "xdg")}
        self.process = subprocess.Popen(
            [*TOILBOX, "-c", str(config), "--log-format", "json", "daemon"],
            stdout=subprocess.DEVNULL, stderr=self.log_file, env=env,
        )

    def events(self, name: str | None = None) -> list[dict]:
        lines = []
        for line in self.log_path.read_text().splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if name is None or event.get("event") == name:
                lines.append(event)
        return lines

    def wait_started(self) -> None:
        wait_for(lambda: self.events("daemon.started") or self.process.poll() is not None, 15)
        assert self.process.poll() is None, self.log_path.read_text()

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signum)
        code = self.process.wait(timeout=timeout)
        self.log_file.close()
        return code


@pytest.fixture
def start_daemon(tmp_path) -> Iterator[Callable[..., DaemonProcess]]:
    started: list[DaemonProcess] = []

    def start(config: Path, name: str = "daemon") -> DaemonProcess:
        daemon = DaemonProcess(config, tmp_path, name)
        started.append(daemon)
        daemon.wait_started()
        return daemon

    yield start
    for daemon in started:
        if daemon.process.poll() is None:
            daemon.process.kill()
            daemon.process.wait()


def runs(tmp_path: Path, task: str | None = None, status: str | None = None) -> list:
    store = SqliteStore.open(tmp_path / "state")
    try:
        found = store.history(task, 1000)
    finally:
        store.close()
    return [r for r in found if status is None or r.status == status]


def test_fires_happen_on_their_slots(start_daemon, write_config, tmp_path):
    config = write_config("""
        tasks:
          tick: {uses: check.faults, schedule: every 1s}
          manual: {uses: check.faults}
    """)
    daemon = start_daemon(config)
    wait_for(lambda: len(runs(tmp_path, "tick", "ok")) >= 3, 15)
    assert daemon.stop() == 0
    ticks = runs(tmp_path, "tick", "ok")
    assert all(r.trigger == "schedule" for r in ticks)
    slots = [r.scheduled_for for r in ticks]
    assert len(set(slots)) == len(slots), "each slot runs once"
    assert all(s.endswith(":00+00:00") or s[17:19].isdigit() for s in slots)
    assert runs(tmp_path, "manual") == [], "a task without a schedule never fires"
    fired = daemon.events("task.fired")
    assert fired and all(e["dispatch_lag_ms"] < 1000 for e in fired)
    assert daemon.events("daemon.stopped")


def test_sigterm_lets_a_run_finish_within_grace(start_daemon, write_config, tmp_path):
    marker = tmp_path / "marker"
    config = write_config(f"""
        shutdown_grace: 20s
        tasks:
          slow: {{uses: check.faults, schedule: every 1s, with: {{mode: flaky, fail_times: 0, marker: "{marker}"}}}}
    """)
    daemon = start_daemon(config)
    wait_for(lambda: marker.exists(), 15)
    assert daemon.stop() == 0
    assert all(r.status in ("ok", "skipped") for r in runs(tmp_path, "slow"))


def test_sigterm_kills_what_outlives_the_grace(start_daemon, write_config, tmp_path):
    marker = tmp_path / "marker"
    config = write_config(f"""
        shutdown_grace: 1s
        tasks:
          hang: {{uses: check.faults, schedule: every 1s, timeout: 60s, retry: {{attempts: 1}},
                 with: {{mode: hang, marker: "{marker}"}}}}
    """)
    daemon = start_daemon(config)
    wait_for(lambda: child_started(tmp_path), 15)
    task_pid = int(marker.read_text().split()[0])
    sleep_pid = int((tmp_path / "marker.child").read_text())
    started = time.monotonic()
    assert daemon.stop() == 0
    assert time.monotonic() - started < 10
    wait_for(lambda: not pid_alive(task_pid) and not pid_alive(sleep_pid), 10)
    interrupted = [r for r in runs(tmp_path, "hang") if r.error]
    assert interrupted[0].status == "unknown"
    assert interrupted[0].error["type"] == "interrupted"


def test_sighup_adds_and_removes_tasks_and_keeps_a_good_config(start_daemon, write_config,
                                                               tmp_path):
    config = write_config("tasks:\n  first: {uses: check.faults, schedule: every 1s}\n")
    daemon = start_daemon(config)
    wait_for(lambda: runs(tmp_path, "first", "ok"), 15)
    write_config("tasks:\n  second: {uses: check.faults, schedule: every 1s}\n")
    daemon.process.send_signal(signal.SIGHUP)
    wait_for(lambda: daemon.events("config.reloaded"), 10)
    wait_for(lambda: len(runs(tmp_path, "second", "ok")) >= 2, 15)
    first_count = len(runs(tmp_path, "first"))
    write_config("tasks:\n  second: {uses: check.faults, schedule: every 1s, colour: red}\n")
    daemon.process.send_signal(signal.SIGHUP)
    wait_for(lambda: daemon.events("config.reload_failed"), 10)
    failed = daemon.events("config.reload_failed")[0]
    assert "tasks.second.colour: unknown key" in failed["error"]
    count = len(runs(tmp_path, "second", "ok"))
    wait_for(lambda: len(runs(tmp_path, "second", "ok")) >= count + 2, 15)
    assert len(runs(tmp_path, "first")) <= first_count + 1, "a removed task stops firing"
    assert daemon.process.poll() is None
    assert daemon.stop() == 0


def test_reload_says_which_plugins_it_did_not_load(start_daemon, write_config, plugin_dir,
                                                    tmp_path):
    config = write_config("tasks:\n  first: {uses: check.faults, schedule: every 1h}\n")
    daemon = start_daemon(config)
    (plugin_dir / "newcomer.py").write_text("import toilbox\n")
    later = (plugin_dir / "faults.py").stat().st_mtime + 5
    os.utime(plugin_dir / "faults.py", (later, later))
    daemon.process.send_signal(signal.SIGHUP)
    wait_for(lambda: daemon.events("config.reload_plugins_not_loaded"), 10)
    event = daemon.events("config.reload_plugins_not_loaded")[0]
    assert event["plugins"] == [f"{plugin_dir / 'faults.py'} (changed)",
                                f"{plugin_dir / 'newcomer.py'} (new)"]
    assert event["fix"] == "restart the daemon"
    assert daemon.events("config.reloaded"), "the config itself was reloaded"
    assert daemon.stop() == 0


def test_kill_9_then_restart_gives_abandoned_and_one_catch_up(start_daemon, write_config,
                                                             tmp_path):
    marker = tmp_path / "marker"
    config = write_config(f"""
        shutdown_grace: 1s
        tasks:
          job: {{uses: check.faults, schedule: every 2s, timeout: 60s, retry: {{attempts: 1}},
                with: {{mode: hang, marker: "{marker}"}}}}
    """)
    daemon = start_daemon(config)
    wait_for(lambda: child_started(tmp_path), 15)
    task_pid = int(marker.read_text().split()[0])
    sleep_pid = int((tmp_path / "marker.child").read_text())
    daemon.stop(signal.SIGKILL)
    wait_for(lambda: not pid_alive(task_pid) and not pid_alive(sleep_pid), 10)
    time.sleep(4.5)  # at least two slots pass while the daemon is down
    (tmp_path / "marker.child").unlink()
    again = start_daemon(config, name="again")
    wait_for(lambda: child_started(tmp_path), 15)
    time.sleep(3)  # more fires come while the catch-up run is still going
    history = runs(tmp_path, "job")
    abandoned = [r for r in history if r.error and r.error["type"] == "abandoned"]
    assert len(abandoned) == 1
    catch_up = [r for r in history if r.trigger == "catch-up"]
    assert len(catch_up) == 1, [(r.trigger, r.status, r.summary) for r in history]
    missed = [r for r in history if r.status == "missed"]
    assert missed and missed[0].data["count"] >= 1
    assert [r for r in history if r.status == "skipped"], "fires during the catch-up are skipped"
    assert again.stop() == 0


def test_a_hung_task_does_not_delay_other_fires(start_daemon, write_config, tmp_path):
    config = write_config("""
        shutdown_grace: 1s
        tasks:
          hung: {uses: check.faults, schedule: every 1s, timeout: 60s, with: {mode: hang}}
          tick: {uses: check.faults, schedule: every 1s}
    """)
    daemon = start_daemon(config)
    wait_for(lambda: len(runs(tmp_path, "tick", "ok")) >= 4, 15)
    lags = [e["dispatch_lag_ms"] for e in daemon.events("task.fired") if e["task"] == "tick"]
    assert max(lags) < 500, lags
    assert daemon.stop() == 0


def test_a_second_daemon_and_a_colliding_run_are_refused(start_daemon, write_config, tmp_path,
                                                         toilbox):
    marker = tmp_path / "marker"
    config = write_config(f"""
        shutdown_grace: 1s
        tasks:
          busy: {{uses: check.faults, schedule: every 1s, timeout: 60s, with: {{mode: hang, marker: "{marker}"}}}}
    """)
    daemon = start_daemon(config)
    second = toilbox("-c", str(config), "daemon", timeout=30)
    assert second.code == 3
    assert f"toilbox daemon is already running (held by pid {daemon.process.pid} " in second.err
    wait_for(lambda: child_started(tmp_path), 15)
    one_shot = toilbox("-c", str(config), "run", "busy")
    assert one_shot.code == 3
    assert 'task "busy" is already running' in one_shot.err
    assert "(toilbox daemon)" in one_shot.err
    explained = toilbox("-c", str(config), "explain", "busy")
    assert "Daemon: running" in explained.out
    assert "Running now: held by pid" in explained.out
    assert daemon.stop() == 0


def test_healthz_and_metrics(start_daemon, write_config, tmp_path):
    config = write_config("""
        http: {listen: "127.0.0.1:0"}
        tasks:
          tick: {uses: check.faults, schedule: every 1s}
    """)
    daemon = start_daemon(config)
    address = daemon.events("http.listening")[0]["address"]
    wait_for(lambda: runs(tmp_path, "tick", "ok"), 15)
    with urllib.request.urlopen(f"http://{address}/healthz", timeout=5) as response:
        assert response.status == 200
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as response:
        body = response.read().decode()
    assert 'toilbox_runs_total{status="ok",task="tick"}' in body
    assert "toilbox_scheduler_lag_seconds_bucket" in body
    assert "toilbox_last_success_timestamp_seconds" in body
    assert daemon.stop() == 0


def test_remote_listen_needs_allow_remote(toilbox, write_config):
    config = write_config("http: {listen: '0.0.0.0:9464'}\n")
    result = toilbox("-c", str(config), "validate")
    assert result.code == 3
    assert "is not a loopback address; set allow_remote: true" in result.err


def test_sd_notify_ready_reloading_stopping(write_config, tmp_path):
    import socket

    notify_path = tmp_path / "notify.sock"
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(notify_path))
    receiver.settimeout(15)
    config = write_config("tasks:\n  tick: {uses: check.faults, schedule: every 1m}\n")
    env = {**os.environ, "NOTIFY_SOCKET": str(notify_path), "WATCHDOG_USEC": "2000000"}
    process = subprocess.Popen([*TOILBOX, "-c", str(config), "daemon"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        messages = [receiver.recv(4096).decode()]
        assert messages[0].startswith("READY=1")
        assert f"MAINPID={process.pid}" in messages[0]
        assert receiver.recv(4096).decode() == "WATCHDOG=1", "pinged within half the period"
        process.send_signal(signal.SIGHUP)
        seen = []
        while not any(m.startswith("READY=1") for m in seen):
            seen.append(receiver.recv(4096).decode())
        assert any(m.startswith("RELOADING=1\nMONOTONIC_USEC=") for m in seen)
        process.send_signal(signal.SIGTERM)
        while "STOPPING=1" not in seen:
            seen.append(receiver.recv(4096).decode())
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
        receiver.close()


@pytest.mark.skipif(not Path("/usr/bin/systemd-analyze").exists(),
                    reason="systemd-analyze is not installed here")
def test_systemd_unit_verifies(tmp_path):
    import sys

    unit = (Path(__file__).parent.parent / "configs/systemd/toilbox.service").read_text()
    assert "Type=notify" in unit
    installed = tmp_path / "toilbox.service"
    # verify checks that ExecStart exists: point it at this environment's toilbox
    installed.write_text(unit.replace("/usr/local/bin/toilbox",
                                      str(Path(sys.executable).parent / "toilbox")))
    done = subprocess.run(["systemd-analyze", "verify", str(installed)], capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_the_daemon_redacts_secrets_too(start_daemon, write_config, tmp_path, monkeypatch):
    monkeypatch.setenv("TB_DAEMON_SECRET", "d43mon-s3cret-value")
    config = write_config("""
        tasks:
          leak: {uses: check.faults, schedule: every 1s, with: {summary: "key=${TB_DAEMON_SECRET}"}}
    """)
    daemon = start_daemon(config)
    wait_for(lambda: runs(tmp_path, "leak", "ok"), 15)
    assert daemon.stop() == 0
    assert runs(tmp_path, "leak", "ok")[0].summary == "key=***"
    log_text = daemon.log_path.read_text()
    assert "key=***" in log_text
    assert "d43mon-s3cret-value" not in log_text
