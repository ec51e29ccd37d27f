"""check.command against real child processes: small scripts and real Nagios plugins."""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

import toilbox
from tests.checks import context
from toilbox import Metric, Status
from toilbox_checks import command
from toilbox_checks.command import CAPTURE_LIMIT, Params

NAGIOS = Path("/usr/lib/nagios/plugins")
needs_nagios_plugins = pytest.mark.skipif(
    not (NAGIOS / "check_dummy").exists(),
    reason=f"Nagios plugins not installed in {NAGIOS} (Debian: apt install monitoring-plugins-basic)",
)



def script(tmp_path: Path, body: str, name: str = "plugin.sh") -> str:
    path = tmp_path / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return str(path)


def check(tmp_path: Path, *argv: str, **params: Any) -> toilbox.Result:
    return command.run(context(tmp_path), Params(command=list(argv), **params))


# --- exit codes and output ---


@pytest.mark.parametrize("status", list(Status))
def test_exit_code_is_the_status(tmp_path: Path, status: Status) -> None:
    plugin = script(tmp_path, f"""
echo "{status.name} - load is fine | 'the load'=1.5;2;3;0 'it''s'=5%;80:;@90:100;0;100"
exit {status.value}
""")
    result = check(tmp_path, plugin)
    assert result.status is status
    assert result.summary == f"{status.name} - load is fine"
    assert result.metrics == {
        "the load": Metric(1.5, "", 2.0, 3.0, 0.0, None),
        "it's": Metric(5.0, "%", "80:", "@90:100", 0.0, 100.0),
    }
    assert result.data == {"exit_code": status.value, "output": f"{status.name} - load is fine"}


@pytest.mark.parametrize("code", [4, 127, 255])
def test_an_exit_code_outside_nagios_is_unknown(tmp_path: Path, code: int) -> None:
    result = check(tmp_path, script(tmp_path, f"echo 'it broke'; exit {code}"))
    assert result.status is Status.UNKNOWN
    assert result.summary == f"exited with code {code}, which is not a Nagios status (0-3): it broke"
    assert result.data["exit_code"] == code


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_death_by_signal_is_unknown(tmp_path: Path, sig: signal.Signals) -> None:
    result = check(tmp_path, script(tmp_path, f"echo 'OK: half done'; kill -{sig.name[3:]} $$"))
    assert result.status is Status.UNKNOWN
    assert result.summary == f"killed by {sig.name}: OK: half done"
    assert result.data["exit_code"] == -sig.value


def test_multi_line_output_with_perfdata_on_several_lines(tmp_path: Path) -> None:
    plugin = script(tmp_path, """
cat <<'EOF'
WARNING - 2 of 3 queues are slow | queue_a=12s;10;20;0
queue a: 12s behind
queue b: 15s behind
queue c: fine | 'queue b'=15s;10;20;0
queue_c=1s;10;20;0
EOF
exit 1
""")
    result = check(tmp_path, plugin)
    assert result.status is Status.WARNING
    assert result.summary == "WARNING - 2 of 3 queues are slow"
    assert result.data["output"] == (
        "WARNING - 2 of 3 queues are slow\nqueue a: 12s behind\nqueue b: 15s behind\nqueue c: fine"
    )
    assert result.metrics == {
        "queue_a": Metric(12.0, "s", 10.0, 20.0, 0.0),
        "queue b": Metric(15.0, "s", 10.0, 20.0, 0.0),
        "queue_c": Metric(1.0, "s", 10.0, 20.0, 0.0),
    }


def test_malformed_perfdata_is_counted_not_fatal(tmp_path: Path) -> None:
    plugin = script(tmp_path, "echo 'OK | a=1 b=junk lonely c=U d=2;;;;;;'")
    result = check(tmp_path, plugin)
    assert result.status is Status.OK
    assert result.summary == "OK"
    assert result.metrics == {"a": Metric(1.0)}
    assert result.data["perfdata_errors"] == 3


def test_stderr_is_kept_apart_and_summarises_when_stdout_is_empty(tmp_path: Path) -> None:
    plugin = script(tmp_path, "echo 'cannot connect: refused' >&2; echo 'second line' >&2; exit 2")
    result = check(tmp_path, plugin)
    assert result.status is Status.CRITICAL
    assert result.summary == "cannot connect: refused"
    assert result.data["output"] == ""
    assert result.data["stderr"] == "cannot connect: refused\nsecond line"


