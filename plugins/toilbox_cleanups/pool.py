"""Work split across forked worker processes, for scans and deletes that are CPU-bound.

The task already runs in a single-threaded child process, so ``os.fork`` is safe and
cheap: workers inherit the plan and the open root descriptors, and only results travel
back.  Work items are indices, queued up front in one pipe that every worker reads
4 bytes at a time (pipe reads that small are atomic), so a worker that finishes early
takes the next item: no static split, no coordinator.

Workers stay in the task's process group, so a timeout kills them with it; they also
die with the task process (PR_SET_PDEATHSIG).  A worker that crashes or raises is
reported as a ``WorkerError``, never waited on forever.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import selectors
import signal
import struct
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any

MAX_ITEMS = 16_000  # 4 bytes each: the whole queue fits a pipe's 64 KiB buffer
PROGRESS_EVERY_S = 0.1
_HEADER = struct.Struct("<BQ")
_PROGRESS, _RESULT, _ERROR = 0, 1, 2
_PR_SET_PDEATHSIG = 1

Report = Callable[[Any], None]
Work = Callable[[Iterator[int], Report], Any]


class WorkerError(RuntimeError):
    """A worker died or raised: its share of the work is unaccounted for."""


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def run(
    workers: int,
    items: int,
    work: Work,
    on_progress: Callable[[int, Any], None] | None = None,
) -> list[Any]:
    """Run ``work(items, report)`` in ``workers`` processes; return their results in order.

    ``items`` yields the indices ``0 .. items - 1``, each to exactly one worker.
    ``report(obj)`` sends a progress snapshot to ``on_progress(worker, obj)``, at most
    every 0.1 s; it is a no-op without ``on_progress``.
    """
    if not 0 < items <= MAX_ITEMS:
        raise ValueError(f"between 1 and {MAX_ITEMS} items, got {items}")
    queue_r, queue_w = os.pipe()
    try:
        payload = b"".join(i.to_bytes(4, "little") for i in range(items))
        view = memoryview(payload)
        while view:
            view = view[os.write(queue_w, view) :]
    finally:
        os.close(queue_w)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    pids: list[int] = []
    pipes: list[int] = []
    try:
        for _ in range(min(workers, items)):
            read_end, write_end = os.pipe()
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the worker; measured through its results
                os.close(read_end)
                for other in pipes:
                    os.close(other)
                _worker(queue_r, write_end, work, on_progress is not None)
            os.close(write_end)
            pids.append(pid)
            pipes.append(read_end)
    finally:
        os.close(queue_r)
    return _collect(pids, pipes, on_progress)


def _collect(  # noqa: PLR0912 -- one select loop: frames, progress, deaths
    pids: list[int], pipes: list[int], on_progress: Callable[[int, Any], None] | None
) -> list[Any]:
    results: dict[int, Any] = {}
    failures: dict[int, str] = {}
    buffers = {fd: bytearray() for fd in pipes}
    index = {fd: i for i, fd in enumerate(pipes)}
    selector = selectors.DefaultSelector()
    try:
        for fd in pipes:
            selector.register(fd, selectors.EVENT_READ)
        open_pipes = len(pipes)
        while open_pipes:
            for key, _ in selector.select():
                fd = key.fd
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    selector.unregister(fd)
                    open_pipes -= 1
                    continue
                buffer = buffers[fd]
                buffer += chunk
                while len(buffer) >= _HEADER.size:
                    kind, length = _HEADER.unpack_from(buffer)
                    end = _HEADER.size + length
                    if len(buffer) < end:
                        break
                    message = pickle.loads(memoryview(buffer)[_HEADER.size : end])  # noqa: S301 -- our worker
                    del buffer[:end]
                    worker = index[fd]
                    if kind == _RESULT:
                        results[worker] = message
                    elif kind == _ERROR:
                        failures[worker] = message
                    elif on_progress is not None:
                        on_progress(worker, message)
    finally:
        selector.close()
        for fd in pipes:
            os.close(fd)
        statuses = [os.waitpid(pid, 0)[1] for pid in pids]
    for worker, status in enumerate(statuses):
        if worker not in results and worker not in failures:
            failures[worker] = _death(status)
    if failures:
        worker, message = min(failures.items())
        raise WorkerError(f"worker {worker + 1} of {len(pids)} failed: {message}")
    return [results[i] for i in range(len(pids))]


def _death(status: int) -> str:
    if os.WIFSIGNALED(status):
        try:
            name = signal.Signals(os.WTERMSIG(status)).name
        except ValueError:
            name = f"signal {os.WTERMSIG(status)}"
        return f"killed by {name}"
    return f"exited with code {os.WEXITSTATUS(status)} without a result"


def _worker(  # pragma: no cover - runs in the worker
    queue: int, out: int, work: Work, progress: bool
) -> None:
    code = 0
    try:
        _die_with_parent()
        last = [time.monotonic()]

        def report(snapshot: Any) -> None:
            now = time.monotonic()
            if progress and now - last[0] >= PROGRESS_EVERY_S:
                last[0] = now
                _send(out, _PROGRESS, snapshot)

        _send(out, _RESULT, work(_items(queue), report))
    except BaseException:
        code = 1
        with contextlib.suppress(BaseException):
            lines = traceback.format_exc().strip().splitlines()
            _send(out, _ERROR, lines[-1] if lines else "failed")
    os._exit(code)


def _items(queue: int) -> Iterator[int]:  # pragma: no cover - runs in the worker
    while True:
        raw = os.read(queue, 4)
        if len(raw) < 4:
            return
        yield int.from_bytes(raw, "little")


def _send(fd: int, kind: int, obj: Any) -> None:  # pragma: no cover - runs in the worker
    payload = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    view = memoryview(_HEADER.pack(kind, len(payload)) + payload)
    while view:
        view = view[os.write(fd, view) :]


def _die_with_parent() -> None:  # pragma: no cover - runs in the worker
    parent = os.getppid()
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:
        os._exit(1)
