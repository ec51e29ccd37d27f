"""Run one attempt of a task in child processes that cannot outlive it.

Each attempt is a reaper process and the plugin's process under it (see ``reaper``):
the reaper is a child subreaper, so everything the plugin starts stays its descendant,
even through ``setsid`` or a double fork, and the reaper ends all of it before it exits.
The attempt gets a deadline.  On expiry (or when told to stop) the reaper gets SIGTERM:
every descendant gets SIGTERM, then SIGKILL after a short grace.  Whatever the plugin
does (hang, crash the interpreter, print without end, return garbage, leave processes
behind) the parent gets an Outcome back and goes on.

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

from toilbox import child, reaper

if TYPE_CHECKING:
    from toilbox.models import AttemptSpec
    from toilbox.zygote import Zygote

KILL_GRACE_S = reaper.KILL_GRACE_S
# How long past its own grace the reaper may take to kill and reap the tree, before we
# kill the reaper itself (its plugin process dies with it).
REAPER_MARGIN_S = 3.0
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
    """A started attempt: its reaper's pid (also its process group), how to wait for it."""

    pid: int
    sentinel: int  # the reaper's pidfd: readable once it has exited
    result_r: int
    output_r: int
    reap: Callable[[], int | None]  # -> the reaper's wait status; None if it was lost
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
    if zygote is None:
        attempt = _fork(spec)
    else:
        from toilbox.zygote import ZygoteError

        try:
            attempt = _from_zygote(spec, zygote)
        except ZygoteError as exc:  # transient: the next attempt goes to the spare zygote
            return Outcome("crashed", f"the attempt could not start: {exc}")
    try:
        outcome = _supervise(attempt, started + timeout, stop)
    finally:
        attempt.cleanup()
    outcome.duration_s = time.monotonic() - started
    if outcome.kind == "timeout":
        outcome.message = f"timed out after {timeout:g}s; the task's processes were killed"
    return outcome


def _fork(spec: AttemptSpec) -> _Child:
    result_r, result_w = os.pipe()
    output_r, output_w = os.pipe()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()  # or the child would print the parent's buffered text again
    child.libc()  # loaded once here, not in every child
    pid = reaper.fork(spec, result_w, output_w, close_in_child=(result_r, output_r))
    os.close(result_w)
    os.close(output_w)
    sentinel = os.pidfd_open(pid)

    def reap() -> int | None:
        return os.waitpid(pid, 0)[1]

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
    sentinel = os.pidfd_open(pid)  # the zygote keeps the reaper unreaped until we ask
    reaped: list[int | None] = []

    def reap() -> int | None:
        if not reaped:
            try:
                reaped.append(zygote.reap(pid))
            except ZygoteError:
                reaped.append(None)  # the status died with the zygote; the answer may remain
        return reaped[0]

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
                _stop(attempt)
                return Outcome("timeout", output=output.text())
            if stop is not None and stop.is_set():
                _stop(attempt)
                return Outcome("interrupted", "stopped by shutdown", output=output.text())
            try:
                events = selector.select(min(remaining, 0.25) if stop else remaining)
            except KeyboardInterrupt:
                _stop(attempt)
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
        # The reaper exits only once the whole tree is gone, so nothing can still hold
        # the pipes: what is in them is all there is.
        _drain(attempt.result_r, answer, nonblocking=True)
        _drain(attempt.output_r, output, nonblocking=True)
        status = attempt.reap()
    finally:
        selector.close()
    return _outcome(status, bytes(answer), output.text())


def _stop(attempt: _Child) -> None:
    """Have the reaper end the attempt's tree (SIGTERM, a grace, SIGKILL) and wait for it.

    The reaper is signalled through its pidfd, never by pid: a zygote that died may have
    left it to init, which reaps it, and its pid may then belong to someone else.
    """
    _send(attempt, signal.SIGTERM)
    ready = selectors.DefaultSelector()
    try:
        ready.register(attempt.sentinel, selectors.EVENT_READ)
        if not ready.select(KILL_GRACE_S + REAPER_MARGIN_S):
            _send(attempt, signal.SIGKILL)  # the reaper is stuck: its plugin dies with it
    finally:
        ready.close()
    attempt.reap()


def _send(attempt: _Child, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        signal.pidfd_send_signal(attempt.sentinel, signum)


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


def _outcome(status: int | None, answer: bytes, output: str) -> Outcome:
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
    if status is None:
        return Outcome(
            "crashed", "the zygote died during the attempt; its processes died too", output=output
        )
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        try:
            name = signal.Signals(signum).name
        except ValueError:
            name = f"signal {signum}"
        return Outcome("crashed", f"the task process was killed by {name}", output=output)
    return Outcome(
        "crashed",
        f"the task process exited with code {os.WEXITSTATUS(status)} without a result",
        output=output,
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
