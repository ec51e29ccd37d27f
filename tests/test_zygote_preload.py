"""A task type's ``preload`` runs once, in the daemon's zygote, and every attempt inherits
what it loaded; a preload that fails costs only the saving, one that starts a thread is
refused (a zygote with threads could not fork safely).  Real ``toilbox daemon`` processes;
the standard checks that import a heavy library when they run preload it."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from tests.test_daemon import DaemonProcess, runs, start_daemon  # noqa: F401 -- a fixture
from tests.test_runner import wait_for

PLUGIN = '''
import os, threading
from pydantic import BaseModel
import toilbox

LOADED = []

class Params(BaseModel):
    pass

def probe(ctx, params):
    return toilbox.Result(toilbox.Status.OK, "probed",
                          data={"loaded": LOADED, "pid": os.getpid()})

def preload():
    LOADED.append(os.getpid())
    HOW

probe.preload = preload

@toilbox.hookimpl
def register_task_types(register):
    register("check.probe", probe, params=Params)
'''

TASKS = """
    tasks:
      a: {uses: check.probe, schedule: every 1s}
      b: {uses: check.probe, schedule: every 1s}
"""


def probe_config(write_config, plugin_dir, how: str):
    (plugin_dir / "probe.py").write_text(PLUGIN.replace("HOW", how))
    return write_config(TASKS)


@pytest.mark.slow
def test_preload_runs_once_in_the_zygote_and_attempts_inherit_it(
    start_daemon, write_config, plugin_dir, tmp_path  # noqa: F811 -- the fixture
):
    daemon = start_daemon(probe_config(write_config, plugin_dir, "pass"))
    wait_for(lambda: len(runs(tmp_path, "a", "ok")) >= 2 and runs(tmp_path, "b", "ok"), 15)
    assert daemon.stop() == 0
    zygote = next(e["pid"] for e in daemon.events("zygote.started") if not e.get("spare"))
    done = runs(tmp_path, "a", "ok") + runs(tmp_path, "b", "ok")
    # Once for every task of the type, in the zygote: not in the daemon, not in each run.
    assert all(r.data["loaded"] == [zygote] for r in done)
    assert len({r.data["pid"] for r in done}) == len(done)
    assert daemon.process.pid != zygote


@pytest.mark.slow
def test_a_failing_preload_is_logged_and_attempts_still_run(
    start_daemon, write_config, plugin_dir, tmp_path  # noqa: F811 -- the fixture
):
    how = "raise RuntimeError('no network here')"
    daemon = start_daemon(probe_config(write_config, plugin_dir, how))
    wait_for(lambda: runs(tmp_path, "a", "ok"), 15)
    assert daemon.stop() == 0
    failed = daemon.events("zygote.preload_failed")
    assert len(failed) == 1
    assert "no network here" in failed[0]["error"]


@pytest.mark.slow
def test_a_preload_that_starts_a_thread_is_refused(write_config, plugin_dir, tmp_path):
    how = "threading.Thread(target=threading.Event().wait, daemon=True).start()"
    daemon = DaemonProcess(probe_config(write_config, plugin_dir, how), tmp_path)
    assert daemon.process.wait(timeout=30) != 0
    daemon.log_file.close()
    assert daemon.events("zygote.preload_started_a_thread")
    assert not daemon.events("daemon.started")
    assert runs(tmp_path) == []


def test_the_standard_checks_preload_the_libraries_their_runs_import(write_config, tmp_path):
    """httpx, cryptography and psutil are imported inside the task functions (so that
    `toilbox run` of another type does not pay for them); in the daemon the zygote
    imports them once.  A fresh process: this one may have imported them already."""
    config = write_config("""
        tasks:
          web: {uses: check.http, schedule: every 1m, with: {url: "http://127.0.0.1:9/"}}
          cert: {uses: check.tls, schedule: every 1m, with: {host: 127.0.0.1, port: 9}}
          proc: {uses: check.process, schedule: every 1m, with: {name: nothing}}
          root: {uses: check.disk, schedule: every 1m, with: {path: /}}
    """)
    code = textwrap.dedent(f"""
        import sys
        from toilbox.app import load_app
        from toilbox.daemon import preloads
        loaders = preloads(load_app({str(config)!r}))
        print(sorted(f.__module__ for f in loaders))
        heavy = ("httpx", "cryptography.x509", "psutil")
        print([m for m in heavy if m in sys.modules])
        for loader in loaders:
            loader()
        print([m for m in heavy if m in sys.modules])
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, cwd=tmp_path)
    chosen, before, after = done.stdout.splitlines()
    assert chosen == str(["toilbox_checks.http_check", "toilbox_checks.process",
                          "toilbox_checks.tls"])
    assert before == "[]"
    assert after == str(["httpx", "cryptography.x509", "psutil"])
