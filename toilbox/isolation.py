"""Run one attempt of a task in a child process, in its own process group.

The child gets a deadline.  On expiry its whole group (the plugin and anything it
started) gets SIGTERM, then SIGKILL after a short grace.  Whatever the plugin does
(hang, crash the interpreter, print without end, return garbage) the parent gets an
Outcome back and goes on.

Start method: ``toilbox run`` has a single thread, so a plain ``os.fork`` is safe
and the cheapest there is (the child shares the already-imported plugins).  A
process with other threads must not fork: a lock held by another thread at fork
time stays locked forever in the child (logging, stdio and sqlite all have such
locks).  The daemon therefore starts attempts from a single-threaded fork server,
the zygote (see ``zygote``).
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from toilbox import child

if TYPE_CHECKING:
    from toilbox.models import AttemptSpec
    from toilbox.zygote import Zygote

KILL_GRACE_S = 2.0
OUTPUT_LIMIT = 64 * 1024
RESULT_LIMIT = 64 * 1024 * 1024


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


@dataclass
class _Child:
    """A started attempt: its pid (also its process group), and how to wait for it."""

    pid: int
    sentinel: int  # readable once the child has exited
    result_r: int
    output_r: int
    reap: Callable[[], tuple[int | None, int]]  # -> (killed by signal, exit code)
    cleanup: Callable[[], None]


def run_attempt(
    spec: AttemptSpec,
    timeout: float,
    stop: threading.Event | None = None,
    zygote: Zygote | None = None,
) -> Outcome:
    """Start a child for one attempt and supervise it until it answers, dies or times out.

    Without ``zygote`` the child is forked from this process, which must then have a
    single thread; a process with threads passes the zygote it forked early on.
    """
    started = time.monotonic()
    attempt = _fork(spec) if zygote is None else _from_zygote(spec, zygote)
    try:
        outcome = _supervise(attempt, started + timeout, stop)
    finally:
        attempt.cleanup()
    outcome.duration_s = time.monotonic() - started
    if outcome.kind == "timeout":
        outcome.message = f"timed out after {timeout:g}s; process group killed"
    return outcome


def _fork(spec: AttemptSpec) -> _Child:
    result_r, result_w = os.pipe()
    output_r, output_w = os.pipe()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()  # or the child would print the parent's buffered text again
    child.libc()  # loaded once here, not in every child
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child; measured through its outcome
        os.close(result_r)
        os.close(output_r)
        child.child_main(spec, result_w, output_w, parent)
    os.close(result_w)
    os.close(output_w)
    with contextlib.suppress(PermissionError, ProcessLookupError):
        os.setpgid(pid, pid)  # also done in the child: whichever runs first wins the race
    sentinel = os.pidfd_open(pid)

    def reap() -> tuple[int | None, int]:
        status = os.waitpid(pid, 0)[1]
        if os.WIFSIGNALED(status):
            return os.WTERMSIG(status), -1
        return None, os.WEXITSTATUS(status)

    def cleanup() -> None:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        for fd in (sentinel, result_r, output_r):
            os.close(fd)

    return _Child(pid, sentinel, result_r, output_r, reap, cleanup)


def _from_zygote(spec: AttemptSpec, zygote: Zygote) -> _Child:
    from toilbox.zygote import ZygoteError

    result_r, result_w = os.pipe()
    output_r, output_w = os.pipe()
    try:
        pid = zygote.spawn(spec, result_w, output_w)
    except ZygoteError:
        os.close(result_r)
        os.close(output_r)
        raise
    finally:
        os.close(result_w)
        os.close(output_w)
    sentinel = os.pidfd_open(pid)  # the zygote keeps the child unreaped until we ask
    reaped: list[int] = []

    def reap() -> tuple[int | None, int]:
        if not reaped:
            try:
                reaped.append(zygote.reap(pid))
            except ZygoteError:
                reaped.append(-1)  # the status died with the zygote; the answer may remain
        status = reaped[0]
        if status < 0:
            return None, -1
        if os.WIFSIGNALED(status):
            return os.WTERMSIG(status), -1
        return None, os.WEXITSTATUS(status)

    def cleanup() -> None:
        reap()
        for fd in (sentinel, result_r, output_r):
            os.close(fd)

    return _Child(pid, sentinel, result_r, output_r, reap, cleanup)


def _supervise(attempt: _Child, deadline: float, stop: threading.Event | None) -> Outcome:
    answer = bytearray()
    output = _Tail(OUTPUT_LIMIT)
    exited = False
    selector = selectors.DefaultSelector()
    try:
        selector.register(attempt.result_r, selectors.EVENT_READ, answer)
        selector.register(attempt.output_r, selectors.EVENT_READ, output)
        selector.register(attempt.sentinel, selectors.EVENT_READ, None)
        while not exited:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                _kill_group(attempt)
                return Outcome("timeout", output=output.text())
            if stop is not None and stop.is_set():
                _kill_group(attempt)
                return Outcome("interrupted", "stopped by shutdown", output=output.text())
            try:
                events = selector.select(min(remaining, 0.25) if stop else remaining)
            except KeyboardInterrupt:
                _kill_group(attempt)
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
        # The child has exited but is not reaped, so its pid (and group id) cannot be
        # reused yet: it is safe to kill whatever it left running in its group, which
        # also closes any copy of the pipes those leftovers held.
        _signal_group(attempt.pid, signal.SIGKILL)
        # The child wrote its answer before exiting; a copy of the pipe kept by something
        # that escaped the group must not make us wait for an EOF that never comes.
        _drain(attempt.result_r, answer, nonblocking=True)
        _drain(attempt.output_r, output, nonblocking=True)
        signum, code = attempt.reap()
    finally:
        selector.close()
    return _outcome(signum, code, bytes(answer), output.text())


def _signal_group(pid: int, signum: int) -> None:
    try:
        os.killpg(pid, signum)
    except ProcessLookupError:
        # A child from the fork server may not have made its own group yet.
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)
    except PermissionError:
        pass


def _kill_group(attempt: _Child) -> None:
    """SIGTERM the group, wait a short grace for the child, then SIGKILL the group."""
    _signal_group(attempt.pid, signal.SIGTERM)
    ready = selectors.DefaultSelector()
    try:
        ready.register(attempt.sentinel, selectors.EVENT_READ)
        ready.select(KILL_GRACE_S)
    finally:
        ready.close()
    _signal_group(attempt.pid, signal.SIGKILL)
    attempt.reap()


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


def _outcome(signum: int | None, code: int, answer: bytes, output: str) -> Outcome:
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
    if signum is not None:
        try:
            name = signal.Signals(signum).name
        except ValueError:
            name = f"signal {signum}"
        return Outcome("crashed", f"the task process was killed by {name}", output=output)
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
