"""The status page, served by a real daemon on loopback, read by real clients: urllib,
raw sockets, 200 threads at once, and a real headless Chromium."""

from __future__ import annotations

import base64
import json
import re
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.fleet_support import FleetDaemon, plugin_dir, wait_for
from tests.test_reports import CHROMIUM, DevTools

pytestmark = pytest.mark.slow
SECRET = "s3cret-token-for-the-page-0123456789"
HOSTILE = "<script>alert(1)</script></style>\x1b]0;pwned\x07"


def get(base: str, path: str, token: str | None = None, method: str = "GET"):
    request = urllib.request.Request(base + path, method=method)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, dict(answer.headers), answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read().decode()


def write_page_config(tmp_path: Path, extra: str = "", store: str = "") -> Path:
    plugins = plugin_dir(tmp_path, "faults_plugin")
    config = tmp_path / "page.yaml"
    config.write_text(
        f"state_dir: {tmp_path / 'state'}\nplugin_dirs: [{plugins}]\n{store}"
        f"http: {{listen: '127.0.0.1:0'{extra}}}\n"
        "defaults: {retry: {attempts: 1}}\n"
        "tasks:\n"
        "  web: {uses: check.faults, with: {status: critical, summary: 'HTTP 503 from web'},"
        " hard_after: 1, remediate: {run: [restart-web], verify: false}}\n"
        "  restart-web: {uses: check.faults, with: {summary: restarted}}\n"
        "  disk: {uses: check.faults, with: {summary: 'disk 40% used'}}\n"
        f"  evil: {{uses: check.faults, with: {{status: warning, summary: {json.dumps(HOSTILE)}}}}}\n"
        f"  tick: {{uses: check.mark, with: {{out: {tmp_path}/tick.jsonl, sleep: 1.5}},"
        " schedule: every 1s}\n"
        "  secretive: {uses: check.faults, with: {summary: '${PAGE_SECRET}'}}\n"
        f"  beat: {{uses: check.mark, with: {{out: {tmp_path}/beat.jsonl}}, schedule: every 1s}}\n"
    )
    return config


@pytest.fixture
def page(tmp_path, request, monkeypatch):
    """A daemon serving the page, with real runs recorded first.  Parametrised with
    "postgresql" (fleet mode) or "token" (the page asks for one)."""
    from tests.test_fleet import cli

    kind = getattr(request, "param", "sqlite")
    store = extra = ""
    if kind == "postgresql":
        store = f'store: {{url: "{request.getfixturevalue("pg_url")}"}}\n'
    if kind == "token":
        extra = f", token: '{SECRET}'"
    monkeypatch.setenv("PAGE_SECRET", SECRET)
    config = write_page_config(tmp_path, extra, store)
    for task in ("web", "disk", "evil", "secretive", "disk"):
        done = cli(config, "run", task, host="here")
        assert done.returncode in (0, 1, 2), done.stderr
    daemon = FleetDaemon(config, "here", tmp_path).start()
    try:
        address = daemon.events("http.listening")[0]["address"]
        wait_for(lambda: len(ledger_lines(tmp_path)) >= 4, 20, "the ticking task to run")
        yield f"http://{address}", daemon, config
    finally:
        daemon.stop()


def ledger_lines(tmp_path: Path) -> list[str]:
    path = tmp_path / "tick.jsonl"
    return path.read_text().splitlines() if path.exists() else []


