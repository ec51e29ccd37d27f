"""What the ``toilbox_*`` fixtures stand on: the clock, log capture, runs through the
real runner and file trees.  ``toilbox.testing`` is the pytest plugin that hands them
to tests; ``toilbox.contract`` checks the plugin contract.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog
import yaml

from toilbox.context import TaskContext
from toilbox.result import Metric, Result, Status
from toilbox.units import parse_duration, parse_size

TASK = "under-test"
HARNESS_DIR = ".toilbox"  # under the test's tmp_path: state and logs of the runs


# -- the clock --------------------------------------------------------------------------


class Clock:
    """The clock tasks read with ``ctx.now()``: real until frozen, then moved by hand.

    It reaches task functions called through ``toilbox_context`` and runs made by
    ``toilbox_run`` and ``toilbox_contract`` (their task process is forked from the test,
    so the task sees the clock as it was when the run started).  It does not reach a
    ``toilbox`` process started by ``toilbox_cli``, which reads the real clock.
    """

    def __init__(self) -> None:
        self._frozen: datetime | None = None
        self._tick = timedelta(0)

    @property
    def frozen(self) -> bool:
        """True once ``freeze``, ``step`` or ``tick`` has been called."""
        return self._frozen is not None

    def now(self) -> datetime:
        """What ``ctx.now()`` returns: the real time until frozen (aware, UTC)."""
        if self._frozen is None:
            return datetime.now(UTC)
        current = self._frozen
        self._frozen += self._tick
        return current

    def freeze(self, when: datetime | str | None = None) -> datetime:
        """Stop the clock at ``when`` (a datetime or ISO string; naive is UTC), default now."""
        if isinstance(when, str):
            when = datetime.fromisoformat(when)
        when = when or datetime.now(UTC)
        self._frozen = when if when.tzinfo else when.replace(tzinfo=UTC)
        return self._frozen

    def step(self, by: timedelta | str | float) -> datetime:
        """Move the clock on by ``by`` (``"90m"``, seconds, a timedelta); freezes it first."""
        if self._frozen is None:
            self.freeze()
        self._frozen = (self._frozen or datetime.now(UTC)) + _delta(by)
        return self._frozen

    def tick(self, by: timedelta | str | float) -> None:
        """Advance the clock by ``by`` at every reading, for code that measures elapsed time."""
        if self._frozen is None:
            self.freeze()
        self._tick = _delta(by)

    def timestamp(self) -> float:
        """Now as a Unix time (for file ages), without advancing a ticking clock."""
        return (self._frozen or datetime.now(UTC)).timestamp()


def _delta(value: timedelta | str | float) -> timedelta:
    return value if isinstance(value, timedelta) else timedelta(seconds=parse_duration(value))


# -- log capture --------------------------------------------------------------------------


class LogCapture:
    """Structlog events as dicts: every run's (the runner's and the task's own) and those
    of loggers made by ``toilbox_context``."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        """Every event so far, in order: ``{"event": ..., "level": ..., **fields}``."""

    def named(self, event: str) -> list[dict[str, Any]]:
        """The events of that name: ``toilbox_log.named("run.finished")``."""
        return [e for e in self.events if e.get("event") == event]

    def logger(self, **bound: Any) -> Any:
        """A structlog logger, bound to ``bound``, whose events land here."""

        def capture(logger: Any, method: str, event_dict: Any) -> Any:
            self.events.append({"level": method, **event_dict})
            raise structlog.DropEvent

        return structlog.wrap_logger(None, processors=[capture]).bind(**bound)


# -- runs ---------------------------------------------------------------------------------


@dataclass
class TaskRun:
    """One run's outcome: the Result's fields, plus what the runner recorded."""

    status: Status
    """The verdict; CRITICAL (or UNKNOWN) with an ``error`` when the task gave none."""
    summary: str
    """The Result's one-line summary (or the error's message)."""
    metrics: dict[str, Metric]
    """The Result's metrics, each a Metric (a bare number became its value)."""
    data: dict[str, Any]
    """The Result's data, after a trip through JSON."""
    details: str
    """The Result's longer text."""
    error: dict[str, Any] | None
    """None, or why there is no Result: ``{"type": "failed" (TaskFailed), "timeout",
    "crashed", "exception", "bad-result", ..., "message": ..., "traceback": ...}``."""
    attempts: int
    """How many attempts were made (``toilbox_run`` makes one unless told ``attempts=``)."""
    output: str
    """What the task printed to stdout and stderr."""
    run_id: str
    """The run's id, as ``toilbox history`` would show it."""
    events: list[dict[str, Any]] = field(default_factory=list)
    """The run's log events (the runner's and the task's own), as dicts."""
    record: Any = field(default=None, repr=False)
    """The stored ``toilbox.models.RunRecord``."""

    @property
    def result(self) -> Result:
        """The outcome as a ``toilbox.Result``."""
        return Result(self.status, self.summary, dict(self.metrics), self.data, self.details)

    @property
    def failed(self) -> bool:
        """The task did not return a Result (it raised, timed out, crashed ...)."""
        return self.error is not None


