"""Fixtures for plugin authors: a pytest plugin, active wherever toilbox is installed.

Every fixture is named ``toilbox_*`` so it never shadows one of yours::

    def test_backup_is_fresh(toilbox_files, toilbox_run):
        root = toilbox_files({"backup.tar": {"age": "2h", "size": "1MiB"}})
        ran = toilbox_run("check.backup-age", {"path": str(root / "backup.tar")})
        assert ran.status is toilbox.Status.OK

- ``toilbox_run(type, params)`` runs a task type once through the real runner (its own
  child process, a timeout, no retries) and returns a ``TaskRun``: the Result's fields
  plus the run's ``error``, ``attempts``, ``output`` and log ``events``.
- ``toilbox_cli`` does the same through a real ``toilbox`` process (``.run(...)``), or
  runs any other command (``toilbox_cli("plugins", "--json")``).
- ``toilbox_files(tree)`` builds files and directories with given ages and sizes.
- ``toilbox_clock`` freezes or steps the clock a task reads through ``ctx.now()``.
- ``toilbox_http(routes)`` serves scripted HTTP responses on 127.0.0.1.
- ``toilbox_log`` holds the structlog events of every run (and of ``toilbox_context``).
- ``toilbox_context()`` makes a TaskContext, to call a task function directly.
- ``toilbox_contract(type, params)`` checks what every task type owes its users.

A plugin is found as toilbox finds it: installed (``pip install -e .``, the ``toilbox``
entry-point group) or, with ``plugin_dirs=[...]``, as a file in a plugin directory.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from toilbox.context import TaskContext
from toilbox.contract import check_contract
from toilbox.harness import (
    HARNESS_DIR,
    TASK,
    CliRun,
    Clock,
    Harness,
    LogCapture,
    TaskRun,
    build_tree,
    snapshot,
)
from toilbox.loopback import LoopbackServer, Response, RouteSpec

__all__ = [
    "CliRun",
    "Clock",
    "Harness",
    "LogCapture",
    "LoopbackServer",
    "Response",
    "TaskRun",
    "build_tree",
    "check_contract",
    "snapshot",
]


# -- fixtures -----------------------------------------------------------------------------
# Each fixture gives an object whose call signature is documented (docs/plugin-reference.md
# is generated from these classes): a plain closure would hide it.


class CliFixture:
    """Real ``toilbox`` processes (``python -m toilbox``, cwd ``tmp_path/.toilbox``).

    ``toilbox_cli("plugins", "--json")`` runs any command; ``.run(type, params)`` runs a
    task type through ``toilbox run --json``.  ``toilbox_clock`` does not reach these
    processes: they read the real clock.
    """

    def __init__(self, harness: Harness) -> None:
        self.harness = harness

    def __call__(self, *args: str, env: Mapping[str, str] | None = None) -> CliRun:
        """``toilbox ARGS`` (with ``--log-format json``); ``env`` is added to the environment."""
        return self.harness.cli(*args, env=env)

    def config(
        self,
        tasks: Mapping[str, Mapping[str, Any]],
        *,
        plugin_dirs: Sequence[str | os.PathLike[str]] = (),
        timeout: str | float = "30s",
        attempts: int = 1,
    ) -> Path:
        """Write a config with these tasks (``{name: {"uses": ..., "with": ...}}``) into
        ``tmp_path``; its path, for ``toilbox_cli("-c", str(path), ...)``."""
        return self.harness.config(
            tasks, plugin_dirs=plugin_dirs, timeout=timeout, attempts=attempts
        )

    def run(
        self,
        type_name: str,
        params: Mapping[str, Any] | None = None,
        *args: str,
        plugin_dirs: Sequence[str | os.PathLike[str]] = (),
        env: Mapping[str, str] | None = None,
    ) -> CliRun:
        """``toilbox run`` of a one-task config, with ``--json`` and ``args`` (such as
        ``"--dry-run"``); the exit code is the status, ``.json`` the result."""
        config = self.harness.config(
            {TASK: {"uses": type_name, "with": dict(params or {})}}, plugin_dirs=plugin_dirs
        )
        return self.harness.cli("-c", str(config), "run", TASK, "--json", *args, env=env)


class FilesFixture:
    """Files and directories with given ages and sizes, ages counted back from
    ``toilbox_clock``."""

    def __init__(self, tmp_path: Path, clock: Clock) -> None:
        self._tmp_path = tmp_path
        self._clock = clock

    def __call__(
        self, tree: Mapping[str, Any], root: str | os.PathLike[str] | None = None
    ) -> Path:
        """Make ``tree`` under ``root`` (default ``tmp_path/files``) and return the root.

        Keys are relative paths; a key ending in ``/`` is a directory.  A value is an age
        (``"8d"``), a size and age (``{"age": "8d", "size": "1MiB"}``), text
        (``{"content": "..."}``), a symlink (``{"symlink": "target"}``) or None (new).
        """
        base = Path(root) if root is not None else self._tmp_path / "files"
        return build_tree(base, tree, self._clock.timestamp())


class HttpFixture:
    """HTTP servers on 127.0.0.1 answering from a script; stopped after the test."""

    def __init__(self, tmp_path: Path) -> None:
        self._tmp_path = tmp_path
        self.servers: list[LoopbackServer] = []

    def __call__(self, routes: Mapping[str, RouteSpec] | None = None) -> LoopbackServer:
        """Start a server: ``toilbox_http({"/health": 200, "/flaky": [503, "ok"]})``.

        A route maps a path to a Response, a status code, a body, or a list of them given
        in turn (the last one repeats).  See LoopbackServer for what it gives.
        """
        directory = self._tmp_path / HARNESS_DIR / f"http-{len(self.servers)}"
        directory.mkdir(parents=True, exist_ok=True)
        server = LoopbackServer(directory, routes or {})
        self.servers.append(server)
        return server

    def close(self) -> None:
        for server in self.servers:
            server.close()


class ContextFixture:
    """TaskContexts to call a task function directly, in the test's own process (no child
    process, no timeout): ``task_type.fn(toilbox_context(dry_run=True), params)``."""

    def __init__(self, tmp_path: Path, clock: Clock, log: LogCapture) -> None:
        self._tmp_path = tmp_path
        self._clock = clock
        self._log = log

    def __call__(self, task: str = TASK, **fields: Any) -> TaskContext:
        """A TaskContext for ``task``; ``fields`` set any of its fields.  Its ``log`` lands
        in ``toilbox_log``, ``now()`` reads ``toilbox_clock``, ``state_dir`` is made under
        ``tmp_path/.toilbox`` and ``config_dir`` is ``tmp_path``."""
        state_dir = self._tmp_path / HARNESS_DIR / "state" / "tasks" / task
        state_dir.mkdir(parents=True, exist_ok=True)
        values: dict[str, Any] = {
            "task": task,
            "run_id": "test-run",
            "attempt": 1,
            "dry_run": False,
            "log": self._log.logger(task=task),
            "state_dir": state_dir,
            "clock": self._clock.now,
            "config_dir": self._tmp_path,
            **fields,
        }
        return TaskContext(**values)


class ContractFixture:
    """What every task type owes its users, checked in one call."""

    def __init__(self, harness: Harness, tmp_path: Path) -> None:
        self._harness = harness
        self._tmp_path = tmp_path

    def __call__(
        self,
        type_name: str,
        params: Mapping[str, Any] | None = None,
        *,
        failing: Mapping[str, Any] | None = None,
        plugin_dirs: Sequence[str | os.PathLike[str]] = (),
    ) -> TaskRun:
        """Raise AssertionError listing each breach; return the dry run.

        The type is registered with a description and a params model that forbids unknown
        keys, has a JSON Schema and no default left unparsed (``max_age: ExplicitDuration
        = "26h"`` stays a string: pydantic does not validate defaults); ``params``
        validate, and a dry run with them returns a Result whose data and metrics survive
        JSON and changes nothing under ``tmp_path``;
        with ``failing`` params, the task raises ``toilbox.TaskFailed`` and is not retried.
        """
        return check_contract(
            self._harness,
            self._tmp_path,
            type_name,
            params,
            failing=failing,
            plugin_dirs=plugin_dirs,
        )


@pytest.fixture
def toilbox_clock() -> Clock:
    """The clock tasks read through ``ctx.now()``: ``freeze()``, ``step("1h")``, ``tick("1s")``."""
    return Clock()


@pytest.fixture
def toilbox_log() -> LogCapture:
    """Structlog events of this test's runs: ``toilbox_log.named("run.finished")``."""
    return LogCapture()