@pytest.mark.parametrize("page", ["sqlite", "postgresql"], indirect=True)
def test_every_page_and_its_json_twin(page):
    base, _daemon, _ = page
    status, headers, html = get(base, "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    _, _, raw = get(base, "/api/v1/")
    overview = json.loads(raw)
    rows = {row["task"]: row for row in overview["tasks"]}
    assert set(rows) == {"web", "restart-web", "disk", "evil", "tick", "secretive", "beat"}
    assert rows["web"]["state"] | {"since": None} == {
        "status": "critical", "hard": True, "since": None, "flapping": False,
        "circuit_open": False}
    assert rows["disk"]["last_ok"]["summary"] == "disk 40% used"
    assert rows["web"]["last_not_ok"]["status"] == "critical"
    assert rows["tick"]["next_fire"] is not None and rows["tick"]["schedule"] == "every 1s"
    assert any(cell["gap"] for cell in rows["tick"]["strip"]), "skipped fires show as gaps"
    assert [p["task"] for p in overview["attention"]["problems"]] == ["evil", "web"]
    for name in rows:
        assert f'href="/tasks/{name}"' in html
    assert "Needs attention" in html
    assert re.search(r"web</a>( on here)? is CRITICAL \(HARD\)", html), "on here: in a fleet"

    only = json.loads(get(base, "/api/v1/?state=critical")[2])
    assert [row["task"] for row in only["tasks"]] == ["web"]
    assert json.loads(get(base, "/api/v1/?state=problem&task=ev")[2])["tasks"][0]["task"] == "evil"
    assert {r["task"] for r in json.loads(get(base, "/api/v1/?type=check.mark")[2])["tasks"]} == {
        "tick", "beat"}
    filtered = get(base, "/?state=critical")[2]
    assert 'href="/tasks/web"' in filtered and 'href="/tasks/disk"' not in filtered

    task = json.loads(get(base, "/api/v1/tasks/web")[2])
    assert task["config"]["remediate"]["run"] == ["restart-web"]
    assert "web (check.faults)" in task["explain"]
    assert task["runs"][0]["status"] == "critical"
    assert "svg" in get(base, "/tasks/web")[2]

    run_id = task["runs"][0]["run_id"]
    run = json.loads(get(base, f"/api/v1/runs/{run_id}")[2])
    assert run["run"]["summary"] == "HTTP 503 from web"
    assert [step.get("task") for step in run["chain"] if step["kind"] == "run"] == [
        "web", "restart-web"]
    assert "restart-web" in get(base, f"/runs/{run_id}")[2]
    assert get(base, "/runs/no-such-run")[0] == 404
    assert get(base, "/tasks/no-such-task")[0] == 404


def test_it_changes_nothing_and_leaks_nothing(page):
    base, _, _ = page
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        assert get(base, "/", method=method)[0] == 405
    _, headers, html = get(base, "/")
    csp = headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp
    assert "<script" not in html.lower() and "<form" in html and 'method="get"' in html
    assert "<button" in html and html.count("<button") == 1, "the filter is the one button"
    evil = json.loads(get(base, "/api/v1/?task=evil")[2])["tasks"][0]
    evil_page = get(base, f"/runs/{evil['last_run']['run_id']}")[2]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&lt;/style&gt;" in evil_page
    assert "<script>alert" not in evil_page and "\x1b" not in evil_page
    assert "pwned" not in evil_page, "an OSC sequence goes whole, its text too"
    secretive = get(base, "/api/v1/tasks/secretive")[2] + get(base, "/tasks/secretive")[2]
    secretive += get(base, "/api/v1/")[2]
    assert SECRET not in secretive and "***" in secretive


def test_an_idle_connection_and_200_clients_block_neither_healthz_nor_the_scheduler(page, tmp_path):
    base, daemon, _ = page
    host, port = base.removeprefix("http://").rsplit(":", 1)
    idle = socket.create_connection((host, int(port)))  # says nothing, holds on
    slow = socket.create_connection((host, int(port)))
    slow.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # and never finishes its headers
    results: list[int] = []

    def client() -> None:
        results.append(get(base, "/")[0])

    threads = [threading.Thread(target=client) for _ in range(200)]
    started = time.time()
    for thread in threads:
        thread.start()
    health = []
    while any(t.is_alive() for t in threads):
        began = time.perf_counter()
        assert get(base, "/healthz")[0] == 200
        health.append(time.perf_counter() - began)
        time.sleep(0.05)
    for thread in threads:
        thread.join()
    idle.close()
    slow.close()
    assert results.count(200) == 200
    assert health and max(health) < 1.0, max(health)
    fired = [e for e in daemon.events("task.fired") if e["task"] == "beat"
             and e["timestamp"] >= time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(started))]
    assert fired and max(e["dispatch_lag_ms"] for e in fired) < 250, fired


@pytest.mark.parametrize("page", ["token"], indirect=True)
def test_a_token_is_asked_for_everything_but_healthz(page):
    base, _, _ = page
    assert get(base, "/")[0] == 401
    assert get(base, "/api/v1/")[0] == 401
    assert get(base, "/metrics")[0] == 401
    wrong = "wrong-" + SECRET[6:]
    assert get(base, "/", token=wrong)[0] == 401
    assert get(base, "/healthz")[0] == 200
    assert get(base, "/", token=SECRET)[0] == 200
    basic = urllib.request.Request(base + "/api/v1/hosts")
    basic.add_header("Authorization", "Basic " + base64.b64encode(
        f"anyone:{SECRET}".encode()).decode())
    with urllib.request.urlopen(basic, timeout=10) as answer:
        assert answer.status == 200


@pytest.mark.skipif(CHROMIUM is None,
                    reason="headless Chromium not installed (Debian: apt-get install chromium)")
def test_the_pages_in_a_real_browser(page, tmp_path):
    base, _, _ = page
    evil = json.loads(get(base, "/api/v1/?task=evil")[2])["tasks"][0]["last_run"]["run_id"]
    web_run = json.loads(get(base, "/api/v1/tasks/web")[2])["runs"][0]["run_id"]
    assert CHROMIUM is not None
    browser = DevTools(CHROMIUM, tmp_path / "profile")
    shots = {}
    try:
        target = browser.send("Target.createTarget", url="about:blank")["targetId"]
        session = browser.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            browser.send(f"{domain}.enable", session)
        for name, path in (("overview", "/"), ("critical", "/?state=critical"),
                           ("task", "/tasks/web"), ("run", f"/runs/{web_run}"),
                           ("evil", f"/runs/{evil}")):
            browser.events.clear()
            browser.send("Page.navigate", session, url=base + path)
            browser.wait_for("Page.loadEventFired")
            rows = browser.send("Runtime.evaluate", session, returnByValue=True, expression=(
                "document.querySelectorAll('table.tasks tbody tr').length"))["result"]["value"]
            text = browser.send("Runtime.evaluate", session, returnByValue=True,
                                expression="document.body.innerText")["result"]["value"]
            shot = browser.send("Page.captureScreenshot", session, format="png")
            shots[name] = tmp_path / f"page-{name}.png"
            shots[name].write_bytes(base64.b64decode(shot["data"]))
            problems = [e for e in browser.events
                        if e.get("method") in ("Runtime.exceptionThrown",
                                               "Page.javascriptDialogOpening")
                        or (e.get("method") == "Log.entryAdded"
                            and e["params"]["entry"]["level"] == "error")]
            assert problems == [], (name, problems)
            fetched = [e["params"]["request"]["url"] for e in browser.events
                       if e.get("method") == "Network.requestWillBeSent"]
            assert fetched and all(u.startswith(base) for u in fetched), fetched
            if name == "overview":
                assert rows == 7
            if name == "critical":
                assert rows == 1 and "web" in text
            if name == "evil":
                assert "<script>alert(1)</script>" in text, "shown as text, not run"
    finally:
        browser.close()
    assert all(path.stat().st_size > 5_000 for path in shots.values())
