"""check.process against real child processes: a copy of sleep under a name no one else uses."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from pydantic import ValidationError

import toilbox
from tests.checks import context, metric
from toilbox import Metric, Status
from toilbox_checks import process
from toilbox_checks.process import Params

MiB = 1024**2



def check(tmp_path: Path, **params: Any) -> toilbox.Result:
    return process.run(context(tmp_path), Params.model_validate(params))



@pytest.fixture
def sleeper(tmp_path: Path) -> str:
    """A copy of sleep named tbx-<random> (under 15 characters: the kernel's comm)."""
    name = f"tbx-{secrets.token_hex(4)}"
    shutil.copy(shutil.which("sleep") or "/bin/sleep", tmp_path / name)
    return name


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start real child processes; all are killed and reaped after the test."""
    children: list[subprocess.Popen[bytes]] = []

    def start(*argv: str) -> subprocess.Popen[bytes]:
        child = subprocess.Popen(argv, cwd=tmp_path)  # returns once the program is exec'd
        children.append(child)
        return child

    yield start
    for child in children:
        child.kill()
        child.wait()


def test_found_by_name(tmp_path: Path, sleeper: str, spawn: Callable[..., Any]) -> None:
    child = spawn(str(tmp_path / sleeper), "30")
    result = check(tmp_path, name=sleeper)
    assert result.status is Status.OK
    rss = psutil.Process(child.pid).memory_info().rss
    assert result.summary.startswith(f"1 process named {sleeper}, RSS ")
    assert result.data["pids"] == [child.pid]
    assert result.data["count"] == 1
    assert metric(result, "count") == Metric(1, "", None, "1:", 0)
    assert metric(result, "rss_bytes").value == pytest.approx(rss, rel=0.5)
    assert metric(result, "rss_bytes").unit == "B"


def test_none_running_is_critical(tmp_path: Path, sleeper: str) -> None:
    result = check(tmp_path, name=sleeper)
    assert result.status is Status.CRITICAL
    assert result.summary == f"0 processes named {sleeper}; expected at least 1"
    assert metric(result, "rss_bytes").value == 0


def test_min_zero_accepts_none(tmp_path: Path, sleeper: str) -> None:
    assert check(tmp_path, name=sleeper, min=0).status is Status.OK


def test_found_by_command_line(tmp_path: Path, spawn: Callable[..., Any]) -> None:
    marker = f"{secrets.randbelow(10**6)}.{secrets.randbelow(10**6)}"  # sleep takes fractions
    child = spawn("sleep", f"3{marker}")
    result = check(tmp_path, cmdline=rf"^sleep 3{marker}$")
    assert result.status is Status.OK, result.summary
    assert result.data["pids"] == [child.pid]
    assert result.summary.startswith(f"1 process with a command line matching '^sleep 3{marker}$'")


def test_name_and_command_line_must_both_match(
    tmp_path: Path, sleeper: str, spawn: Callable[..., Any]
) -> None:
    spawn(str(tmp_path / sleeper), "30")
    spawn(str(tmp_path / sleeper), "31")
    assert check(tmp_path, name=sleeper, cmdline=r" 31$").data["count"] == 1
    assert check(tmp_path, name=sleeper, cmdline=r" 3\d$").data["count"] == 2
    assert check(tmp_path, name="sleep", cmdline=f"{sleeper} 30").data["count"] == 0


@pytest.mark.parametrize(
    ("counts", "running", "status", "words"),
    [
        ({"min": 2}, 2, Status.OK, ""),
        ({"min": 3}, 2, Status.CRITICAL, "; expected at least 3"),
        ({"max": 1}, 2, Status.CRITICAL, "; expected at most 1"),
        ({"min": 2, "max": 2}, 2, Status.OK, ""),
        ({"min": 0, "max": 0}, 1, Status.CRITICAL, "; expected at most 0"),
    ],
)
def test_count_thresholds(
    tmp_path: Path, sleeper: str, spawn: Callable[..., Any],
    counts: dict[str, int], running: int, status: Status, words: str,
) -> None:
    for _ in range(running):
        spawn(str(tmp_path / sleeper), "30")
    result = check(tmp_path, name=sleeper, **counts)
    assert result.status is status
    assert result.summary.startswith(f"{running} process")
    assert result.summary.endswith(words)
    count = metric(result, "count")
    assert count.crit == f"{counts.get('min', 1)}:{counts.get('max', '')}"


def test_rss_thresholds(tmp_path: Path, sleeper: str, spawn: Callable[..., Any]) -> None:
    spawn(str(tmp_path / sleeper), "30")
    spawn(str(tmp_path / sleeper), "30")
    ok = check(tmp_path, name=sleeper, rss_warning="1GiB", rss_critical="2GiB")
    warn = check(tmp_path, name=sleeper, rss_warning="1KiB", rss_critical="2GiB")
    crit = check(tmp_path, name=sleeper, rss_warning="1KiB", rss_critical="2KiB")
    assert ok.status is Status.OK
    assert warn.status is Status.WARNING
    assert warn.summary.endswith("; RSS over the warning threshold of 1.0 KiB")
    assert crit.status is Status.CRITICAL
    assert crit.summary.endswith("; RSS over the critical threshold of 2.0 KiB")
    rss = metric(crit, "rss_bytes")
    assert (rss.warn, rss.crit, rss.min) == (1024, 2048, 0)
    # Two processes: the RSS is their sum, each at least a few hundred KiB.
    one = check(tmp_path, name=sleeper, cmdline="NO MATCH", min=0)
    assert metric(one, "rss_bytes").value == 0
    assert rss.value > 256 * 1024


def test_the_rss_is_of_the_matched_processes(tmp_path: Path, spawn: Callable[..., Any]) -> None:
    # A Python child that holds 64 MiB: its RSS shows in the metric.
    code = "import sys, time; b = bytearray(64 << 20); sys.stdout.write('ready'); sys.stdout.flush(); time.sleep(30)"
    marker = secrets.token_hex(4)
    child = subprocess.Popen([sys.executable, "-c", code, marker], stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None
        assert child.stdout.read(5) == b"ready"
        result = check(tmp_path, cmdline=marker, rss_warning="32MiB")
    finally:
        child.kill()
        child.wait()
    assert result.status is Status.WARNING, result.summary
    assert metric(result, "rss_bytes").value > 64 * MiB


# --- pidfiles ---


def test_found_by_pidfile(tmp_path: Path, sleeper: str, spawn: Callable[..., Any]) -> None:
    child = spawn(str(tmp_path / sleeper), "30")
    pidfile = tmp_path / "app.pid"
    pidfile.write_text(f"{child.pid}\n")
    result = check(tmp_path, pidfile=str(pidfile))
    assert result.status is Status.OK
    assert result.summary.startswith(f"1 process from {pidfile} (pid {child.pid}), RSS ")
    assert result.data["pids"] == [child.pid]
    # With a name, the pid must also be that program (a pid is reused once its process dies).
    assert check(tmp_path, pidfile=str(pidfile), name=sleeper).status is Status.OK
    assert check(tmp_path, pidfile=str(pidfile), name="nginx").status is Status.CRITICAL


def test_a_pidfile_of_a_dead_process(tmp_path: Path, sleeper: str, spawn: Callable[..., Any]) -> None:
    child = spawn(str(tmp_path / sleeper), "30")
    pidfile = tmp_path / "app.pid"
    pidfile.write_text(str(child.pid))
    child.kill()
    os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # dead, not yet reaped: a zombie
    result_zombie = check(tmp_path, pidfile=str(pidfile))
    child.wait()
    result_gone = check(tmp_path, pidfile=str(pidfile))
    for result in (result_zombie, result_gone):
        assert result.status is Status.CRITICAL
        assert result.summary == f"0 processes from {pidfile} (pid {child.pid}); expected at least 1"


@pytest.mark.parametrize(
    ("content", "problem"),
    [(None, "does not exist"), ("", "holds no pid: ''"), ("nginx\n", "holds no pid: 'nginx'"), ("0", "holds no pid: '0'")],
)
def test_a_pidfile_without_a_pid(tmp_path: Path, content: str | None, problem: str) -> None:
    pidfile = tmp_path / "app.pid"
    if content is not None:
        pidfile.write_text(content)
    result = check(tmp_path, pidfile=str(pidfile))
    assert result.status is Status.CRITICAL
    assert result.summary == f"0 processes from {pidfile}; {pidfile} {problem}; expected at least 1"
    # A missing pidfile means nothing runs (fine for min 0); one holding no pid says nothing.
    expected = Status.OK if content is None else Status.CRITICAL
    assert check(tmp_path, pidfile=str(pidfile), min=0).status is expected


def test_the_check_does_not_count_itself(tmp_path: Path) -> None:
    ours = re.escape(" ".join(psutil.Process().cmdline()))
    result = check(tmp_path, cmdline=f"^{ours}$", min=0)
    assert os.getpid() not in result.data["pids"]


# --- params ---


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({}, "set name, cmdline or pidfile"),
        ({"name": "x", "min": -1}, "greater than or equal to 0"),
        ({"name": "x", "min": 3, "max": 2}, "max (2) is less than min (3)"),
        ({"cmdline": "[unclosed"}, "not a valid regular expression: unterminated character set"),
        ({"name": "x", "rss_warning": "lots"}, 'expected a size like 500MB or 2GiB, got "lots"'),
        ({"name": "x", "rss_warning": "2GiB", "rss_critical": "1GiB"}, "rss_warning (2.0 GiB) is more than rss_critical (1.0 GiB)"),
        ({"name": "x", "user": "root"}, "Extra inputs are not permitted"),
    ],
)
def test_bad_params(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as info:
        Params.model_validate(raw)
    assert message in str(info.value)


def test_defaults() -> None:
    params = Params(name="x")
    assert (params.min, params.max, params.rss_warning, params.rss_critical) == (1, None, None, None)
