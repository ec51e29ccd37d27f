"""toilbox.testing: the fixtures plugin authors get, used here as they would use them."""

from __future__ import annotations

import json
import os
import textwrap
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pytest

import toilbox
from toilbox import testing

CLOCK_PLUGIN = """
    from pydantic import BaseModel, ConfigDict
    import toilbox

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        url: str | None = None

    def tell(ctx, params):
        '''Say what time it is, and fetch a URL if given.'''
        data = {"now": ctx.now().isoformat()}
        if params.url:
            import urllib.request
            with urllib.request.urlopen(params.url, timeout=5) as answer:
                data["body"] = answer.read().decode()
        ctx.log.info("clock.told", now=data["now"])
        return toilbox.Result(toilbox.Status.OK, "told", data=data)

    @toilbox.hookimpl
    def register_task_types(register):
        register("check.clock", tell, params=Params)
"""

CARELESS_PLUGIN = """
    from pathlib import Path
    from pydantic import BaseModel
    import toilbox

    class Params(BaseModel):  # accepts any key: a typo goes unnoticed
        root: str
        fail: bool = False

    def careless(ctx, params):
        if params.fail:
            raise RuntimeError("the root is gone")  # should be TaskFailed: retrying won't help
        for path in Path(params.root).glob("*.tmp"):
            path.unlink()  # ignores ctx.dry_run
        return toilbox.Result(toilbox.Status.OK, "cleaned")

    @toilbox.hookimpl
    def register_task_types(register):
        register("cleanup.careless", careless, params=Params)
"""


@pytest.fixture
def plugins_dir(plugin_dir: Path) -> Path:
    """The faults plugin (tests/data), a clock-reading plugin and a careless cleanup."""
    (plugin_dir / "clock.py").write_text(textwrap.dedent(CLOCK_PLUGIN))
    (plugin_dir / "careless.py").write_text(textwrap.dedent(CARELESS_PLUGIN))
    return plugin_dir


def test_the_plugin_is_registered_through_pytest11(pytestconfig):
    from importlib.metadata import entry_points

    assert any(ep.value == "toilbox.testing" for ep in entry_points(group="pytest11"))
    assert pytestconfig.pluginmanager.get_plugin("toilbox") is testing


def test_run_goes_through_the_real_runner_once(plugins_dir, toilbox_run, toilbox_log):
    ran = toilbox_run("check.faults", {"status": "warning", "summary": "getting full"},
                      plugin_dirs=[plugins_dir])
    assert ran.status is toilbox.Status.WARNING
    assert ran.summary == "getting full"
    assert ran.metrics["answer"] == toilbox.Metric(42, "s", 50, 60)
    assert ran.data["dry_run"] is False
    assert ran.error is None
    assert ran.result.status is toilbox.Status.WARNING
    # The task ran in a child process of its own; its log events are captured with the runner's.
    events = [e["event"] for e in ran.events]
    assert events[0] == "run.started"
    assert "faults.acting" in events
    assert events[-1] == "run.finished"
    assert toilbox_log.named("faults.acting")[0]["task"] == "under-test"


def test_run_makes_no_retries_and_reports_the_error(plugins_dir, toilbox_run):
    ran = toilbox_run("check.faults", {"mode": "raise"}, plugin_dirs=[plugins_dir])
    assert ran.failed
    assert ran.attempts == 1
    assert ran.status is toilbox.Status.UNKNOWN, "a check that raised could not check"
    assert ran.error is not None
    assert ran.error["type"] == "exception"
    assert "RuntimeError: boom" in ran.error["message"]
    assert "Traceback" in ran.error["traceback"]


def test_run_has_a_timeout(plugins_dir, toilbox_run):
    started = time.monotonic()
    ran = toilbox_run("check.faults", {"mode": "hang"}, timeout="0.5s", plugin_dirs=[plugins_dir])
    assert ran.error is not None
    assert ran.error["type"] == "timeout"
    assert time.monotonic() - started < 10


