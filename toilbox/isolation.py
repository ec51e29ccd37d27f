"""Run one attempt of a task in a child process, in its own process group.

The child gets a deadline.  On expiry its whole group (the plugin and anything it
started) gets SIGTERM, then SIGKILL after a short grace.  Whatever the plugin does
(hang, crash the interpreter, print without end, return garbage) the parent gets an
Outcome back and goes on.

Start method: ``toilbox run`` has a single thread, so a plain ``os.fork`` is safe
and the cheapest there is (the child shares the already-imported plugins).  A
process with other threads must not fork: a lock held by another thread at fork
time stays locked forever in the child (logging, stdio and sqlite all have such
locks).  The daemon therefore starts attempts from a single-threaded fork server.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import selectors
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from pydantic import BaseModel

KILL_GRACE_S = 2.0
OUTPUT_LIMIT = 64 * 1024
RESULT_LIMIT = 64 * 1024 * 1024
_PR_SET_PDEATHSIG = 1
# Sent to the child when its parent dies: the child's handler takes its whole group down.
PARENT_DIED_SIGNAL = signal.SIGRTMIN


@dataclass(frozen=True)
class AttemptSpec:
    """What a child needs to find and run the task."""

    task: str
    task_type: str
    params: BaseModel  # validated when the config loaded; never re-parsed from its dump
    plugin_dirs: tuple[str, ...]
    run_id: str
    attempt: int
    dry_run: bool
    force: bool
    state_dir: str


@dataclass
class Outcome:
    """How an attempt ended.

    ``kind`` is ``ok`` (``result`` holds the verdict), ``failed`` (TaskFailed),
    ``exception``, ``timeout``, ``crashed`` (the child died without answering),
    ``bad-result`` (it answered garbage) or ``interrupted`` (we were told to stop).
    """

    kind: str
    message: str = ""
    result: dict[str, Any] | None = None
    output: str = ""
    duration_s: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def transient(self) -> bool:
        """Worth another attempt: the plugin did not say retrying is pointless."""
        return self.kind in ("exception", "timeout", "crashed")


class Interrupted(Exception):  # noqa: N818 -- a signal, not an error
    """Raised in the parent to stop a running attempt (Ctrl-C, SIGTERM, shutdown)."""


def run_attempt(spec: AttemptSpec, timeout: float, stop: threading.Event | None = None) -> Outcome:
    """Fork a child for one attempt and supervise it until it answers, dies or times out."""
    result_r, result_w = os.pipe()
    output_r, output_w = os.pipe()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()  # or the child would print the parent's buffered text again
    _libc()  # loaded once here, not in every child
    started = time.monotonic()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child; measured through its outcome
        os.close(result_r)
        os.close(output_r)
        child_main(spec, result_w, output_w, parent)
    os.close(result_w)
    os.close(output_w)
    with contextlib.suppress(PermissionError, ProcessLookupError):
        os.setpgid(pid, pid)  # also done in the child: whichever runs first wins the race
    try:
        outcome = _supervise(pid, result_r, output_r, started + timeout, stop)
    finally:
        os.close(result_r)
        os.close(output_r)
    outcome.duration_s = time.monotonic() - started
    if outcome.kind == "timeout":
        outcome.message = f"timed out after {timeout:g}s; process group killed"
    return outcome


def _supervise(
    pid: int, result_r: int, output_r: int, deadline: float, stop: threading.Event | None
) -> Outcome:
    sentinel = os.pidfd_open(pid)
    answer = bytearray()
    output = _Tail(OUTPUT_LIMIT)
    exited = False
    selector = selectors.DefaultSelector()
    try:
        selector.register(result_r, selectors.EVENT_READ, answer)
        selector.register(output_r, selectors.EVENT_READ, output)
        selector.register(sentinel, selectors.EVENT_READ, None)
        while not exited:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                _kill_group(pid, sentinel)
                return Outcome("timeout", output=output.text())
            if stop is not None and stop.is_set():
                _kill_group(pid, sentinel)
                return Outcome("interrupted", "stopped by shutdown", output=output.text())
            try:
                events = selector.select(min(remaining, 0.5) if stop else remaining)
            except KeyboardInterrupt:
                _kill_group(pid, sentinel)
                return Outcome("interrupted", "interrupted", output=output.text())
            for key, _ in events:
                if key.data is None:
                    exited = True
                    continue
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    selector.unregister(key.fd)
                elif key.data is answer:
                    if len(answer) < RESULT_LIMIT:
                        answer += chunk
                else:
                    output.add(chunk)
        # The child is a zombie now, so its pid (and group id) cannot be reused yet:
        # it is safe to kill whatever it left running in its group, which also closes
        # any copy of the pipes those leftovers held.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        _drain(result_r, answer)
        _drain(output_r, output, nonblocking=True)
        status = os.waitpid(pid, 0)[1]
    finally:
        selector.close()
        os.close(sentinel)
    return _outcome(status, bytes(answer), output.text())


def _kill_group(pid: int, sentinel: int) -> None:
    """SIGTERM the group, wait a short grace for the child, then SIGKILL the group."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
    ready = selectors.DefaultSelector()
    try:
        ready.register(sentinel, selectors.EVENT_READ)
        ready.select(KILL_GRACE_S)
    finally:
        ready.close()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def _drain(fd: int, sink: Any, nonblocking: bool = False) -> None:
    if nonblocking:
        os.set_blocking(fd, False)
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return
        if not chunk:
            return
        if isinstance(sink, bytearray):
            if len(sink) < RESULT_LIMIT:
                sink += chunk
        else:
            sink.add(chunk)


