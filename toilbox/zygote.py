"""A fork server for processes that have threads: the daemon's way to start attempts.

Forking a process that has other threads is unsafe: a lock another thread holds at
that moment (logging, stdio, sqlite, the scheduler) stays locked forever in the child.
So the daemon forks this zygote once, while it still has a single thread, with the
config and plugins already loaded.  The zygote stays single-threaded and forks one
child per attempt on request, which costs a fork and nothing else: no new interpreter,
no imports, no unpickling of the main module (multiprocessing's forkserver pays those).

Protocol, over a SOCK_SEQPACKET socket pair, one request and one reply at a time:
``("spawn", spec)`` with the result and output pipes' write ends attached, answered by
``("pid", pid)``; ``("reap", pid)`` answered by ``("status", pid, wait_status)``.
The zygote reaps a child only when asked, so until then the child's pid (and process
group id) cannot be reused and the daemon may safely signal its group.
"""

from __future__ import annotations

import contextlib
import gc
import os
import pickle
import signal
import socket
import threading
from typing import TYPE_CHECKING, Any

from toilbox import child, locks

if TYPE_CHECKING:
    from toilbox.models import AttemptSpec

_MAX_MESSAGE = 1 << 20


class ZygoteError(RuntimeError):
    """The zygote died or answered nonsense: attempts cannot start."""


class Zygote:
    def __init__(self, pid: int, sock: socket.socket) -> None:
        self.pid = pid
        self._sock = sock
        self._lock = threading.Lock()

    @classmethod
    def start(cls) -> Zygote:
        """Fork the zygote. Call while this process has one thread."""
        if threading.active_count() != 1:
            raise ZygoteError("the zygote must be started before any thread")
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        child.libc()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the zygote; tested through the attempts it starts
            ours.close()
            _serve(theirs, parent)
        theirs.close()
        return cls(pid, ours)

    def _call(self, message: tuple[Any, ...], fds: list[int] | None = None) -> tuple[Any, ...]:
        with self._lock:
            try:
                socket.send_fds(self._sock, [pickle.dumps(message)], fds or [])
                data = self._sock.recv(_MAX_MESSAGE)
            except OSError as exc:
                raise ZygoteError(f"zygote pid {self.pid} is gone: {exc}") from None
        if not data:
            raise ZygoteError(f"zygote pid {self.pid} is gone")
        reply: tuple[Any, ...] = pickle.loads(data)  # noqa: S301 -- our own forked process
        if reply[0] == "error":
            raise ZygoteError(reply[1])
        return reply

    def spawn(self, spec: AttemptSpec, result_w: int, output_w: int) -> int:
        return int(self._call(("spawn", spec), [result_w, output_w])[1])

    def reap(self, pid: int) -> int:
        """Wait for child ``pid`` (it has exited or is being killed); its wait status."""
        return int(self._call(("reap", pid))[2])

    def alive(self) -> bool:
        try:
            return os.waitpid(self.pid, os.WNOHANG) == (0, 0)
        except ChildProcessError:
            return False

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.close()
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)


def _serve(sock: socket.socket, daemon_pid: int) -> None:  # pragma: no cover - the zygote
    code = 0
    try:
        # A killed daemon takes the zygote with it, and each attempt's own parent-death
        # signal then takes the attempts down too.
        # A signal sent to the daemon's whole process group (Ctrl-C, `timeout`, systemd's
        # KillMode=control-group) is the daemon's to handle: it stops the zygote itself.
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)
        libc = child.libc()
        if libc is not None and hasattr(libc, "prctl"):
            libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != daemon_pid:
            os._exit(0)
        locks.close_inherited()
        # Everything the zygote holds now is shared with every child: keep the collector
        # from walking it (and copying every page it touches) in each of them.
        gc.freeze()
        while True:
            data, fds, _flags, _addr = socket.recv_fds(sock, _MAX_MESSAGE, 2)
            if not data:
                break
            sock.send(pickle.dumps(_answer(sock, data, fds)))
    except BaseException:
        code = 1
    os._exit(code)


def _answer(
    sock: socket.socket, data: bytes, fds: list[int]
) -> tuple[Any, ...]:  # pragma: no cover
    """One request's reply; a request that fails is answered with the error, and the
    zygote goes on serving (it dying would take every running attempt with it)."""
    try:
        request = pickle.loads(data)  # noqa: S301 -- from the daemon that forked us
        if request[0] == "spawn":
            return ("pid", _spawn(sock, request[1], fds))
        if request[0] == "reap":
            return ("status", request[1], os.waitpid(request[1], 0)[1])
        return ("error", f"unknown request {request[0]!r}")
    except Exception as exc:
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        return ("error", f"{type(exc).__name__}: {exc}")


def _spawn(sock: socket.socket, spec: AttemptSpec, fds: list[int]) -> int:  # pragma: no cover
    result_w, output_w = fds
    zygote = os.getpid()
    pid = os.fork()
    if pid == 0:
        sock.close()
        child.child_main(spec, result_w, output_w, zygote)
    os.close(result_w)
    os.close(output_w)
    with contextlib.suppress(PermissionError, ProcessLookupError):
        os.setpgid(pid, pid)
    return pid
