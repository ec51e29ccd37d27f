"""check.tcp against a real listening socket on loopback, and a port nobody listens on."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

import toilbox
from tests.checks import context
from toilbox import Metric, Status
from toilbox_checks import tcp
from toilbox_checks.tcp import Params


def check(tmp_path: Path, **params: Any) -> toilbox.Result:
    return tcp.run(context(tmp_path), Params.model_validate(params))


@pytest.fixture
def listening() -> Iterator[int]:
    """A port on 127.0.0.1 with a listener (the kernel completes handshakes from its backlog)."""
    with socket.create_server(("127.0.0.1", 0), backlog=16) as server:
        yield server.getsockname()[1]


@pytest.fixture
def closed_port() -> int:
    """A port that was just free on 127.0.0.1: connecting to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_listening_port_is_ok(tmp_path: Path, listening: int) -> None:
    result = check(tmp_path, host="127.0.0.1", port=listening)
    assert result.status is Status.OK
    assert result.summary.startswith(f"connected to 127.0.0.1:{listening} in ")
    assert result.summary.endswith(" ms")
    time = result.metrics["time"]
    assert isinstance(time, Metric)
    assert (time.unit, time.warn, time.crit, time.min) == ("s", None, None, 0)
    assert 0 <= time.value < 1
    assert result.data == {"host": "127.0.0.1", "port": listening, "address": "127.0.0.1"}


def test_a_name_is_resolved(tmp_path: Path, listening: int) -> None:
    result = check(tmp_path, host="localhost", port=listening)
    if result.status is Status.CRITICAL:  # localhost may resolve to ::1 first, without fallback
        pytest.skip(f"localhost does not reach 127.0.0.1 here: {result.summary}")
    assert result.status is Status.OK
    assert result.data["address"] in ("127.0.0.1", "::1")


def test_a_closed_port_is_critical(tmp_path: Path, closed_port: int) -> None:
    result = check(tmp_path, host="127.0.0.1", port=closed_port)
    assert result.status is Status.CRITICAL
    assert result.summary == f"cannot connect to 127.0.0.1:{closed_port}: connection refused"
    assert result.metrics == {}
    assert result.data["error"] == "connection refused"


def test_an_unknown_name_is_critical(tmp_path: Path) -> None:
    result = check(tmp_path, host="no-such-host.invalid", port=80, timeout="2s")
    assert result.status is Status.CRITICAL
    assert result.summary.startswith("cannot connect to no-such-host.invalid:80: cannot resolve")


@pytest.mark.parametrize(
    ("thresholds", "status", "words"),
    [
        ({"warning": "0s"}, Status.WARNING, "(the warning threshold is 0.0 ms)"),
        ({"warning": "0s", "critical": "0s"}, Status.CRITICAL, "(the critical threshold is 0.0 ms)"),
        ({"warning": "5s", "critical": "10s"}, Status.OK, " ms"),
    ],
)
def test_latency_thresholds(
    tmp_path: Path, listening: int, thresholds: dict[str, str], status: Status, words: str
) -> None:
    result = check(tmp_path, host="127.0.0.1", port=listening, **thresholds)
    assert result.status is status
    assert result.summary.endswith(words)
    time = result.metrics["time"]
    assert isinstance(time, Metric)
    assert (time.warn, time.crit) == (
        Params.model_validate({"host": "h", "port": 1, **thresholds}).warning,
        Params.model_validate({"host": "h", "port": 1, **thresholds}).critical,
    )


def test_a_connect_timeout_is_critical(tmp_path: Path) -> None:
    # A listener whose backlog is full leaves further SYNs unanswered, so connect hangs.
    with socket.create_server(("127.0.0.1", 0), backlog=0) as server:
        port = server.getsockname()[1]
        fillers = []
        try:
            for _ in range(8):
                filler = socket.socket()
                filler.setblocking(False)
                filler.connect_ex(("127.0.0.1", port))
                fillers.append(filler)
            result = check(tmp_path, host="127.0.0.1", port=port, timeout="300ms")
        finally:
            for filler in fillers:
                filler.close()
    if result.status is Status.OK:
        pytest.skip("this kernel accepted the connection despite a full backlog")
    assert result.status is Status.CRITICAL
    assert result.summary == f"cannot connect to 127.0.0.1:{port}: timed out after 300 ms"


def test_ipv6_endpoints_are_bracketed(tmp_path: Path, closed_port: int) -> None:
    result = check(tmp_path, host="::1", port=closed_port, timeout="1s")
    assert result.status is Status.CRITICAL
    assert result.summary.startswith(f"cannot connect to [::1]:{closed_port}: ")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"host": "h"}, "Field required"),
        ({"port": 80}, "Field required"),
        ({"host": "", "port": 80}, "at least 1 character"),
        ({"host": "h", "port": 0}, "greater than or equal to 1"),
        ({"host": "h", "port": 65536}, "less than or equal to 65535"),
        ({"host": "h", "port": 80, "warning": "soon"}, 'expected a duration like 30s, 10m, 2h or 7d, got "soon"'),
        ({"host": "h", "port": 80, "timeout": "0s"}, "greater than 0"),
        ({"host": "h", "port": 80, "warning": "2s", "critical": "1s"}, "warning (2s) is more than critical (1s)"),
        ({"host": "h", "port": 80, "address": "x"}, "Extra inputs are not permitted"),
    ],
)
def test_bad_params(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as info:
        Params.model_validate(raw)
    assert message in str(info.value)


def test_defaults() -> None:
    params = Params(host="h", port=1)
    assert (params.warning, params.critical, params.timeout) == (None, None, 10.0)