def test_stdout_wins_over_stderr(tmp_path: Path) -> None:
    result = check(tmp_path, script(tmp_path, "echo noise >&2; echo 'OK: fine'"))
    assert result.summary == "OK: fine"
    assert result.data["stderr"] == "noise"


@pytest.mark.parametrize("code", [0, 2])
def test_no_output_at_all(tmp_path: Path, code: int) -> None:
    result = check(tmp_path, script(tmp_path, f"exit {code}"))
    assert result.status is Status(code)
    assert result.summary == f"exited with code {code}"
    assert "stderr" not in result.data


def test_invalid_utf8_is_replaced(tmp_path: Path) -> None:
    result = check(tmp_path, script(tmp_path, r"printf 'OK \377\376 bytes | a=1\n'"))
    assert result.summary == "OK \ufffd\ufffd bytes"
    assert result.metrics == {"a": Metric(1.0)}


def test_a_huge_first_line_gives_a_short_summary(tmp_path: Path) -> None:
    result = check(tmp_path, script(tmp_path, "head -c 5000 /dev/zero | tr '\\0' x; echo"))
    assert len(result.summary) <= command.SUMMARY_LIMIT
    assert result.summary.endswith("…")


# --- bounded capture ---


def test_100_mb_of_stdout_is_drained_but_not_kept(tmp_path: Path) -> None:
    started = time.monotonic()
    result = check(tmp_path, script(tmp_path, "yes | head -c 100000000"))
    assert result.status is Status.OK
    assert result.summary == "y"
    assert len(result.data["output"]) <= CAPTURE_LIMIT
    assert result.data["stdout_bytes"] == 100_000_000
    assert time.monotonic() - started < 30


def test_100_mb_of_stderr_keeps_only_its_tail(tmp_path: Path) -> None:
    plugin = script(tmp_path, "yes | head -c 100000000 >&2; echo 'the real error' >&2; exit 2")
    result = check(tmp_path, plugin)
    assert result.status is Status.CRITICAL
    assert len(result.data["stderr"]) <= CAPTURE_LIMIT
    assert result.data["stderr"].endswith("y\nthe real error")


def test_both_pipes_are_drained_at_once(tmp_path: Path) -> None:
    # Reading stdout alone would deadlock: the program blocks on a full stderr pipe first.
    plugin = script(tmp_path, "yes E | head -c 10000000 >&2; echo 'OK: survived | a=1'")
    result = check(tmp_path, plugin)
    assert result.summary == "OK: survived"
    assert result.metrics == {"a": Metric(1.0)}


# --- the process ---


def test_env_is_added_to_the_inherited_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOILBOX_INHERITED", "inherited")
    plugin = script(tmp_path, 'echo "$TOILBOX_INHERITED $TOILBOX_ADDED"')
    result = check(tmp_path, plugin, env={"TOILBOX_ADDED": "added"})
    assert result.summary == "inherited added"


def test_cwd(tmp_path: Path) -> None:
    workdir = tmp_path / "work dir"
    workdir.mkdir()
    result = check(tmp_path, script(tmp_path, "pwd"), cwd=str(workdir))
    assert result.summary == str(workdir)


def test_stdin_is_empty(tmp_path: Path) -> None:
    result = check(tmp_path, script(tmp_path, "cat; echo 'OK: stdin closed'"))
    assert result.summary == "OK: stdin closed"


def test_the_child_stays_in_our_process_group(tmp_path: Path) -> None:
    # The runner enforces timeouts by killing the task's process group: the plugin must be in it.
    result = check(tmp_path, sys.executable, "-c", "import os; print(os.getpgrp())")
    assert int(result.summary) == os.getpgrp()


def test_a_descendant_holding_the_pipe_does_not_hold_the_check(tmp_path: Path) -> None:
    pidfile = tmp_path / "sleeper.pid"
    plugin = script(tmp_path, f"sleep 60 & echo $! > '{pidfile}'; echo 'OK: started'")
    started = time.monotonic()
    try:
        result = check(tmp_path, plugin)
    finally:
        if pidfile.exists():
            os.kill(int(pidfile.read_text()), signal.SIGTERM)
    assert result.status is Status.OK
    assert result.summary == "OK: started"
    assert time.monotonic() - started < 10


