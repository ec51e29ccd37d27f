"""A SIGHUP never ends the daemon: a config that breaks the loader keeps the old one.

A real `toilbox daemon`, real SIGHUPs, configs that made the loader raise (RecursionError,
runaway memory) before it was bounded.
"""

from __future__ import annotations

import os
import signal

import pytest

from tests.test_config_bounds import _billion_laughs
from tests.test_daemon import runs, start_daemon  # noqa: F401 -- start_daemon is a fixture
from tests.test_runner import wait_for

pytestmark = pytest.mark.slow

GOOD = "tasks:\n  tick: {uses: check.faults, schedule: every 1s}\n"
BROKEN = {
    "recursive alias": ("x: &a [*a]\n", "YAML alias *a refers to a value that contains it"),
    "alias bomb": (_billion_laughs(), "values once its aliases are expanded"),
    "nesting past the bound": ("x: " + "[" * 2000 + "]" * 2000 + "\n", ":3: "),
    "nesting in blocks": ("".join(f"{'  ' * i}k{i}:\n" for i in range(1200)), "nested more than"),
    "a config that became a fifo": (None, "it is a fifo, not a regular file"),
}


def test_a_reload_that_breaks_the_loader_keeps_the_old_config(start_daemon, write_config,  # noqa: F811
                                                                tmp_path):
    config = write_config(GOOD)
    daemon = start_daemon(config)
    wait_for(lambda: runs(tmp_path, "tick", "ok"), 15)
    for expected_count, (case, (body, expected)) in enumerate(BROKEN.items(), start=1):
        if body is None:
            config.unlink()
            os.mkfifo(config)
        else:
            write_config(body)
        daemon.process.send_signal(signal.SIGHUP)
        wait_for(lambda n=expected_count: len(daemon.events("config.reload_failed")) >= n
                 or daemon.process.poll() is not None, 30)
        assert daemon.process.poll() is None, f"{case}: the daemon died:\n" + \
            daemon.log_path.read_text()[-3000:]
        failed = daemon.events("config.reload_failed")[-1]
        assert str(config) in failed["error"], case
        assert expected in failed["error"], (case, failed["error"])
        assert "\n" not in failed["error"]
        count = len(runs(tmp_path, "tick", "ok"))
        wait_for(lambda c=count: len(runs(tmp_path, "tick", "ok")) > c, 15)  # the old config runs on
    assert not daemon.events("config.reloaded")
    lines = daemon.log_path.read_text().splitlines()
    assert not [line for line in lines if not line.startswith("{")], "every log line is one JSON line"
    config.unlink()
    write_config(GOOD.replace("tick", "tock"))
    daemon.process.send_signal(signal.SIGHUP)
    wait_for(lambda: daemon.events("config.reloaded"), 15)
    wait_for(lambda: runs(tmp_path, "tock", "ok"), 15)
    assert daemon.stop() == 0