@pytest.fixture
def toilbox_harness(tmp_path: Path, toilbox_clock: Clock, toilbox_log: LogCapture) -> Harness:
    """Configs, runs and CLI calls under ``tmp_path/.toilbox``; the other fixtures use it."""
    return Harness(tmp_path, toilbox_clock, toilbox_log)


@pytest.fixture
def toilbox_run(toilbox_harness: Harness) -> Callable[..., TaskRun]:
    """One run of a task type through the real runner, without retries: Harness.run."""
    return toilbox_harness.run


@pytest.fixture
def toilbox_cli(toilbox_harness: Harness) -> CliFixture:
    """Real ``toilbox`` processes: a CliFixture."""
    return CliFixture(toilbox_harness)


@pytest.fixture
def toilbox_files(tmp_path: Path, toilbox_clock: Clock) -> FilesFixture:
    """File trees with ages and sizes: a FilesFixture."""
    return FilesFixture(tmp_path, toilbox_clock)


@pytest.fixture
def toilbox_http(tmp_path: Path) -> Iterator[HttpFixture]:
    """Scripted HTTP servers on 127.0.0.1: an HttpFixture."""
    servers = HttpFixture(tmp_path)
    yield servers
    servers.close()


@pytest.fixture
def toilbox_context(
    tmp_path: Path, toilbox_clock: Clock, toilbox_log: LogCapture
) -> ContextFixture:
    """TaskContexts for direct calls: a ContextFixture."""
    return ContextFixture(tmp_path, toilbox_clock, toilbox_log)


@pytest.fixture
def toilbox_contract(toilbox_harness: Harness, tmp_path: Path) -> ContractFixture:
    """The plugin contract check: a ContractFixture."""
    return ContractFixture(toilbox_harness, tmp_path)