@dataclass
class CliRun:
    """A finished ``toilbox`` process."""

    code: int
    """Its exit code: for ``run``, the Nagios status (0 OK .. 3 UNKNOWN, also config errors)."""
    out: str
    """What it printed on stdout."""
    err: str
    """What it printed on stderr: its JSON log lines, and ``toilbox: error: ...``."""

    @property
    def json(self) -> Any:
        """stdout read as JSON (for ``--json`` commands)."""
        return json.loads(self.out)


def plain_params(value: Any) -> Any:
    """Params as YAML can hold them: paths become strings."""
    if isinstance(value, Mapping):
        return {str(k): plain_params(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain_params(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


class Harness:
    """Configs, runs and CLI calls for one test: state and logs under ``tmp_path/.toilbox``.

    The configs it writes are ``tmp_path/.toilbox-N.yaml``, so a relative path in a task's
    params is read from the test's ``tmp_path``, as it would be from a config file there.
    """

    def __init__(self, tmp_path: Path, clock: Clock, log: LogCapture) -> None:
        self.tmp_path = tmp_path
        self.root = tmp_path / HARNESS_DIR
        self.root.mkdir(exist_ok=True)
        self.state_dir = self.root / "state"
        self.clock = clock
        self.log = log
        self.configs: list[Path] = []

    def config(
        self,
        tasks: Mapping[str, Mapping[str, Any]],
        *,
        plugin_dirs: Sequence[str | os.PathLike[str]] = (),
        timeout: str | float = "30s",
        attempts: int = 1,
    ) -> Path:
        """Write a config with these tasks (``{name: {"uses": ..., "with": ...}}``)."""
        path = self.tmp_path / f"{HARNESS_DIR}-{len(self.configs) + 1}.yaml"
        self.configs.append(path)
        body = {
            "state_dir": str(self.state_dir),
            "plugin_dirs": [os.fspath(Path(d).absolute()) for d in plugin_dirs],
            "defaults": {
                "timeout": timeout,
                "retry": {"attempts": attempts, "backoff": "0s", "max_backoff": "0s"},
            },
            "tasks": plain_params(tasks),
        }
        path.write_text(yaml.safe_dump(body, sort_keys=False))
        return path

    def run(
        self,
        type_name: str,
        params: Mapping[str, Any] | None = None,
        *,
        dry_run: bool = False,
        force: bool = False,
        timeout: str | float = "30s",
        attempts: int = 1,
        plugin_dirs: Sequence[str | os.PathLike[str]] = (),
    ) -> TaskRun:
        """Run ``type_name`` once through the real runner: a child process, the timeout,
        and ``attempts`` attempts (1: no retries).  ``params`` is the task's ``with:``
        (Paths become strings; a relative path is read from the test's ``tmp_path``).
        ``plugin_dirs`` loads plugin files as a config's ``plugin_dirs`` would; an
        installed plugin needs none.  Returns a TaskRun, whatever the outcome."""
        from toilbox.app import load_app
        from toilbox.runner import run_task

        config = self.config(
            {TASK: {"uses": type_name, "with": dict(params or {})}},
            plugin_dirs=plugin_dirs,
            timeout=timeout,
            attempts=attempts,
        )
        app = load_app(str(config))
        log_path = self.root / f"run-{len(self.configs)}.log"
        try:
            with _logs_to(log_path), _clock_in_context(self.clock):
                record = run_task(app, TASK, dry_run=dry_run, force=force)
        finally:
            app.close()
        events = _read_events(log_path)
        self.log.events.extend(events)
        return TaskRun(
            status=Status.from_label(record.status),
            summary=record.summary,
            metrics={k: Metric.from_dict(v) for k, v in record.metrics.items()},
            data=record.data,
            details=record.details,
            error=record.error,
            attempts=record.attempts,
            output=record.output,
            run_id=record.run_id,
            events=events,
            record=record,
        )

    def cli(self, *args: str, env: Mapping[str, str] | None = None, timeout: float = 60) -> CliRun:
        """Run a real ``toilbox`` process (``python -m toilbox ARGS``) in the harness dir."""
        full_env = {
            **os.environ,
            "XDG_STATE_HOME": str(self.root / "xdg-state"),
            **(env or {}),
        }
        full_env.pop("TOILBOX_CONFIG", None)
        done = subprocess.run(
            [sys.executable, "-m", "toilbox", "--log-format", "json", "--log-level", "info", *args],
            capture_output=True,
            text=True,
            env=full_env,
            timeout=timeout,
            cwd=self.root,
            check=False,
        )
        return CliRun(done.returncode, done.stdout, done.stderr)


@contextlib.contextmanager
def _logs_to(path: Path) -> Iterator[None]:
    """JSON log lines of the runner and of its task process into ``path``.

    The task process writes its logs to its inherited stderr, so fd 2 points at the file
    for the run; the runner's own logger is configured to write there too.
    """
    from toilbox import log

    saved = dict(log._settings)
    sys.stderr.flush()
    with path.open("a", encoding="utf-8", buffering=1) as sink:
        saved_fd = os.dup(2)
        try:
            os.dup2(sink.fileno(), 2)
            log.configure("json", "debug", sink)
            yield
        finally:
            sink.flush()
            os.dup2(saved_fd, 2)
            os.close(saved_fd)
            log.configure(saved["format"], saved["level"], sys.stderr)


@contextlib.contextmanager
def _clock_in_context(clock: Clock) -> Iterator[None]:
    if not clock.frozen:
        yield
        return
    original = TaskContext.now

    def now(ctx: TaskContext) -> datetime:
        return clock.now()

    TaskContext.now = now  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        TaskContext.now = original  # type: ignore[method-assign]


def _read_events(path: Path) -> list[dict[str, Any]]:
    events = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            event = json.loads(line)
            if isinstance(event, dict) and "event" in event:
                events.append(event)
    return events


# -- file trees ---------------------------------------------------------------------------


def build_tree(root: Path, tree: Mapping[str, Any], now: float) -> Path:
    """Make ``tree`` under ``root``.

    Keys are relative paths; a key ending in ``/`` is a directory.  A value is an age
    (``"8d"``), a size and age (``{"age": "8d", "size": "1MiB"}``), text content
    (``{"content": "..."}``), a symlink (``{"symlink": "target"}``) or None (new, empty).
    Directories get their ages after their contents are made.
    """
    root.mkdir(parents=True, exist_ok=True)
    dir_ages: list[tuple[Path, float]] = []
    for name, spec in tree.items():
        path = root / name
        options = spec if isinstance(spec, Mapping) else {"age": spec}
        age = parse_duration(options["age"]) if options.get("age") is not None else 0.0
        if name.endswith("/"):
            path.mkdir(parents=True, exist_ok=True)
            dir_ages.append((path, age))
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if "symlink" in options:
            path.symlink_to(options["symlink"])
            continue
        if "content" in options:
            path.write_text(options["content"])
        else:
            with path.open("wb") as out:
                size = parse_size(options.get("size", 0))
                if size:
                    out.truncate(size)  # sparse: sizes are what the cleanups count
        os.utime(path, (now - age, now - age))
    for path, age in sorted(dir_ages, key=lambda item: -len(item[0].parts)):
        os.utime(path, (now - age, now - age))
    return root


def snapshot(root: Path, exclude: Sequence[Path] = ()) -> dict[str, tuple[str, int, int]]:
    """Every path under ``root`` but those excluded: its type, size and mtime (ns);
    symlinks not followed.  A directory's own mtime is left out: its entries coming and
    going show anyway."""
    out: dict[str, tuple[str, int, int]] = {}
    skip = {p.resolve() for p in exclude}
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if (here / d).resolve() not in skip]
        files = [f for f in filenames if (here / f).resolve() not in skip]
        for name in [*dirnames, *files]:
            path = here / name
            st = path.lstat()
            kind = "link" if path.is_symlink() else "dir" if path.is_dir() else "file"
            size, mtime = (0, 0) if kind == "dir" else (st.st_size, st.st_mtime_ns)
            out[str(path.relative_to(root))] = (kind, size, mtime)
    return out
