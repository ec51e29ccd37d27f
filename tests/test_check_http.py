"""check.http against a real HTTP server on 127.0.0.1, plain and TLS, and through the CLI."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from pydantic import ValidationError

import toilbox
from tests.certs import make_cert, server_context
from tests.checks import context, metric
from toilbox import Metric, Status
from toilbox_checks import file_age, http_check, process, tcp, tls, trust
from toilbox_checks.http_check import BODY_LIMIT, Params


def check(tmp_path: Path, **params: Any) -> toilbox.Result:
    return http_check.run(context(tmp_path), Params.model_validate(params))


class Handler(BaseHTTPRequestHandler):
    """Routes: /ok, /status/N, /slow?ms=N, /redirect?to=PATH, /loop, /big, /drip, /echo."""

    server: Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        self.server.requests.append(
            {"method": self.command, "path": self.path, "headers": dict(self.headers.items())}
        )
        if url.path == "/ok":
            self.reply(200, b"hello, all systems go\n")
        elif url.path.startswith("/status/"):
            self.reply(int(url.path.rsplit("/", 1)[1]), b"as you asked\n")
        elif url.path == "/slow":
            time.sleep(int(query["ms"]) / 1000)
            self.reply(200, b"sorry I am late\n")
        elif url.path == "/redirect":
            self.reply(302, b"", location=query.get("to", "/ok"))
        elif url.path == "/loop":
            self.reply(302, b"", location="/loop")
        elif url.path == "/big":
            self.reply(200, b"x" * (BODY_LIMIT + 4096) + b"needle")
        elif url.path == "/drip":
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            for _ in range(100):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.02)
        elif url.path == "/echo":
            self.reply(200, json.dumps(dict(self.headers.items())).encode())
        else:
            self.reply(404, b"not here\n")

    do_POST = do_HEAD = do_DELETE = do_GET  # noqa: N815 -- http.server's naming

    def reply(self, code: int, body: bytes, location: str | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        if location:
            self.send_header("Location", location)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    requests: list[dict[str, Any]]


@pytest.fixture
def serve() -> Iterator[Callable[..., tuple[str, Server]]]:
    """Start HTTP (or, given an ssl context, HTTPS) servers on 127.0.0.1; stopped after the test."""
    servers: list[Server] = []

    def start(tls: Any = None) -> tuple[str, Server]:
        server = Server(("127.0.0.1", 0), Handler)
        server.requests = []
        scheme = "http"
        if tls is not None:
            server.socket = tls.wrap_socket(server.socket, server_side=True)
            scheme = "https"
        threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
        servers.append(server)
        return f"{scheme}://127.0.0.1:{server.server_address[1]}", server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def base(serve: Callable[..., tuple[str, Server]]) -> tuple[str, Server]:
    return serve()



# --- status codes ---


def test_ok(tmp_path: Path, base: tuple[str, Server]) -> None:
    url, server = base
    result = check(tmp_path, url=f"{url}/ok")
    assert result.status is Status.OK
    assert re.fullmatch(rf"GET {url}/ok: 200 OK in [\d.]+ ms", result.summary), result.summary
    assert metric(result, "size") == Metric(22, "B", min=0)
    time_ = metric(result, "time")
    assert (time_.unit, time_.warn, time_.crit, time_.min) == ("s", None, None, 0)
    assert 0 < time_.value < 1
    assert result.data == {
        "url": f"{url}/ok", "method": "GET", "status_code": 200, "redirects": 0, "body_bytes": 22,
    }
    assert [r["method"] for r in server.requests] == ["GET"]


@pytest.mark.parametrize(("code", "status"), [(204, Status.OK), (304, Status.OK), (404, Status.CRITICAL), (500, Status.CRITICAL), (503, Status.CRITICAL)])
def test_default_expected_statuses_are_200_to_399(
    tmp_path: Path, base: tuple[str, Server], code: int, status: Status
) -> None:
    result = check(tmp_path, url=f"{base[0]}/status/{code}")
    assert result.status is status
    assert result.data["status_code"] == code
    if status is Status.CRITICAL:
        assert result.summary.endswith("; expected status 200-399")


@pytest.mark.parametrize(
    ("expected", "code", "status"),
    [
        (404, 404, Status.OK),
        ("404", 200, Status.CRITICAL),
        ([200, "401-403"], 403, Status.OK),
        ([200, "401-403"], 404, Status.CRITICAL),
        (["500-599"], 503, Status.OK),
    ],
)
def test_expected_statuses(
    tmp_path: Path, base: tuple[str, Server], expected: Any, code: int, status: Status
) -> None:
    result = check(tmp_path, url=f"{base[0]}/status/{code}", status=expected)
    assert result.status is status


def test_a_wrong_status_says_what_was_expected(tmp_path: Path, base: tuple[str, Server]) -> None:
    url = f"{base[0]}/status/500"
    result = check(tmp_path, url=url, status=[200, "202-204"])
    assert re.fullmatch(
        rf"GET {url}: 500 Internal Server Error in [\d.]+ ms; expected status 200, 202-204",
        result.summary,
    ), result.summary


@pytest.mark.parametrize("method", ["HEAD", "POST", "delete"])
def test_method(tmp_path: Path, base: tuple[str, Server], method: str) -> None:
    url, server = base
    result = check(tmp_path, url=f"{url}/ok", method=method)
    assert result.status is Status.OK
    assert result.summary.startswith(f"{method.upper()} {url}/ok: 200 OK")
    assert server.requests[-1]["method"] == method.upper()


# --- body ---


def test_body_matches(tmp_path: Path, base: tuple[str, Server]) -> None:
    assert check(tmp_path, url=f"{base[0]}/ok", body_matches=r"all systems \w+").status is Status.OK


def test_a_body_that_does_not_match_is_critical(tmp_path: Path, base: tuple[str, Server]) -> None:
    result = check(tmp_path, url=f"{base[0]}/ok", body_matches="^healthy$")
    assert result.status is Status.CRITICAL
    assert result.summary.endswith("; body does not match '^healthy$'")
    assert result.data["body_head"] == "hello, all systems go\n"


def test_only_the_first_megabyte_is_read(tmp_path: Path, base: tuple[str, Server]) -> None:
    result = check(tmp_path, url=f"{base[0]}/big", body_matches="needle")
    assert result.status is Status.CRITICAL  # the needle lies past BODY_LIMIT
    assert result.data["body_bytes"] == BODY_LIMIT
    assert metric(result, "size").value == BODY_LIMIT
    assert check(tmp_path, url=f"{base[0]}/big", body_matches="^x+$").status is Status.OK


# --- latency ---


@pytest.mark.parametrize(
    ("thresholds", "status", "words"),
    [
        ({"warning": "100ms"}, Status.WARNING, "; slower than the warning threshold of 100 ms"),
        ({"warning": "100ms", "critical": "200ms"}, Status.CRITICAL, "; slower than the critical threshold of 200 ms"),
        ({"warning": "2s", "critical": "5s"}, Status.OK, " ms"),
    ],
)
def test_a_slow_response_against_latency_thresholds(
    tmp_path: Path, base: tuple[str, Server], thresholds: dict[str, str], status: Status, words: str
) -> None:
    result = check(tmp_path, url=f"{base[0]}/slow?ms=300", **thresholds)
    assert result.status is status
    assert result.summary.endswith(words), result.summary
    assert metric(result, "time").value >= 0.3
    params = Params.model_validate({"url": "http://h", **thresholds})
    assert (metric(result, "time").warn, metric(result, "time").crit) == (params.warning, params.critical)


def test_a_wrong_status_beats_a_slow_warning(tmp_path: Path, base: tuple[str, Server]) -> None:
    result = check(tmp_path, url=f"{base[0]}/status/500", warning="0s")
    assert result.status is Status.CRITICAL
    assert "; slower than the warning threshold of 0.0 ms; expected status 200-399" in result.summary


def test_no_response_within_the_timeout_is_critical(tmp_path: Path, base: tuple[str, Server]) -> None:
    url = f"{base[0]}/slow?ms=1500"
    started = time.monotonic()
    result = check(tmp_path, url=url, timeout="300ms")
    assert time.monotonic() - started < 1.4
    assert result.status is Status.CRITICAL
    assert result.summary == f"GET {url} failed: no complete response within 0.3s"
    assert result.data["error"] == "no complete response within 0.3s"


def test_a_body_dripped_out_is_cut_off_at_the_timeout(tmp_path: Path, base: tuple[str, Server]) -> None:
    # Each byte arrives well within the read timeout; the whole body does not.
    started = time.monotonic()
    result = check(tmp_path, url=f"{base[0]}/drip", timeout="500ms")
    assert time.monotonic() - started < 1.5
    assert result.status is Status.CRITICAL
    assert result.summary.endswith("failed: no complete response within 0.5s")


# --- connections ---


def test_a_refused_connection_is_critical(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/"
    result = check(tmp_path, url=url)
    assert result.status is Status.CRITICAL
    assert result.summary == f"GET {url} failed: connection refused"
    assert result.metrics == {}


def test_an_unknown_host_is_critical(tmp_path: Path) -> None:
    result = check(tmp_path, url="http://no-such-host.invalid/", timeout="2s")
    assert result.status is Status.CRITICAL
    assert result.summary.startswith("GET http://no-such-host.invalid/ failed: ")


# --- redirects ---


def test_redirects_are_followed(tmp_path: Path, base: tuple[str, Server]) -> None:
    url, server = base
    result = check(tmp_path, url=f"{url}/redirect?to=/status/500")
    assert result.status is Status.CRITICAL  # the final response counts
    assert result.data["redirects"] == 1
    assert result.data["final_url"] == f"{url}/status/500"
    assert [r["path"] for r in server.requests] == ["/redirect?to=/status/500", "/status/500"]


def test_redirects_not_followed(tmp_path: Path, base: tuple[str, Server]) -> None:
    url, server = base
    result = check(tmp_path, url=f"{url}/redirect?to=/status/500", follow_redirects=False)
    assert result.status is Status.OK  # 302 is within 200-399
    assert result.summary.startswith(f"GET {url}/redirect?to=/status/500: 302 Found")
    assert "final_url" not in result.data
    assert len(server.requests) == 1
    only_200 = check(tmp_path, url=f"{url}/redirect", follow_redirects=False, status=200)
    assert only_200.status is Status.CRITICAL


def test_a_redirect_loop_is_critical(tmp_path: Path, base: tuple[str, Server]) -> None:
    result = check(tmp_path, url=f"{base[0]}/loop")
    assert result.status is Status.CRITICAL
    assert result.summary.endswith("failed: too many redirects")


# --- headers ---


def test_headers_are_sent(tmp_path: Path, base: tuple[str, Server]) -> None:
    url, server = base
    headers = {"Authorization": "Bearer s3cret", "X-Probe": "toilbox"}
    result = check(tmp_path, url=f"{url}/echo", headers=headers, body_matches='"X-Probe": "toilbox"')
    assert result.status is Status.OK
    received = server.requests[-1]["headers"]
    assert received["Authorization"] == "Bearer s3cret"
    assert received["X-Probe"] == "toilbox"
    assert "s3cret" not in json.dumps(result.data) + result.summary


# --- TLS ---


@pytest.fixture
def https(tmp_path: Path, serve: Callable[..., tuple[str, Server]]) -> tuple[str, Path]:
    cert = make_cert(tmp_path, names=("127.0.0.1",))
    url, _ = serve(server_context(cert))
    return url, cert.cert_file


def test_tls_is_verified_by_default(tmp_path: Path, https: tuple[str, Path]) -> None:
    url, _ = https
    result = check(tmp_path, url=f"{url}/ok")
    assert result.status is Status.CRITICAL
    assert result.summary == (
        f"GET {url}/ok failed: TLS certificate not trusted: self-signed certificate"
    )


def test_tls_verified_against_a_ca_file(tmp_path: Path, https: tuple[str, Path]) -> None:
    url, ca_file = https
    result = check(tmp_path, url=f"{url}/ok", ca_file=str(ca_file))
    assert result.status is Status.OK, result.summary


def test_the_system_trust_store_is_loaded_once_and_again_when_it_changes(
    tmp_path: Path, https: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, server_cert = https
    bundle = tmp_path / "system-bundle.pem"
    other = make_cert(tmp_path, stem="other", common_name="another CA")
    bundle.write_bytes(other.cert_file.read_bytes())
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    assert check(tmp_path, url=f"{url}/ok").status is Status.CRITICAL
    # Loaded once per process (the daemon's zygote loads it for all its checks) ...
    assert trust.system_trust() is trust.system_trust()
    # ... and again once the trust store changes (a CA bundle update).
    bundle.write_bytes(other.cert_file.read_bytes() + server_cert.read_bytes())
    stat = bundle.stat()
    os.utime(bundle, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert check(tmp_path, url=f"{url}/ok").status is Status.OK


def test_tls_verification_can_be_turned_off(tmp_path: Path, https: tuple[str, Path]) -> None:
    url, _ = https
    assert check(tmp_path, url=f"{url}/ok", verify_tls=False).status is Status.OK


def test_a_missing_ca_file_fails_the_task(tmp_path: Path, https: tuple[str, Path]) -> None:
    url, _ = https
    with pytest.raises(toilbox.TaskFailed, match=r"cannot load ca_file /nonexistent\.pem"):
        check(tmp_path, url=f"{url}/ok", ca_file="/nonexistent.pem")


# --- params ---


def test_defaults() -> None:
    params = Params(url="http://h/")
    assert (params.method, params.status, params.timeout) == ("GET", ((200, 399),), 10.0)
    assert (params.follow_redirects, params.verify_tls, params.ca_file) == (True, True, None)
    assert (params.warning, params.critical, params.body_matches, params.headers) == (None, None, None, {})


def test_params_round_trip() -> None:
    params = Params.model_validate(
        {"url": "https://h/x", "status": [200, "300-302"], "warning": "500ms", "critical": "2s"}
    )
    assert params.status == ((200, 200), (300, 302))
    assert params.model_dump()["status"] == [200, "300-302"]
    assert Params.model_validate(params.model_dump()) == params
    assert Params.model_validate_json(params.model_dump_json()) == params


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({}, "Field required"),
        ({"url": "ftp://h/"}, 'expected an http:// or https:// URL with a host, got "ftp://h/"'),
        ({"url": "localhost:8080"}, "expected an http:// or https:// URL with a host"),
        ({"url": "http:///path"}, "expected an http:// or https:// URL with a host"),
        ({"url": "http://h", "method": "GET /"}, 'expected an HTTP method like GET or HEAD, got "GET /"'),
        ({"url": "http://h", "status": "ok"}, 'expected a status code like 200, a range like 200-399, or a list of them, got "ok"'),
        ({"url": "http://h", "status": [200, 700]}, "or a list of them, got 700"),
        ({"url": "http://h", "status": "399-200"}, 'got "399-200"'),
        ({"url": "http://h", "status": []}, "got an empty list"),
        ({"url": "http://h", "status": True}, "got True"),
        ({"url": "http://h", "body_matches": "(unclosed"}, "not a valid regular expression: missing )"),
        ({"url": "http://h", "method": "HEAD", "body_matches": "x"}, "body_matches needs a body"),
        ({"url": "http://h", "warning": "2s", "critical": "500ms"}, "warning (2s) is more than critical (0.5s)"),
        ({"url": "http://h", "timeout": "0s"}, "greater than 0"),
        ({"url": "http://h", "timeout": "forever"}, 'expected a duration like 30s, 10m, 2h or 7d, got "forever"'),
        ({"url": "http://h", "verify_tls": False, "ca_file": "/ca.pem"}, "ca_file is used to verify TLS"),
        ({"url": "http://h", "headers": {"X-A": 1}}, "valid string"),
        ({"url": "http://h", "verify": False}, "Extra inputs are not permitted"),
    ],
)
def test_bad_params(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as info:
        Params.model_validate(raw)
    assert message in str(info.value)


# --- through the real command ---


def test_end_to_end_through_the_cli(
    base: tuple[str, Server], write_config: Callable[[str], Path], toilbox: Callable[..., Any]
) -> None:
    url, server = base
    config = write_config(f"""
        tasks:
          api:
            uses: check.http
            with:
              url: {url}/ok
              body_matches: all systems go
              headers: {{Authorization: "Bearer ${{API_TOKEN}}"}}
              warning: 2s
              critical: 5s
          broken:
            uses: check.http
            with: {{url: "{url}/status/503", timeout: 2s}}
            retry: {{attempts: 1}}
          typo:
            uses: check.http
            with: {{url: {url}/ok, stauts: 200}}
    """)
    env = {"API_TOKEN": "tok-12345"}

    invalid = toilbox("-c", str(config), "validate", env=env)
    assert invalid.code == 3
    assert re.search(r"toilbox\.yaml:\d+: tasks\.typo\.with\.stauts: unknown key", invalid.err), invalid.err
    config.write_text(config.read_text().split("  typo:")[0])

    ok = toilbox("-c", str(config), "run", "api", "--json", env=env)
    assert ok.code == 0, ok.err
    report = json.loads(ok.out)
    assert report["status"] == "ok"
    assert report["summary"].startswith(f"GET {url}/ok: 200 OK in ")
    assert report["metrics"]["time"]["warn"] == 2.0
    assert server.requests[-1]["headers"]["Authorization"] == "Bearer tok-12345"
    assert "tok-12345" not in ok.out + ok.err

    broken = toilbox("-c", str(config), "run", "broken", "--json", env=env)
    assert broken.code == 2, broken.err
    report = json.loads(broken.out)
    assert report["status"] == "critical"
    assert report["summary"].endswith("503 Service Unavailable in " + report["summary"].split(" in ")[1])
    assert "expected status 200-399" in report["summary"]


# --- the package ---


def test_the_package_registers_the_new_checks() -> None:
    registered: dict[str, tuple[Any, Any]] = {}

    def register(name: str, fn: Any, *, params: Any, description: str | None = None) -> None:
        registered[name] = (fn, params)

    for module in (http_check, tcp, tls, process, file_age):
        module.register_task_types(register)
    assert registered["check.http"] == (http_check.run, http_check.Params)
    assert registered["check.tcp"] == (tcp.run, tcp.Params)
    assert registered["check.tls"] == (tls.run, tls.Params)
    assert registered["check.process"] == (process.run, process.Params)
    assert registered["check.file-age"] == (file_age.run, file_age.Params)


def test_importing_the_checks_imports_no_heavy_library() -> None:
    code = (
        "import sys, toilbox_checks; "
        "print([m for m in ('httpx', 'cryptography', 'psutil') if m in sys.modules])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
