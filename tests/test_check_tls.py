"""check.tls against a real TLS server on 127.0.0.1 with certificates made in the test."""

from __future__ import annotations

import socket
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

import toilbox
from tests.certs import Cert, make_cert, tls_server
from tests.checks import context
from toilbox import Metric, Status
from toilbox_checks import tls
from toilbox_checks.tls import Params


def check(tmp_path: Path, clock: Any = None, **params: Any) -> toilbox.Result:
    return tls.run(context(tmp_path, clock), Params.model_validate(params))


def serve_and_check(tmp_path: Path, cert: Cert, **params: Any) -> tuple[toilbox.Result, int]:
    with tls_server(cert) as port:
        return check(tmp_path, host="127.0.0.1", port=port, **params), port


def days_left(result: toilbox.Result) -> Metric:
    value = result.metrics["days_left"]
    assert isinstance(value, Metric)
    return value


# --- a server ---


def test_a_trusted_certificate_with_time_left_is_ok(tmp_path: Path) -> None:
    cert = make_cert(tmp_path, valid_for=timedelta(days=90))
    result, port = serve_and_check(tmp_path, cert, ca_file=str(cert.cert_file))
    assert result.status is Status.OK, result.summary
    assert result.summary == (
        f"certificate of 127.0.0.1:{port} (CN=toilbox test) expires in 90.0d"
        f" ({cert.not_after:%Y-%m-%d})"
    )
    assert days_left(result).value == pytest.approx(90, abs=0.01)
    assert (days_left(result).unit, days_left(result).warn, days_left(result).crit) == ("d", "30:", "7:")
    assert result.data["names"] == ["localhost", "127.0.0.1"]
    assert result.data["not_after"] == cert.not_after.isoformat()
    assert result.data["subject"] == result.data["issuer"] == "CN=toilbox test"
    assert result.data["verified"] is True


@pytest.mark.parametrize(
    ("valid_for", "status"),
    [(timedelta(days=20), Status.WARNING), (timedelta(days=5), Status.CRITICAL), (timedelta(days=31), Status.OK)],
)
def test_expiring_soon(tmp_path: Path, valid_for: timedelta, status: Status) -> None:
    cert = make_cert(tmp_path, valid_for=valid_for)
    result, _ = serve_and_check(tmp_path, cert, ca_file=str(cert.cert_file))
    assert result.status is status, result.summary
    assert f"expires in {valid_for.days}.0d" in result.summary


def test_thresholds_are_durations(tmp_path: Path) -> None:
    cert = make_cert(tmp_path, valid_for=timedelta(days=90))
    ca = str(cert.cert_file)
    with tls_server(cert) as port:
        warn = check(tmp_path, host="127.0.0.1", port=port, ca_file=ca, warning="100d", critical="2w")
        crit = check(tmp_path, host="127.0.0.1", port=port, ca_file=ca, warning="100d", critical="91d")
    assert warn.status is Status.WARNING
    assert (days_left(warn).warn, days_left(warn).crit) == ("100:", "14:")
    assert crit.status is Status.CRITICAL


def test_the_clock_is_the_contexts(tmp_path: Path) -> None:
    cert = make_cert(tmp_path, valid_for=timedelta(days=90))
    later = cert.not_after - timedelta(days=3, hours=12)
    result, _ = serve_and_check(tmp_path, cert, clock=lambda: later, ca_file=str(cert.cert_file))
    assert result.status is Status.CRITICAL
    assert "expires in 3.5d" in result.summary
    assert days_left(result).value == 3.5


def test_an_expired_certificate_is_critical(tmp_path: Path) -> None:
    cert = make_cert(tmp_path, valid_from=timedelta(days=-30), valid_for=timedelta(days=-3))
    result, port = serve_and_check(tmp_path, cert, ca_file=str(cert.cert_file))
    assert result.status is Status.CRITICAL
    # The handshake's own complaint ("certificate has expired") is said by the dates.
    assert result.summary == (
        f"certificate of 127.0.0.1:{port} (CN=toilbox test) expired 3.0d ago"
        f" ({cert.not_after:%Y-%m-%d})"
    )
    assert days_left(result).value == pytest.approx(-3, abs=0.01)
    assert result.data["verified"] is False