# --- failures that retrying cannot fix ---


def test_a_missing_program_fails_the_task(tmp_path: Path) -> None:
    with pytest.raises(toilbox.TaskFailed, match=r"cannot run /no/such/check: No such file"):
        check(tmp_path, "/no/such/check")


def test_a_program_not_on_path_fails_the_task(tmp_path: Path) -> None:
    with pytest.raises(toilbox.TaskFailed, match=r"cannot run toilbox-no-such-check"):
        check(tmp_path, "toilbox-no-such-check")


def test_a_file_that_is_not_executable_fails_the_task(tmp_path: Path) -> None:
    plugin = tmp_path / "plain.sh"
    plugin.write_text("#!/bin/sh\necho OK\n")
    with pytest.raises(toilbox.TaskFailed, match=r"cannot run .*plain.sh: Permission denied"):
        check(tmp_path, str(plugin))


def test_a_directory_fails_the_task(tmp_path: Path) -> None:
    with pytest.raises(toilbox.TaskFailed, match="cannot run"):
        check(tmp_path, str(tmp_path))


def test_a_missing_working_directory_fails_the_task(tmp_path: Path) -> None:
    with pytest.raises(toilbox.TaskFailed, match=r"cannot use working directory .*/gone"):
        check(tmp_path, script(tmp_path, "echo OK"), cwd=str(tmp_path / "gone"))


# --- params and registration ---


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"command": []}, "at least 1 item"),
        ({"command": "check_http -H localhost"}, "command is a list (argv, no shell)"),
        ({"command": [""]}, "the first item (the program) is empty"),
        ({"command": ["x"], "env": {"A": 1}}, "valid string"),
        ({"command": ["x"], "timeout": "10s"}, "Extra inputs are not permitted"),
        ({}, "Field required"),
    ],
)
def test_bad_params(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as info:
        Params.model_validate(raw)
    assert message in str(info.value)


def test_the_package_registers_the_check() -> None:
    registered: dict[str, tuple[Any, Any]] = {}

    def register(name: str, fn: Any, *, params: Any, description: str | None = None) -> None:
        registered[name] = (fn, params)

    command.register_task_types(register)
    assert registered == {"check.command": (command.run, Params)}


# --- real Nagios plugins ---


@needs_nagios_plugins
@pytest.mark.parametrize("status", list(Status))
def test_nagios_check_dummy(tmp_path: Path, status: Status) -> None:
    result = check(tmp_path, str(NAGIOS / "check_dummy"), str(status.value), "from toilbox")
    assert result.status is status
    assert result.summary == f"{status.name}: from toilbox"


@needs_nagios_plugins
def test_nagios_check_disk(tmp_path: Path) -> None:
    # Warn and alarm below 99% free: any real root filesystem is CRITICAL.
    result = check(tmp_path, str(NAGIOS / "check_disk"), "-w", "99%", "-c", "99%", "-p", "/")
    assert result.status is Status.CRITICAL
    assert result.summary.startswith("DISK CRITICAL")
    root = result.metrics["/"]
    assert isinstance(root, Metric)
    assert root.unit == "B"
    assert root.max is not None
    assert 0 < root.value <= root.max


@pytest.fixture
def tcp_server() -> Iterator[int]:
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.sendall(b"HELLO toilbox\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    server.close()


@needs_nagios_plugins
def test_nagios_check_tcp(tmp_path: Path, tcp_server: int) -> None:
    result = check(
        tmp_path, str(NAGIOS / "check_tcp"), "-H", "127.0.0.1", "-p", str(tcp_server),
        "-e", "HELLO",
    )
    assert result.status is Status.OK, result.summary
    assert result.summary.startswith("TCP OK")
    time_metric = result.metrics["time"]
    assert isinstance(time_metric, Metric)
    assert time_metric.unit == "s"
    assert time_metric.value >= 0


@needs_nagios_plugins
def test_nagios_check_tcp_refused(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]  # free now, and nothing listens once closed
    result = check(tmp_path, str(NAGIOS / "check_tcp"), "-H", "127.0.0.1", "-p", str(port))
    assert result.status is Status.CRITICAL
    assert "refused" in result.summary.lower()