def test_dry_run_reaches_the_task(plugins_dir, toilbox_run):
    assert toilbox_run("check.faults", plugin_dirs=[plugins_dir], dry_run=True).data["dry_run"]


def test_clock_freezes_and_steps(plugins_dir, toilbox_clock, toilbox_run):
    toilbox_clock.freeze("2030-01-01T12:00:00+00:00")
    first = toilbox_run("check.clock", plugin_dirs=[plugins_dir])
    assert first.data["now"] == "2030-01-01T12:00:00+00:00"
    toilbox_clock.step("90m")
    second = toilbox_run("check.clock", plugin_dirs=[plugins_dir])
    assert second.data["now"] == "2030-01-01T13:30:00+00:00"


def test_clock_ticks_and_is_real_until_frozen(toilbox_clock):
    before = datetime.now(UTC)
    assert before <= toilbox_clock.now() <= datetime.now(UTC)
    toilbox_clock.freeze(datetime(2030, 1, 1, tzinfo=UTC))
    toilbox_clock.tick("1s")
    assert [toilbox_clock.now().second for _ in range(3)] == [0, 1, 2]


def test_files_have_the_ages_and_sizes_asked_for(toilbox_files, toilbox_clock):
    now = toilbox_clock.freeze("2030-01-01T00:00:00+00:00").timestamp()
    root = toilbox_files({
        "old.log": "8d",
        "big.bin": {"size": "1MiB", "age": "1h"},
        "notes.txt": {"content": "hello"},
        "deep/er/file": "2d",
        "deep/": "3d",
        "empty/": None,
        "link": {"symlink": "old.log"},
    })
    assert root == root.parent / "files"
    assert (root / "old.log").stat().st_mtime == now - 8 * 86400
    assert (root / "big.bin").stat().st_size == 1024**2
    assert (root / "notes.txt").read_text() == "hello"
    assert (root / "deep").stat().st_mtime == now - 3 * 86400, "dirs are aged after their files"
    assert (root / "deep/er/file").stat().st_mtime == now - 2 * 86400
    assert (root / "empty").is_dir()
    assert os.readlink(root / "link") == "old.log"


def test_http_serves_scripted_responses(toilbox_http):
    server = toilbox_http({
        "/health": "fine",
        "/flaky": [503, testing.Response(200, "recovered", {"X-Try": "2"})],
        "/slow": testing.Response(body="late", delay=0.3),
    })

    def get(path: str) -> tuple[int, str, dict[str, str]]:
        try:
            with urllib.request.urlopen(server.url(path), timeout=5) as answer:
                return answer.status, answer.read().decode(), dict(answer.headers)
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(), dict(exc.headers)

    assert get("/health")[:2] == (200, "fine")
    assert get("/flaky")[0] == 503
    status, body, headers = get("/flaky")
    assert (status, body, headers["X-Try"]) == (200, "recovered", "2")
    assert get("/flaky")[:2] == (200, "recovered"), "the last response repeats"
    assert get("/nowhere")[0] == 404
    started = time.monotonic()
    assert get("/slow")[1] == "late"
    assert time.monotonic() - started >= 0.3
    server.script("/health", 500)
    assert get("/health")[0] == 500
    request = urllib.request.Request(server.url("/hook"), data=b'{"a": 1}', method="POST")
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(request, timeout=5)
    assert [r["path"] for r in server.requests][:2] == ["/health", "/flaky"]
    assert server.requests[-1]["method"] == "POST"
    assert json.loads(server.requests[-1]["body"]) == {"a": 1}


def test_a_task_reaches_the_http_server(plugins_dir, toilbox_http, toilbox_run):
    server = toilbox_http({"/version": "1.2.3"})
    ran = toilbox_run("check.clock", {"url": server.url("/version")}, plugin_dirs=[plugins_dir])
    assert ran.data["body"] == "1.2.3"
    assert server.requests[0]["headers"]["Host"] == f"127.0.0.1:{server.port}"