def test_an_untrusted_certificate_is_critical_and_still_dated(tmp_path: Path) -> None:
    cert = make_cert(tmp_path)
    result, _ = serve_and_check(tmp_path, cert)  # the system store does not know it
    assert result.status is Status.CRITICAL
    assert result.summary.endswith("expires in 90.0d" + f" ({cert.not_after:%Y-%m-%d}); not trusted: self-signed certificate")
    assert days_left(result).value == pytest.approx(90, abs=0.01)


def test_a_hostname_mismatch_is_critical(tmp_path: Path) -> None:
    cert = make_cert(tmp_path, names=("www.example.test",))
    result, _ = serve_and_check(tmp_path, cert, ca_file=str(cert.cert_file))
    assert result.status is Status.CRITICAL
    assert result.summary.endswith("; not valid for 127.0.0.1")
    assert "not trusted" not in result.summary


def test_server_name_is_sent_and_matched(tmp_path: Path) -> None:
    cert = make_cert(tmp_path, names=("www.example.test", "*.api.example.test"))
    ca = str(cert.cert_file)
    with tls_server(cert) as port:
        ok = check(tmp_path, host="127.0.0.1", port=port, ca_file=ca, server_name="www.example.test")
        wild = check(tmp_path, host="127.0.0.1", port=port, ca_file=ca, server_name="v2.api.example.test")
        other = check(tmp_path, host="127.0.0.1", port=port, ca_file=ca, server_name="example.test")
        untrusted = check(tmp_path, host="127.0.0.1", port=port, server_name="other.example.test")
    assert ok.status is Status.OK, ok.summary
    assert wild.status is Status.OK, wild.summary
    assert other.status is Status.CRITICAL
    assert other.summary.endswith("; not valid for example.test")
    # Not trusted and not matching: both are said.
    assert untrusted.summary.endswith("; not valid for other.example.test; not trusted: self-signed certificate")


def test_verify_false_only_reads_the_dates(tmp_path: Path) -> None:
    cert = make_cert(tmp_path, names=("elsewhere.test",), valid_for=timedelta(days=20))
    result, _ = serve_and_check(tmp_path, cert, verify=False)
    assert result.status is Status.WARNING, result.summary
    assert result.data["verified"] is False


