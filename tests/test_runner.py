"""The runner against real misbehaving plugins, through the real `toilbox` command."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import TOILBOX


def pid_alive(pid: int) -> bool:
    try:
        with Path(f"/proc/{pid}/stat").open() as stat:
            return stat.read().split(") ")[1][0] != "Z"  # a zombie is dead, just not reaped
    except FileNotFoundError:
        return False


def wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def child_started(tmp_path: Path) -> bool:
    """The plugin wrote the pid of the child it started (written, not just created)."""
    try:
        return (tmp_path / "marker.child").read_text().strip().isdigit()
    except FileNotFoundError:
        return False


def run_json(toilbox, config: Path, task: str, *extra: str) -> tuple[int, dict]:
    result = toilbox("-c", str(config), "run", task, "--json", *extra)
    assert "Traceback" not in result.err, result.err
    return result.code, json.loads(result.out)


@pytest.fixture
def config(write_config, tmp_path):
    marker = tmp_path / "marker"
    return write_config(f"""
        defaults:
          timeout: 1s
          retry: {{attempts: 3, backoff: 0s, max_backoff: 0s}}
        tasks:
          ok: {{uses: check.faults}}
          warn: {{uses: check.faults, with: {{status: warning, summary: getting full}}}}
          crit: {{uses: check.faults, with: {{status: critical}}}}
          unknown: {{uses: check.faults, with: {{status: unknown}}}}
          hang: {{uses: check.faults, with: {{mode: hang, marker: "{marker}"}}, retry: {{attempts: 1}}}}
          exit: {{uses: check.faults, with: {{mode: exit, marker: "{marker}"}}}}
          segfault: {{uses: check.faults, with: {{mode: segfault}}, retry: {{attempts: 1}}}}
          sigkill: {{uses: check.faults, with: {{mode: sigkill}}, retry: {{attempts: 1}}}}
          raise: {{uses: check.faults, with: {{mode: raise, marker: "{marker}"}}}}
          flaky: {{uses: check.faults, with: {{mode: flaky, fail_times: 2, marker: "{marker}"}}}}
          fail: {{uses: check.faults, with: {{mode: fail, marker: "{marker}"}}}}
          garbage: {{uses: check.faults, with: {{mode: garbage}}}}
          unserialisable: {{uses: check.faults, with: {{mode: unserialisable}}}}
          flood: {{uses: check.faults, with: {{mode: flood}}, timeout: 60s}}
          slow: {{uses: check.faults, with: {{mode: hang, marker: "{marker}"}}, timeout: 60s, retry: {{attempts: 1}}}}
    """)


def attempts_made(tmp_path: Path) -> int:
    return len((tmp_path / "marker").read_text().splitlines())


@pytest.mark.parametrize(
    ("task", "code", "status"),
    [("ok", 0, "ok"), ("warn", 1, "warning"), ("crit", 2, "critical"), ("unknown", 3, "unknown")],
)
def test_exit_code_follows_nagios(toilbox, config, task, code, status):
    got_code, result = run_json(toilbox, config, task)
    assert got_code == code
    assert result["status"] == status
    assert set(result) >= {"task", "run_id", "status", "attempts", "duration_s", "summary",
                           "metrics", "data", "error"}
    assert result["metrics"]["answer"] == {"value": 42, "unit": "s", "warn": 50, "crit": 60,
                                           "min": None, "max": None}
    assert result["error"] is None


def test_human_output_and_dry_run_reaches_the_plugin(toilbox, config):
    result = toilbox("-c", str(config), "run", "warn")
    assert result.code == 1
    assert "WARNING warn: getting full" in result.out
    assert "answer = 42s (warn above 50, crit above 60)" in result.out
    _, dry = run_json(toilbox, config, "ok", "--dry-run")
    assert dry["data"]["dry_run"] is True
    _, real = run_json(toilbox, config, "ok")
    assert real["data"]["dry_run"] is False


@pytest.mark.slow
def test_timeout_kills_the_task_and_everything_it_started(toilbox, config, tmp_path):
    started = time.monotonic()
    code, result = run_json(toilbox, config, "hang")
    assert code == 2
    assert result["error"]["type"] == "timeout"
    assert time.monotonic() - started < 10
    task_pid = int((tmp_path / "marker").read_text())
    sleep_pid = int((tmp_path / "marker.child").read_text())
    assert not pid_alive(task_pid)
    assert not pid_alive(sleep_pid), "the plugin's own child must die with its process group"


def test_crashes_are_recorded_and_retried(toilbox, config, tmp_path):
    code, result = run_json(toilbox, config, "exit")
    assert code == 3, "a check that crashed could not check: UNKNOWN"
    assert result["error"] == {"type": "crashed",
                               "message": "the task process exited with code 7 without a result"}
    assert result["attempts"] == 3
    assert attempts_made(tmp_path) == 3
    _, segv = run_json(toilbox, config, "segfault")
    assert segv["error"]["message"] == "the task process was killed by SIGSEGV"
    _, killed = run_json(toilbox, config, "sigkill")
    assert killed["error"]["message"] == "the task process was killed by SIGKILL"


def test_exceptions_retry_until_success(toilbox, config, tmp_path):
    code, result = run_json(toilbox, config, "flaky")
    assert code == 0
    assert result["attempts"] == 3
    assert result["data"]["attempt"] == 3


def test_a_tasks_own_retry_durations_are_read_as_durations(toilbox, write_config, tmp_path):
    """A per-task ``retry`` with durations once reached tenacity as text ("0s") and crashed
    the runner."""
    config = write_config(f"""
        tasks:
          flaky:
            uses: check.faults
            with: {{mode: flaky, fail_times: 1, marker: "{tmp_path / 'marker'}"}}
            retry: {{attempts: 2, backoff: 0s, max_backoff: 1s}}
    """)
    code, result = run_json(toilbox, config, "flaky")
    assert (code, result["attempts"], result["error"]) == (0, 2, None)


def test_exceptions_are_retried_then_fail(toilbox, config, tmp_path):
    code, result = run_json(toilbox, config, "raise")
    assert code == 3
    assert result["error"]["type"] == "exception"
    assert result["error"]["message"] == "RuntimeError: boom"
    assert "Traceback" in result["error"]["traceback"]
    assert attempts_made(tmp_path) == 3


def test_task_failed_is_not_retried(toilbox, config, tmp_path):
    code, result = run_json(toilbox, config, "fail")
    assert code == 3
    assert result["error"] == {"type": "failed", "message": "cannot work: misconfigured"}
    assert result["attempts"] == 1
    assert attempts_made(tmp_path) == 1


@pytest.mark.parametrize("task", ["garbage", "unserialisable"])
def test_garbage_results_are_recorded_not_crashing(toilbox, config, task):
    code, result = run_json(toilbox, config, task)
    assert code == 3
    assert result["error"]["type"] == "bad-result"
    assert result["attempts"] == 1


@pytest.mark.slow
def test_100mb_of_output_is_bounded(config, tmp_path):
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path)}
    code = (
        "import resource, subprocess, sys, json\n"
        f"done = subprocess.run({TOILBOX!r} + ['-c', {str(config)!r}, 'run', 'flood', '--json'],"
        " capture_output=True, text=True)\n"
        "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
        "print(json.dumps({'code': done.returncode, 'out': done.stdout, 'peak_kib': peak}))\n"
    )
    measured = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True,
                                         text=True, env=env, check=True).stdout)
    assert measured["code"] == 0
    assert measured["peak_kib"] < 150 * 1024, "100 MiB of output must not be held in memory"
    history = subprocess.run([*TOILBOX, "-c", str(config), "history", "flood", "--json"],
                             capture_output=True, text=True, env=env, check=True)
    record = json.loads(history.stdout)[0]
    assert record["status"] == "ok"


def test_unknown_task_is_a_usage_error(toilbox, config):
    result = toilbox("-c", str(config), "run", "nope")
    assert result.code == 3
    assert result.err.startswith('toilbox: error: unknown task "nope" in ')
    assert "(tasks: crit, exit, fail," in result.err


def test_usage_errors_exit_3_not_2(toilbox, config):
    assert toilbox("-c", str(config), "run").code == 3
    assert toilbox("-c", str(config), "run", "ok", "--no-such-flag").code == 3
    assert toilbox("no-such-command").code == 3


def start_slow_run(config: Path, tmp_path: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path)}
    process = subprocess.Popen([*TOILBOX, "-c", str(config), "run", "slow", "--json"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    wait_for(lambda: child_started(tmp_path))
    return process


@pytest.mark.slow
def test_second_run_of_a_running_task_is_refused(toilbox, config, tmp_path):
    first = start_slow_run(config, tmp_path)
    try:
        second = toilbox("-c", str(config), "run", "slow")
        assert second.code == 3
        assert 'task "slow" is already running (held by pid ' in second.err
        assert f"pid {first.pid} " in second.err
        assert "(toilbox run)" in second.err
        other = toilbox("-c", str(config), "run", "ok")
        assert other.code == 0, "another task is not blocked"
    finally:
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=20)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_kills_the_child_and_records_interrupted(toilbox, config, tmp_path, signum):
    process = start_slow_run(config, tmp_path)
    task_pid = int((tmp_path / "marker").read_text())
    sleep_pid = int((tmp_path / "marker.child").read_text())
    process.send_signal(signum)
    out, _ = process.communicate(timeout=20)
    assert process.returncode == 3
    result = json.loads(out)
    assert result["status"] == "unknown"
    assert result["error"]["type"] == "interrupted"
    assert not pid_alive(task_pid)
    assert not pid_alive(sleep_pid)
    history = json.loads(toilbox("-c", str(config), "history", "slow", "--json").out)
    assert history[0]["run_id"] == result["run_id"]
    assert history[0]["status"] == "unknown"


@pytest.mark.slow
def test_killed_runner_leaves_an_abandoned_record_and_no_orphans(toilbox, config, tmp_path):
    process = start_slow_run(config, tmp_path)
    task_pid = int((tmp_path / "marker").read_text())
    sleep_pid = int((tmp_path / "marker.child").read_text())
    process.kill()
    process.communicate(timeout=20)
    wait_for(lambda: not pid_alive(task_pid) and not pid_alive(sleep_pid))
    history = json.loads(toilbox("-c", str(config), "history", "slow", "--json").out)
    assert history[0]["status"] == "unknown"
    assert history[0]["error"]["type"] == "abandoned"
    assert f"pid {process.pid} died" in history[0]["error"]["message"]


def test_one_shot_path_does_not_import_the_scheduler(config, tmp_path):
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "toilbox", "-c", str(config),
                           "run", "ok"], capture_output=True, text=True, env=env, check=False)
    assert done.returncode == 0
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()
                if line.startswith("import time:")}
    assert "toilbox.runner" in imported
    for heavy in ("apscheduler", "prometheus_client", "toilbox.daemon", "multiprocessing"):
        assert heavy not in imported, f"{heavy} is imported by `toilbox run`"