def test_context_calls_a_task_function_directly(plugins_dir, toilbox_context, toilbox_log,
                                                toilbox_clock):
    from toilbox import plugins

    toilbox_clock.freeze("2031-02-03T04:05:06+00:00")
    task_type = plugins.load([plugins_dir]).task_types["check.clock"]
    ctx = toilbox_context(dry_run=True)
    assert ctx.dry_run
    assert ctx.state_dir.is_dir()
    result = task_type.fn(ctx, task_type.params())
    assert result.data["now"] == "2031-02-03T04:05:06+00:00"
    assert toilbox_log.named("clock.told") == [
        {"level": "info", "event": "clock.told", "task": "under-test",
         "now": "2031-02-03T04:05:06+00:00"}
    ]


def test_contract_passes_for_a_well_behaved_check(plugins_dir, toilbox_contract):
    ran = toilbox_contract("check.faults", {"status": "ok"}, failing={"mode": "fail"},
                           plugin_dirs=[plugins_dir])
    assert ran.data["dry_run"] is True


def test_contract_passes_for_the_standard_cleanup(toilbox_files, toilbox_contract):
    root = toilbox_files({"old.tmp": {"age": "9d", "size": "10KiB"}, "new.tmp": "1h"})
    ran = toilbox_contract("cleanup.files", {"roots": [root], "older_than": "7d"})
    assert (root / "old.tmp").exists()
    assert ran.status is toilbox.Status.OK


def test_contract_names_every_breach(plugins_dir, toilbox_files, toilbox_contract):
    root = toilbox_files({"a.tmp": "1d"})
    with pytest.raises(AssertionError) as caught:
        toilbox_contract("cleanup.careless", {"root": root},
                         failing={"root": root, "fail": True}, plugin_dirs=[plugins_dir])
    message = str(caught.value)
    assert "cleanup.careless breaks the plugin contract" in message
    assert "no description" in message
    assert "accepts unknown keys" in message
    assert "a dry run changed files: files/a.tmp" in message
    assert "not with toilbox.TaskFailed" in message


RAW_DEFAULTS_PLUGIN = '''
    from pydantic import BaseModel, ConfigDict, Field
    import toilbox
    from toilbox.units import ConfigPath, ExplicitDuration

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        max_age: ExplicitDuration = "26h"  # stays the string "26h"
        min_age: ExplicitDuration = 3600  # seconds: fine
        since: ExplicitDuration = Field("1d", validate_default=True)
        where: ConfigPath = "/"

    def raw(ctx, params):
        """Compare an age with a string."""
        return toilbox.Result(toilbox.Status.OK, "fine")

    @toilbox.hookimpl
    def register_task_types(register):
        register("check.raw", raw, params=Params)
'''


def test_contract_names_a_default_left_unparsed(plugins_dir, toilbox_contract):
    (plugins_dir / "raw.py").write_text(textwrap.dedent(RAW_DEFAULTS_PLUGIN))
    with pytest.raises(AssertionError) as caught:
        toilbox_contract("check.raw", plugin_dirs=[plugins_dir])
    problems = str(caught.value).splitlines()[1:]
    assert problems == [
        "- the default of max_age is '26h', but from a config it would be 93600.0: write"
        " Field('26h', validate_default=True), or 93600.0",
        "- the default of where is '/', but from a config it would be PosixPath('/'): write"
        " Field('/', validate_default=True), or PosixPath('/')",
    ]


def test_contract_refuses_an_unknown_type(toilbox_contract):
    with pytest.raises(AssertionError, match=r'unknown task type "check\.nope"'):
        toilbox_contract("check.nope")


def test_cli_runs_the_real_command(plugins_dir, toilbox_cli):
    listed = toilbox_cli("plugins", "--json").json
    assert "reports" in [p["name"] for p in listed]
    done = toilbox_cli.run("check.faults", {"status": "critical"}, plugin_dirs=[plugins_dir])
    assert done.code == 2
    assert done.json["status"] == "critical"
    assert '"event": "run.finished"' in done.err