def test_a_refused_connection_is_critical(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = check(tmp_path, host="127.0.0.1", port=port)
    assert result.status is Status.CRITICAL
    assert result.summary == f"cannot connect to 127.0.0.1:{port}: connection refused"


def test_a_server_that_does_not_speak_tls_is_critical(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]

        def talk_plain() -> None:
            conn, _ = server.accept()
            with conn:
                conn.recv(1024)
                conn.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\nplain text here\r\n")

        thread = threading.Thread(target=talk_plain, daemon=True)
        thread.start()
        result = check(tmp_path, host="127.0.0.1", port=port, timeout="3s")
        thread.join(timeout=5)
    assert result.status is Status.CRITICAL
    assert result.summary.startswith(f"TLS handshake with 127.0.0.1:{port} failed: ")


def test_a_missing_ca_file_fails_the_task(tmp_path: Path) -> None:
    with pytest.raises(toilbox.TaskFailed, match=r"cannot load ca_file /nonexistent\.pem"):
        check(tmp_path, host="127.0.0.1", port=1, ca_file="/nonexistent.pem")


# --- a PEM file ---


def test_a_pem_file(tmp_path: Path) -> None:
    cert = make_cert(tmp_path, valid_for=timedelta(days=10))
    result = check(tmp_path, file=str(cert.cert_file))
    assert result.status is Status.WARNING
    assert result.summary == (
        f"certificate of {cert.cert_file} (CN=toilbox test) expires in 10.0d"
        f" ({cert.not_after:%Y-%m-%d})"
    )
    assert result.data["verified"] is False


def test_the_first_certificate_of_a_chain_file_counts(tmp_path: Path) -> None:
    leaf = make_cert(tmp_path, valid_for=timedelta(days=100), stem="leaf", common_name="leaf")
    other = make_cert(tmp_path, valid_for=timedelta(days=2), stem="other", common_name="other")
    chain = tmp_path / "fullchain.pem"
    chain.write_bytes(leaf.cert_file.read_bytes() + other.cert_file.read_bytes())
    result = check(tmp_path, file=str(chain))
    assert result.status is Status.OK
    assert "(CN=leaf) expires in 100.0d" in result.summary


@pytest.mark.parametrize(
    ("server_name", "status"),
    [
        ("localhost", Status.OK),
        ("127.0.0.1", Status.OK),
        ("LOCALHOST.", Status.OK),
        ("db.svc.test", Status.OK),  # *.svc.test
        ("a.db.svc.test", Status.CRITICAL),  # a wildcard is one label
        ("svc.test", Status.CRITICAL),
        ("127.0.0.2", Status.CRITICAL),
    ],
)
def test_a_pem_file_with_a_server_name(tmp_path: Path, server_name: str, status: Status) -> None:
    cert = make_cert(tmp_path, names=("localhost", "127.0.0.1", "*.svc.test"))
    result = check(tmp_path, file=str(cert.cert_file), server_name=server_name)
    assert result.status is status
    if status is Status.CRITICAL:
        assert result.summary.endswith(f"; not valid for {server_name}")


def test_a_certificate_not_yet_valid_is_critical(tmp_path: Path) -> None:
    cert = make_cert(tmp_path, valid_from=timedelta(days=2))
    result = check(tmp_path, file=str(cert.cert_file))
    assert result.status is Status.CRITICAL
    assert "; not valid before " in result.summary


def test_a_missing_or_bad_file_is_critical(tmp_path: Path) -> None:
    missing = check(tmp_path, file=str(tmp_path / "nope.pem"))
    assert missing.status is Status.CRITICAL
    assert missing.summary == f"cannot read {tmp_path / 'nope.pem'}: No such file or directory"
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    bad = check(tmp_path, file=str(junk))
    assert bad.status is Status.CRITICAL
    assert bad.summary == f"{junk} holds no PEM certificate"


# --- params ---


def test_defaults() -> None:
    params = Params(host="example.test")
    assert (params.port, params.warning, params.critical) == (443, 30 * 86400, 7 * 86400)
    assert (params.verify, params.ca_file, params.server_name, params.timeout) == (True, None, None, 10)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({}, "set either host (and port) or file, not both"),
        ({"host": "h", "file": "/c.pem"}, "set either host (and port) or file, not both"),
        ({"file": "/c.pem", "ca_file": "/ca.pem"}, "a file's chain is not verified"),
        ({"host": "h", "verify": False, "ca_file": "/ca.pem"}, "ca_file is used to verify"),
        ({"host": "h", "warning": "7d", "critical": "30d"}, "warning (7d) is less than critical (30d)"),
        ({"host": "h", "warning": "a month"}, 'expected a duration like 30s, 10m, 2h or 7d, got "a month"'),
        ({"host": "h", "port": 0}, "greater than or equal to 1"),
        ({"host": "h", "days": 30}, "Extra inputs are not permitted"),
    ],
)
def test_bad_params(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as info:
        Params.model_validate(raw)
    assert message in str(info.value)


def test_a_date_is_printed_in_utc(tmp_path: Path) -> None:
    cert = make_cert(tmp_path)
    result = check(tmp_path, file=str(cert.cert_file))
    assert datetime.fromisoformat(result.data["not_after"]).tzinfo == UTC
