"""Check → HARD → notification → remediation → verify, through the real command, with
notifications delivered by apprise to a real HTTP receiver on 127.0.0.1."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest


class Receiver:
    def __init__(self) -> None:
        self.messages: list[dict] = []
        self.pings: list[str] = []
        self.ping_bodies: list[str] = []
        received = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path.startswith("/ping/"):  # a Healthchecks ping, with a body
                    received.pings.append(self.path)
                    received.ping_bodies.append(body.decode())
                else:
                    received.messages.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def do_GET(self) -> None:
                received.pings.append(self.path)
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def titles(self) -> list[str]:
        return [m["title"] for m in self.messages]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.server.shutdown()


@pytest.fixture
def service(tmp_path: Path) -> Path:
    state = tmp_path / "service-state"
    state.write_text("critical")
    return state


def config_for(write_config, receiver: Receiver, service: Path, fix_sets: str = "ok",
               remediate: str = "{run: [fix], after: 2, verify: true}", extra: str = "") -> Path:
    return write_config(f"""
        notify: ["json://127.0.0.1:{receiver.port}/hook"]
        {extra}
        defaults:
          retry: {{attempts: 1}}
        tasks:
          svc:
            uses: check.faults
            hard_after: 2
            with: {{mode: read_state, state_file: "{service}"}}
            remediate: {remediate}
          fix:
            uses: check.faults
            with: {{mode: write_state, state_file: "{service}", summary: {fix_sets}}}
    """)


def test_soft_hard_fix_verify_recovered(cli, write_config, receiver, service):
    config = config_for(write_config, receiver, service)
    first = cli("-c", str(config), "run", "svc")
    assert first.code == 2
    assert receiver.messages == [], "a SOFT problem tells nobody and fixes nothing"
    assert service.read_text() == "critical"
    second = cli("-c", str(config), "run", "svc", "--json")
    assert second.code == 2  # this run saw CRITICAL; the fix came after it
    run_id = json.loads(second.out)["run_id"]
    assert service.read_text() == "ok", "the fix ran"
    assert receiver.titles == ["svc is CRITICAL", "svc was fixed automatically"]
    assert "Ran fix; the check is OK again." in receiver.messages[1]["message"]
    story = json.loads(cli("-c", str(config), "history", "--chain", run_id, "--json").out)
    steps = [(s["trigger"], s["task"], s["status"]) for s in story if s["kind"] == "run"]
    assert steps == [("manual", "svc", "critical"), ("remediation", "fix", "ok"),
                     ("verify", "svc", "ok")]
    assert [s["kind"] for s in story] == ["run", "notification", "run", "run", "notification"]
    assert [s["title"] for s in story if s["kind"] == "notification"] == [
        "svc is CRITICAL", "svc was fixed automatically"]
    assert all(s["parent_run_id"] == run_id for s in story[2:4])
    human = cli("-c", str(config), "history", "--chain", run_id).out
    assert "remediation fix: OK" in human and "notified: svc was fixed automatically" in human
    third = cli("-c", str(config), "run", "svc")
    assert third.code == 0
    assert len(receiver.messages) == 2, "no duplicate message for the same state"


def test_a_fix_that_does_not_help_opens_the_circuit(cli, write_config, receiver, service):
    config = config_for(write_config, receiver, service, fix_sets="critical",
                        remediate="{run: [fix], after: 2, max: 1, per: 1h}")
    cli("-c", str(config), "run", "svc")
    cli("-c", str(config), "run", "svc")
    assert receiver.titles == ["svc is CRITICAL", "svc needs a human"]
    assert "still CRITICAL after the fix" in receiver.messages[1]["message"]
    result = cli("-c", str(config), "--log-level", "info", "run", "svc")
    assert '"reason": "the circuit is open: still CRITICAL after the fix' in result.err
    assert "remediation.started" not in result.err
    assert cli("-c", str(config), "reset", "svc").out.startswith("svc: circuit closed")
    again = cli("-c", str(config), "run", "svc")
    assert "remediation.started" not in again.err, "the per-check budget (max 1 per 1h) is spent"
    assert receiver.titles[-1] == "svc needs a human"
    assert "budget spent: 1 fix(es) per 1h" in receiver.messages[-1]["message"]


def test_kill_switch_pauses_fixes_not_checks(cli, write_config, receiver, service):
    config = config_for(write_config, receiver, service)
    assert cli("-c", str(config), "pause", "--remediation").code == 0
    cli("-c", str(config), "run", "svc")
    paused = cli("-c", str(config), "--log-level", "info", "run", "svc")
    assert "remediation is paused" in paused.err
    assert service.read_text() == "critical"
    assert receiver.titles == ["svc is CRITICAL"], "notifications go on"
    assert cli("-c", str(config), "resume", "--remediation").code == 0
    cli("-c", str(config), "run", "svc")
    assert service.read_text() == "ok"


def test_remediation_disabled_in_config(cli, write_config, receiver, service):
    config = config_for(write_config, receiver, service, extra="remediation: {enabled: false}")
    cli("-c", str(config), "run", "svc")
    result = cli("-c", str(config), "--log-level", "info", "run", "svc")
    assert "remediation is disabled in the config" in result.err
    assert service.read_text() == "critical"


def test_global_budget_opens_the_circuit(cli, write_config, receiver, service):
    config = config_for(write_config, receiver, service, fix_sets="critical",
                        remediate="{run: [fix], after: 1, verify: false, max: 100}",
                        extra="remediation: {max_per_hour: 2}")
    for _ in range(4):  # SOFT, then HARD and fixed twice, then over the hourly budget
        cli("-c", str(config), "run", "svc")
    assert receiver.titles[-1] == "svc needs a human"
    assert "the global budget of 2 fixes per hour is spent" in receiver.messages[-1]["message"]


def test_flapping_is_suppressed(cli, write_config, receiver, service):
    config = config_for(write_config, receiver, service, remediate="{run: [fix], after: 99}",
                        extra="flapping: {window: 1h, changes: 4}")
    for status in ["critical", "critical", "ok", "critical", "critical", "ok", "critical",
                   "critical"]:
        service.write_text(status)
        cli("-c", str(config), "run", "svc")
    assert "svc is flapping" in receiver.titles
    after = receiver.titles[receiver.titles.index("svc is flapping") + 1:]
    assert after == [], "no problem or recovery messages while flapping"


def test_rate_limit_per_destination(cli, write_config, receiver, service):
    config = config_for(write_config, receiver, service, remediate="{run: [fix], after: 99}",
                        extra="notify_limit: {count: 1, per: 1h}")
    for status in ["critical", "critical", "ok"]:
        service.write_text(status)
        cli("-c", str(config), "run", "svc")
    assert receiver.titles == ["svc is CRITICAL"], "the recovery is over the limit"


def test_remediate_names_real_tasks(cli, write_config, receiver, service):
    config = config_for(write_config, receiver, service, remediate="{run: [nope, svc]}")
    result = cli("-c", str(config), "validate")
    assert result.code == 3
    assert 'tasks.svc.remediate.run.0: no task named "nope"' in result.err
    assert "tasks.svc.remediate.run.1: a check cannot fix itself" in result.err


def test_healthchecks_pings(cli, write_config, receiver, service):
    config = write_config(f"""
        tasks:
          beat: {{uses: check.faults, ping: "http://127.0.0.1:{receiver.port}/ping/abc"}}
          down: {{uses: check.faults, with: {{status: critical}}, ping: "http://127.0.0.1:{receiver.port}/ping/def"}}
    """)
    cli("-c", str(config), "run", "beat")
    cli("-c", str(config), "run", "down")
    paths = [p.split("?")[0] for p in receiver.pings]
    assert paths == ["/ping/abc/start", "/ping/abc", "/ping/def/start", "/ping/def/fail"]
    assert all("rid=" in p for p in receiver.pings)
    assert receiver.ping_bodies == ["", "all good", "", "all good"], "the summary is the body"


def test_a_ping_url_keeps_its_query_string(cli, write_config, receiver, service):
    config = write_config(f"""
        tasks:
          beat: {{uses: check.faults, ping: "http://127.0.0.1:{receiver.port}/ping/key/beat?create=1"}}
    """)
    cli("-c", str(config), "run", "beat")
    start, done = receiver.pings
    assert start.startswith("/ping/key/beat/start?create=1&rid=")
    assert done.startswith("/ping/key/beat?create=1&rid=")
    assert start.split("rid=")[1] == done.split("rid=")[1], "one run, one rid"


class FlakyService:
    """A real HTTP service on 127.0.0.1 that answers 503 until its state file says ok."""

    def __init__(self, state: Path) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                healthy = state.read_text().strip() == "ok"
                body = b"healthy\n" if healthy else b"overloaded\n"
                self.send_response(200 if healthy else 503)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/health"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_http_service_soft_hard_fixed_then_recovery_is_quiet(cli, write_config, receiver,
                                                             service):
    web = FlakyService(service)
    try:
        config = write_config(f"""
            notify: ["json://127.0.0.1:{receiver.port}/hook"]
            defaults: {{retry: {{attempts: 1}}}}
            tasks:
              web:
                uses: check.http
                hard_after: 2
                with: {{url: "{web.url}", timeout: 5s}}
                remediate: {{run: [restart-web], verify: true}}
              restart-web:
                uses: check.faults
                with: {{mode: write_state, state_file: "{service}", summary: ok}}
        """)
        soft = cli("-c", str(config), "run", "web", "--json")
        assert soft.code == 2 and "503" in json.loads(soft.out)["summary"]
        assert receiver.titles == [], "SOFT"
        hard = cli("-c", str(config), "run", "web", "--json")
        assert hard.code == 2
        assert receiver.titles == ["web is CRITICAL", "web was fixed automatically"]
        story = json.loads(cli("-c", str(config), "history", "--chain",
                               json.loads(hard.out)["run_id"], "--json").out)
        assert [(s["trigger"], s["status"]) for s in story if s["kind"] == "run"] == [
            ("manual", "critical"), ("remediation", "ok"), ("verify", "ok")]
        assert cli("-c", str(config), "run", "web").code == 0
        assert len(receiver.titles) == 2, "the fix was announced; nothing more to say"
    finally:
        web.server.shutdown()