def _outcome(status: int, answer: bytes, output: str) -> Outcome:
    if answer:
        try:
            message = json.loads(answer)
            kind = message["kind"]
        except (ValueError, KeyError, TypeError):
            return Outcome("bad-result", "the child's answer could not be read", output=output)
        return Outcome(
            kind,
            message.get("message", ""),
            result=message.get("result"),
            output=output,
            details={"traceback": message["traceback"]} if "traceback" in message else {},
        )
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        try:
            name = signal.Signals(signum).name
        except ValueError:
            name = f"signal {signum}"
        return Outcome("crashed", f"the task process was killed by {name}", output=output)
    code = os.WEXITSTATUS(status)
    return Outcome(
        "crashed", f"the task process exited with code {code} without a result", output=output
    )


class _Tail:
    """Keeps the last ``limit`` bytes of a stream: output can be endless, memory is not."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.buffer = bytearray()
        self.dropped = 0

    def add(self, chunk: bytes) -> None:
        self.buffer += chunk
        if len(self.buffer) > self.limit:
            excess = len(self.buffer) - self.limit
            del self.buffer[:excess]
            self.dropped += excess

    def text(self) -> str:
        text = self.buffer.decode("utf-8", errors="replace")
        return f"[{self.dropped} bytes dropped]\n{text}" if self.dropped else text


def child_main(  # pragma: no cover - runs in the child
    spec: AttemptSpec, result_w: int, output_w: int, parent: int
) -> None:
    """The child's whole life: run the task, write one JSON answer, exit. Never returns."""
    code = 0
    try:
        os.setpgid(0, 0)
        _die_with_parent(parent)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
        from toilbox import locks, log

        locks.close_inherited()
        # Plugin logs go where toilbox logs go; plain prints are captured as output.
        terminal = os.fdopen(
            os.dup(2), "w", buffering=1, encoding="utf-8", errors="replace", closefd=True
        )
        log.redirect_to(terminal)
        os.dup2(output_w, 1)
        os.dup2(output_w, 2)
        os.close(output_w)
        answer = _run_task(spec, terminal if terminal.isatty() else None)
        payload = json.dumps(answer, allow_nan=False).encode()
    except BaseException as exc:  # the answer must always be written: it is the verdict
        payload = json.dumps({"kind": "exception", "message": _describe(exc)}).encode()
        code = 1
    try:
        with os.fdopen(result_w, "wb") as pipe:
            pipe.write(payload)
    except BaseException:
        code = 1
    with contextlib.suppress(BaseException):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


def _run_task(  # pragma: no cover - runs in the child
    spec: AttemptSpec, console: TextIO | None
) -> dict[str, Any]:
    import structlog

    from toilbox import plugins
    from toilbox.context import TaskContext
    from toilbox.errors import TaskFailed
    from toilbox.result import Result, Status

    task_type = plugins.load(Path(p) for p in spec.plugin_dirs).task_types[spec.task_type]
    state_dir = Path(spec.state_dir) / "tasks" / spec.task
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    ctx = TaskContext(
        task=spec.task,
        run_id=spec.run_id,
        attempt=spec.attempt,
        dry_run=spec.dry_run,
        force=spec.force,
        log=structlog.get_logger(spec.task_type),
        state_dir=state_dir,
        console=console,
    )
    try:
        result = task_type.fn(ctx, spec.params)
    except TaskFailed as exc:
        return {"kind": "failed", "message": str(exc) or "the task failed"}
    except Exception as exc:
        return {"kind": "exception", "message": _describe(exc), "traceback": traceback.format_exc()}
    if not isinstance(result, Result) or not isinstance(result.status, Status):
        return {
            "kind": "bad-result",
            "message": f"{spec.task_type} returned {type(result).__name__}, not a toilbox.Result",
        }
    try:
        metrics = {k: m.to_dict() for k, m in result.normalised_metrics().items()}
        answer = {
            "kind": "ok",
            "result": {
                "status": result.status.label,
                "summary": str(result.summary).strip().splitlines()[0][:1000]
                if str(result.summary).strip()
                else "",
                "metrics": metrics,
                "data": result.data,
                "details": str(result.details or "")[:OUTPUT_LIMIT],
            },
        }
        json.dumps(answer, allow_nan=False)
    except (TypeError, ValueError) as exc:
        return {"kind": "bad-result", "message": f"{spec.task_type} returned a bad Result: {exc}"}
    return answer


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


@functools.cache
def _libc() -> Any:
    import ctypes

    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def _die_with_parent(parent: int) -> None:  # pragma: no cover - runs in the child
    """If toilbox dies (even by SIGKILL), take this attempt's whole group down with it."""

    def parent_died(signum: int, frame: object) -> None:
        os.killpg(0, signal.SIGKILL)

    signal.signal(PARENT_DIED_SIGNAL, parent_died)
    libc = _libc()
    if libc is None or not hasattr(libc, "prctl"):
        return  # not Linux: a dead parent leaves the attempt to finish on its own
    libc.prctl(_PR_SET_PDEATHSIG, int(PARENT_DIED_SIGNAL), 0, 0, 0)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os.killpg(0, signal.SIGKILL)
