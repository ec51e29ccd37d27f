"""report.summary and `toilbox report`, over a day of history made by real runs.

The runs go through the real runner (a child process each) with a wall clock stepped an
hour at a time, so one test module builds a whole day: an outage, a fix that worked, a
fix that did not, a crashing job and a cleanup freeing space.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import re
import select
import shutil
import subprocess
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from toilbox import runner
from toilbox.app import load_app
from toilbox.testing import build_tree

SCRIPTED = """
    from pathlib import Path
    from pydantic import BaseModel, ConfigDict
    import toilbox

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        script: str

    def scripted(ctx, params):
        '''Report the status written in a file: "critical: queue depth 5000".'''
        status, _, summary = Path(params.script).read_text().partition(":")
        if status == "raise":
            raise ConnectionError(summary.strip())
        return toilbox.Result(toilbox.Status.from_label(status), summary.strip())

    @toilbox.hookimpl
    def register_task_types(register):
        register("check.scripted", scripted, params=Params)
"""
HOURS = 24
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class History:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.config = root / "toilbox.yaml"
        self.freed = 0
        self.deleted = 0
        self.start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=HOURS)


def _script(history: History, task: str, text: str) -> str:
    path = history.root / "scripts" / task
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return str(path)


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> History:
    """A day of runs, one round an hour, recorded by the real runner."""
    from toilbox import log

    log.configure("json", "warning")
    root = tmp_path_factory.mktemp("history")
    made = History(root)
    (root / "plugins.d").mkdir()
    (root / "plugins.d" / "scripted.py").write_text(textwrap.dedent(SCRIPTED))
    spool = root / "spool"
    tasks: dict[str, Any] = {
        name: {"uses": "check.scripted", "with": {"script": _script(made, name, "ok: fine")}}
        for name in ("web", "db", "queue", "nightly", "restart-db", "restart-queue")
    }
    tasks["spool-cleanup"] = {
        "uses": "cleanup.files",
        "with": {"roots": [str(spool)], "older_than": "1h", "max_delete": 1000},
    }
    config = {
        "state_dir": str(root / "state"),
        "plugin_dirs": [str(root / "plugins.d")],
        "defaults": {"timeout": "20s", "retry": {"attempts": 1}},
        "tasks": tasks,
    }
    made.config.write_text(yaml.safe_dump(config))
    app = load_app(str(made.config))
    clock = [made.start]

    def stepped_now() -> str:
        clock[0] += timedelta(seconds=1)
        return clock[0].isoformat(timespec="microseconds")

    patch = pytest.MonkeyPatch()
    patch.setattr(runner, "now_iso", stepped_now)
    try:
        for hour in range(HOURS):
            clock[0] = made.start + timedelta(hours=hour, minutes=5)

            def run(name: str, text: str | None = None, **options: Any) -> Any:
                if text is not None:
                    _script(made, name, text)
                return runner.run_task(app, name, **options)

            # web: down from 09:00 to 12:00
            run("web", "critical: HTTP 503" if 9 <= hour < 12 else "ok: HTTP 200 in 80 ms")
            # db: fails at 14:00, a restart fixes it, and the check says so
            if hour == 14:
                failed = run("db", "critical: 0 connections accepted")
                run("restart-db", "ok: restarted", trigger="remediation",
                    parent_run_id=failed.run_id)
                run("db", "ok: 12 connections", trigger="verify", parent_run_id=failed.run_id)
            else:
                run("db", "ok: 12 connections")
            # queue: backs up at 20:00, the fix does not help, still critical at the end
            if hour == 20:
                failed = run("queue", "critical: depth 5000")
                run("restart-queue", "ok: restarted", trigger="remediation",
                    parent_run_id=failed.run_id)
                run("queue", "critical: depth 5200", trigger="verify",
                    parent_run_id=failed.run_id)
            else:
                run("queue", "critical: depth 5400" if hour > 20 else "ok: depth 3")
            # nightly: crashes once, at 03:00
            run("nightly", "raise: database is gone" if hour == 3 else "ok: exported")
            # the spool fills up, and is cleaned every 6 hours
            if hour % 6 == 5:
                files = {f"h{hour}-{n}.part": {"age": "2h", "size": f"{(n + 1) * 64}KiB"}
                         for n in range(hour // 5 + 1)}
                build_tree(spool, files, time.time())
                done = run("spool-cleanup")
                made.deleted += len(files)
                made.freed += sum((n + 1) * 64 * 1024 for n in range(len(files)))
                assert done.status == "ok", done.summary
    finally:
        patch.undo()
        app.close()
    return made


def report(cli, history: History, *args: str) -> str:
    result = cli("-c", str(history.config), "report", "--window", "24h", *args)
    assert result.code == 0, result.err
    return result.out


def test_json_sums_up_the_day(cli, history):
    r = json.loads(report(cli, history, "--format", "json"))
    assert r["window"]["seconds"] == 24 * 3600
    tasks = {t["task"]: t for t in r["tasks"]}
    assert set(tasks) == {"web", "db", "queue", "nightly", "restart-db", "restart-queue",
                          "spool-cleanup"}

    # The top says what needs attention: the queue, critical now and beyond a fix.
    assert r["headline"] == "1 task needs attention: queue"
    assert [(a["task"], a["status"]) for a in r["attention"][:2]] == [
        ("queue", "critical"), ("queue", "critical")]
    assert {a["task"] for a in r["attention"][2:]} == {"web", "db", "nightly"}  # recovered

    # Per task: runs, success rate, failures with their errors, durations, last status.
    assert tasks["web"]["runs"] == HOURS
    assert tasks["web"]["success_rate"] == pytest.approx(21 / 24)
    assert tasks["web"]["last_status"] == "ok"
    assert tasks["nightly"]["failures"][0]["error_type"] == "exception"
    assert "ConnectionError: database is gone" in tasks["nightly"]["failures"][0]["message"]
    assert 0 < tasks["web"]["duration_p50"] <= tasks["web"]["duration_p95"] < 5
    assert tasks["queue"]["last_status"] == "critical"

    # Per check: time in each state, and the outages with start, end and duration.
    checks = {c["task"]: c for c in r["checks"]}
    outages = checks["web"]["outages"]
    assert len(outages) == 1
    assert outages[0]["worst"] == "critical"
    assert outages[0]["duration_s"] == pytest.approx(3 * 3600, abs=5)
    # runs start 5 minutes into each hour of the day; from :55 on that is the next hour
    assert outages[0]["start"].startswith(
        (history.start + timedelta(hours=9, minutes=5)).isoformat()[:13])
    assert checks["web"]["time_in_state"]["critical"] == pytest.approx(3 * 3600, abs=5)
    assert checks["queue"]["outages"][-1]["end"] is None, "still going"
    assert checks["web"]["ok_share"] == pytest.approx(1 - 3 / 24, abs=0.01)

    # Per cleanup: files and bytes freed, and per day.
    cleanup = next(c for c in r["cleanups"] if c["task"] == "spool-cleanup")
    assert cleanup["files_freed"] == history.deleted
    assert cleanup["bytes_freed"] == history.freed
    assert sum(d["bytes"] for d in r["bytes_freed_per_day"]) == history.freed

    # Remediation chains: what was fixed automatically, and what needed a human.
    chains = {c["check"]: c for c in r["remediations"]}
    assert chains["db"]["outcome"] == "fixed automatically"
    assert chains["db"]["fixes"][0]["task"] == "restart-db"
    assert chains["queue"]["outcome"] == "needed a human"
    assert r["totals"]["fixed_automatically"] == 1
    assert r["totals"]["needed_a_human"] == 1


def test_markdown_suits_chat(cli, history):
    text = report(cli, history, "--format", "markdown")
    assert text.startswith("# toilbox report\n\n**1 task needs attention: queue**\n\n_")
    assert "- **queue** CRITICAL now: depth 5400" in text
    assert re.search(r"\| web \| 24 \| 88% \| .* \| OK HTTP 200 in 80 ms \|", text)
    assert "| spool-cleanup |" in text
    assert "**db**: restart-db OK; verified OK: **fixed automatically**" in text
    assert "<" not in text.replace("<br>", ""), "no HTML in the markdown"


def test_html_is_self_contained_with_charts(cli, history, tmp_path):
    out = tmp_path / "report-{date}.html"
    result = cli("-c", str(history.config), "report", "--window", "24h", "--format", "html",
                 "-o", str(out))
    assert result.code == 0, result.err
    written = tmp_path / f"report-{datetime.now(UTC):%Y-%m-%d}.html"
    html = written.read_text()
    assert "1 task needs attention: queue" in result.err
    assert html.startswith("<!DOCTYPE html>")
    for marker in ("chart-timeline", "chart-durations", "chart-states", "chart-freed"):
        assert f'class="chart {marker}"' in html
    # Nothing to fetch: no scripts, stylesheets, images, fonts or links out.
    without_ns = html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert not re.search(r"<script|<link|<img|src=|url\(|@import|https?://", without_ns)
    assert "&lt;" not in html.split("<main>")[0], "the head is not double-escaped"


def own_copy(history: History, tmp_path: Path) -> str:
    """The day's state, copied: a test whose runs are recorded leaves the others' alone."""
    state = tmp_path / "state"
    shutil.copytree(history.root / "state", state)
    return str(state)


def test_the_task_type_writes_dated_files_and_honours_dry_run(history, tmp_path):
    config = yaml.safe_load(history.config.read_text())
    config["state_dir"] = own_copy(history, tmp_path)
    config["tasks"] = {"daily": {"uses": "report.summary", "with": {
        "window": "24h", "format": "markdown", "to": [str(tmp_path / "out" / "day-{date}.md")],
    }}, "elsewhere": {"uses": "report.summary", "with": {"to": [str(tmp_path / "no" / "r.md")]}}}
    path = tmp_path / "report-task.yaml"
    path.write_text(yaml.safe_dump(config))
    app = load_app(str(path))
    try:
        dry = runner.run_task(app, "daily", dry_run=True)
        assert dry.status == "ok", dry.summary
        assert not (tmp_path / "out").exists()
        (tmp_path / "out").mkdir()  # a missing directory is not created unasked: see below
        done = runner.run_task(app, "daily")
        missing = runner.run_task(app, "elsewhere")
    finally:
        app.close()
    target = tmp_path / "out" / f"day-{datetime.now(UTC):%Y-%m-%d}.md"
    assert done.summary == f"1 task needs attention: queue; written to {target}"
    assert done.data["attention"][0]["task"] == "queue"
    assert target.read_text().startswith("# toilbox report")
    assert missing.status == "critical"
    assert missing.summary == (f"cannot write {tmp_path}/no/r.md: directory {tmp_path}/no does"
                               " not exist (it is not created)")
    assert not (tmp_path / "no").exists()


def test_the_report_keeps_the_plugin_contract(toilbox_contract):
    toilbox_contract("report.summary", {"window": "1h", "format": "json", "to": ["-"]})


def test_delivers_to_apprise_urls(history, toilbox_http, toilbox_run, tmp_path):
    server = toilbox_http({"/chat": 200})
    config = {"state_dir": own_copy(history, tmp_path), "defaults": {"retry": {"attempts": 1}},
              "tasks": {"to-chat": {"uses": "report.summary", "with": {
        "window": "24h", "to": [f"json://127.0.0.1:{server.port}/chat"]}}}}
    path = tmp_path / "chat.yaml"
    path.write_text(yaml.safe_dump(config))
    app = load_app(str(path))
    try:
        done = runner.run_task(app, "to-chat")
    finally:
        app.close()
    assert done.status == "ok", done.error
    assert done.data["written"] == ["json://..."], "a URL may hold a secret: not recorded"
    sent = json.loads(server.requests[0]["body"])
    assert sent["title"] == "toilbox report: 1 task needs attention: queue"
    assert sent["message"].startswith("# toilbox report"), "chat gets the markdown"


def test_a_state_dir_without_history_fails_once(toilbox_run):
    ran = toilbox_run("report.summary", {"to": ["-"]}, attempts=3)
    # The run itself is recorded when it starts, so there is a store: an empty report.
    assert ran.status.label == "ok", ran.error
    assert ran.summary.startswith("no runs in the last 1d"), ran.summary


# -- the page in a browser ---------------------------------------------------------------------


class DevTools:
    """Chrome DevTools Protocol over --remote-debugging-pipe: no driver, no websocket."""

    def __init__(self, chromium: str, profile: Path) -> None:
        # Chromium reads commands on fd 3 and answers on fd 4; the pipe ends are moved
        # above 10 first so that putting one in place never overwrites the other.
        pipe_r, self._to_browser = os.pipe()
        self._from_browser, pipe_w = os.pipe()
        to_browser_r = fcntl.fcntl(pipe_r, fcntl.F_DUPFD, 10)
        from_browser_w = fcntl.fcntl(pipe_w, fcntl.F_DUPFD, 10)
        os.close(pipe_r)
        os.close(pipe_w)
        self.log = profile.parent / "chromium.log"
        with self.log.open("w") as stderr:
            self.process = subprocess.Popen(
                [chromium, "--headless=new", "--remote-debugging-pipe", "--no-sandbox",
                 "--disable-gpu", "--no-first-run", "--disable-extensions",
                 f"--user-data-dir={profile}", "--window-size=1000,1400"],
                pass_fds=(3, 4, to_browser_r, from_browser_w),
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
                preexec_fn=lambda: (os.dup2(to_browser_r, 3), os.dup2(from_browser_w, 4)),  # noqa: PLW1509 -- no threads here
            )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read(30)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise AssertionError(f"{method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 30) -> dict[str, Any]:
        for event in self.events:
            if event.get("method") == method:
                return event
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            event = self._read(deadline - time.monotonic())
            self.events.append(event)
            if event.get("method") == method:
                return event
        raise AssertionError(f"no {method} in {timeout}s")

    def _read(self, timeout: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._from_browser], [], [], timeout)
            if not ready:
                raise AssertionError("chromium did not answer")
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise AssertionError(f"chromium closed the pipe: {self.log.read_text()[-2000:]}")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def close(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)
        os.close(self._to_browser)
        os.close(self._from_browser)


@pytest.mark.skipif(CHROMIUM is None,
                    reason="headless Chromium not installed (Debian: apt-get install chromium)")
def test_the_html_report_renders_in_chromium(cli, history, tmp_path):
    page = tmp_path / "report.html"
    report(cli, history, "--format", "html", "-o", str(page))
    assert CHROMIUM is not None
    browser = DevTools(CHROMIUM, tmp_path / "profile")
    try:
        target = browser.send("Target.createTarget", url="about:blank")["targetId"]
        session = browser.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            browser.send(f"{domain}.enable", session)
        browser.send("Page.navigate", session, url=page.as_uri())
        browser.wait_for("Page.loadEventFired")
        counts = browser.send("Runtime.evaluate", session, returnByValue=True, expression="""
            JSON.stringify(Object.fromEntries(
              ['timeline', 'durations', 'states', 'freed'].map(kind => [kind,
                [...document.querySelectorAll('svg.chart-' + kind)]
                  .filter(svg => svg.getBoundingClientRect().width > 0 &&
                                 svg.querySelectorAll('rect, polyline, circle').length > 0)
                  .length])))""")["result"]["value"]
        height = browser.send("Runtime.evaluate", session, returnByValue=True,
                              expression="document.documentElement.scrollHeight")
        shot = browser.send("Page.captureScreenshot", session, format="png",
                            captureBeyondViewport=True, clip={
                                "x": 0, "y": 0, "width": 1000, "scale": 1,
                                "height": height["result"]["value"]})
        (tmp_path / "report.png").write_bytes(base64.b64decode(shot["data"]))
    finally:
        browser.close()
    assert json.loads(counts) == {"timeline": 1, "durations": 7, "states": 6, "freed": 1}
    errors = [e for e in browser.events
              if e.get("method") == "Runtime.exceptionThrown"
              or (e.get("method") == "Runtime.consoleAPICalled"
                  and e["params"]["type"] in ("error", "warning", "assert"))
              or (e.get("method") == "Log.entryAdded"
                  and e["params"]["entry"]["level"] in ("error", "warning"))]
    assert errors == [], errors
    fetched = [e["params"]["request"]["url"] for e in browser.events
               if e.get("method") == "Network.requestWillBeSent"]
    assert fetched == [page.as_uri()], "the page fetches nothing but itself"
    assert (tmp_path / "report.png").stat().st_size > 10_000
