"""A fork server for processes that have threads: the daemon's way to start attempts.

Forking a process that has other threads is unsafe: a lock another thread holds at
that moment (logging, stdio, sqlite, the scheduler) stays locked forever in the child.
So the daemon forks this zygote once, while it still has a single thread, with the
config and plugins already loaded.  The zygote stays single-threaded and forks one
reaper per attempt on request (see ``reaper``), which costs a fork and nothing else: no
new interpreter, no imports, no unpickling of the main module (multiprocessing's
forkserver pays those).

Restarts.  A zygote can die (the OOM killer, a stray ``kill -9``), and the daemon cannot
fork a new one: it has threads by then.  So the daemon keeps a spare, a second zygote
that the first forked as a copy of itself and that waits, idle.  When the zygote dies,
the spare takes over at once and is asked for a new spare of its own; when the spare
dies, the zygote makes another.  Only when both are gone does the daemon stop, so that
its supervisor restarts it.  The alternatives weighed:

- a new interpreter (``python -m toilbox.zygote``) for each replacement: no idle
  process, but a restart takes half a second or more of imports and plugin loading,
  shares no memory with the daemon, runs the plugins' import-time code again, and after
  an upgrade in place runs newer code than the daemon that talks to it;
- a "keeper", a single-threaded process whose only job is to fork zygotes: the same
  idle process as the spare, but its own death leaves nothing to fork from, where a
  zygote and its spare can each replace the other.

The spare costs one idle process.  It runs no code, so the pages it shares with the
daemon (copy on write) stay shared; it forks nothing until it takes over.

In-flight attempts die with their zygote: each reaper gets its parent-death signal and
kills its whole tree.  Their runs get a transient ``crashed`` outcome ("the zygote died
during the attempt") that the task's retry policy retries on the new zygote.

Protocol, over a SOCK_SEQPACKET socket pair, one request and one reply at a time:
``("spawn", spec)`` with the result and output pipes' write ends attached, answered by
``("pid", pid)``; ``("reap", pid)`` answered by ``("status", pid, wait_status)``;
``("clone",)`` answered by ``("clone", pid)`` with the new zygote's socket and pidfd
attached.  A zygote reaps a reaper only when asked, so until then the reaper's pid
(and process group id) cannot be reused and the daemon may safely signal it.  A zygote
exits when the daemon's end of its socket closes: the daemon stopped, or died.
"""

from __future__ import annotations

import contextlib
import gc
import os
import pickle
import select
import signal
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from toilbox import child, locks, reaper

if TYPE_CHECKING:
    from toilbox.models import AttemptSpec

_MAX_MESSAGE = 1 << 20
_STOP_WAIT_S = 5.0
log = structlog.get_logger("toilbox.zygote")


class ZygoteError(RuntimeError):
    """The zygote died or answered nonsense: attempts cannot start."""


class Zygote:
    """The daemon's zygote and its spare: ``spawn`` uses whichever is alive."""

    def __init__(self, first: _Server) -> None:
        self._active = first
        self._spare: _Server | None = None
        self._owner: dict[int, _Server] = {}  # reaper pid -> the zygote that forked it
        self._lock = threading.Lock()

    @classmethod
    def start(cls, preload: Callable[[], None] | None = None) -> Zygote:
        """Fork the zygote, and its spare. Call while this process has one thread.

        ``preload`` runs in the zygote before it serves: what it loads (the libraries
        the configured task types import when they run) every attempt then inherits
        instead of loading it again.  If it fails, the attempts load it themselves.
        """
        if threading.active_count() != 1:
            raise ZygoteError("the zygote must be started before any thread")
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        child.libc()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the zygote; tested through the attempts it starts
            ours.close()
            _become_zygote(parent, preload)
            _serve(theirs)
        theirs.close()
        zygote = cls(_Server(pid, ours, os.pidfd_open(pid), our_child=True))
        log.info("zygote.started", pid=pid)
        zygote.revive()
        if zygote._spare is None and _readable(zygote._active.pidfd, 0.5):
            zygote.stop()
            raise ZygoteError(f"the zygote (pid {pid}) exited as it started; see its log")
        return zygote

    @property
    def pid(self) -> int:
        return self._active.pid

    def spawn(self, spec: AttemptSpec, result_w: int, output_w: int) -> int:
        """Start an attempt's reaper; its pid."""
        with self._lock:
            if not self._active.alive():
                self._promote()
            server = self._active
        pid = int(server.call(("spawn", spec), [result_w, output_w])[1])
        with self._lock:
            self._owner[pid] = server
        return pid

    def reap(self, pid: int) -> int:
        """Wait for reaper ``pid`` (it has exited or is being killed); its wait status."""
        with self._lock:
            server = self._owner.pop(pid, None)
        if server is None:
            raise ZygoteError(f"no zygote started pid {pid}")
        return int(server.call(("reap", pid))[2])

    def alive(self) -> bool:
        return self._active.alive()

    def revive(self) -> None:
        """Replace a dead zygote by its spare, and a dead or missing spare by a new one.

        Raises ZygoteError when no zygote is left to start attempts.
        """
        with self._lock:
            if not self._active.alive():
                self._promote()
            if self._spare is None or not self._spare.alive():
                self._spare = None
                try:
                    self._spare = self._active.clone()
                except ZygoteError as exc:
                    log.warning("zygote.no_spare", error=str(exc))  # tried again next time
                else:
                    log.info("zygote.started", pid=self._spare.pid, spare=True)

    def fds(self) -> list[int]:
        """Pidfds that become readable when the zygote or its spare dies."""
        return [s.pidfd for s in (self._active, self._spare) if s is not None and not s.exited]

    def stop(self) -> None:
        for server in (self._spare, self._active):
            if server is not None:
                server.close()

    def _promote(self) -> None:
        dead, spare = self._active, self._spare
        if spare is None or not spare.alive():
            raise ZygoteError(f"the zygote (pid {dead.pid}) died and no spare is left")
        self._active, self._spare = spare, None
        log.error("zygote.restarted", died=dead.pid, pid=spare.pid)
        dead.close()


class _Server:
    """One zygote process, and the daemon's socket to it."""

    def __init__(self, pid: int, sock: socket.socket, pidfd: int, our_child: bool) -> None:
        self.pid = pid
        self.pidfd = pidfd  # readable once the process has exited
        self.exited = False
        self._sock = sock
        self._our_child = our_child
        self._lock = threading.Lock()

    def call(self, message: tuple[Any, ...], fds: list[int] | None = None) -> tuple[Any, ...]:
        return self.call_fds(message, fds)[0]

    def call_fds(
        self, message: tuple[Any, ...], fds: list[int] | None = None
    ) -> tuple[tuple[Any, ...], list[int]]:
        with self._lock:
            try:
                socket.send_fds(self._sock, [pickle.dumps(message)], fds or [])
                data, received, _flags, _addr = socket.recv_fds(self._sock, _MAX_MESSAGE, 2)
            except OSError as exc:
                raise ZygoteError(f"zygote pid {self.pid} is gone: {exc}") from None
        for fd in received:
            os.set_inheritable(fd, False)
        if not data:
            raise ZygoteError(f"zygote pid {self.pid} is gone")
        reply: tuple[Any, ...] = pickle.loads(data)  # noqa: S301 -- our own forked process
        if reply[0] == "error":
            for fd in received:
                os.close(fd)
            raise ZygoteError(reply[1])
        return reply, received

    def clone(self) -> _Server:
        """A new zygote, forked by this one as a copy of itself."""
        reply, fds = self.call_fds(("clone",))
        if len(fds) != 2:
            for fd in fds:
                os.close(fd)
            raise ZygoteError("the zygote's clone came without its socket")
        sock = socket.socket(fileno=fds[0])
        return _Server(int(reply[1]), sock, fds[1], our_child=False)

    def alive(self) -> bool:
        if not self.exited and _readable(self.pidfd, 0):
            self.exited = True
            if self._our_child:  # the others are reaped by the zygote that forked them
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(self.pid, os.WNOHANG)
        return not self.exited

    def close(self) -> None:
        """Close our end of its socket, which ends it, and wait a while for it to go."""
        # Not while a call is using the socket: its fd number could be reused under it.
        locked = self._lock.acquire(timeout=_STOP_WAIT_S)
        try:
            with contextlib.suppress(OSError):
                self._sock.close()
        finally:
            if locked:
                self._lock.release()
        if not self.exited:
            _readable(self.pidfd, _STOP_WAIT_S)
        if self._our_child:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self.pid, os.WNOHANG if self.exited else 0)
        self.exited = True
        with contextlib.suppress(OSError):
            os.close(self.pidfd)


def _readable(fd: int, timeout: float) -> bool:
    poller = select.poll()  # not select(): it fails on fd numbers past 1023
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(timeout * 1000))


def _become_zygote(  # pragma: no cover - the zygote
    daemon_pid: int, preload: Callable[[], None] | None
) -> None:
    """Set up the first zygote; its clones inherit all of this but the death signal."""
    try:
        # A killed daemon takes the zygote with it (clones see their socket close), and
        # each reaper's parent-death signal then takes its attempt down too.
        # A signal sent to the daemon's whole process group (Ctrl-C, `timeout`, systemd's
        # KillMode=control-group) is the daemon's to handle: it stops the zygote itself.
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)
        if child.prctl(child.PR_SET_PDEATHSIG, signal.SIGKILL) and os.getppid() != daemon_pid:
            os._exit(0)
        locks.close_inherited()
    except BaseException:
        os._exit(1)
    if preload is not None:
        try:
            preload()
        except BaseException as exc:  # an optimisation only: each attempt loads its own
            log.warning("zygote.preload_failed", error=f"{type(exc).__name__}: {exc}")
        if threading.active_count() != 1 or len(list(Path("/proc/self/task").iterdir())) != 1:
            # A thread here would make every fork unsafe (see above): refuse to serve.
            log.error("zygote.preload_started_a_thread", fix="a preload must not start threads")
            os._exit(1)
    try:
        # Everything the zygote holds now is shared with every child: keep the collector
        # from walking it (and copying every page it touches) in each of them.
        gc.freeze()
    except BaseException:
        os._exit(1)


def _serve(sock: socket.socket) -> None:  # pragma: no cover - the zygote
    code = 0
    clones: set[int] = set()
    try:
        while True:
            data, fds, _flags, _addr = socket.recv_fds(sock, _MAX_MESSAGE, 2)
            if not data:
                break
            reply, attached = _answer(sock, data, fds, clones)
            socket.send_fds(sock, [pickle.dumps(reply)], attached)
            for fd in attached:
                os.close(fd)
            for pid in list(clones):  # a clone that died is reaped here, not left a zombie
                with contextlib.suppress(ChildProcessError):
                    if os.waitpid(pid, os.WNOHANG)[0]:
                        clones.discard(pid)
    except BaseException:
        code = 1
    os._exit(code)


def _answer(
    sock: socket.socket, data: bytes, fds: list[int], clones: set[int]
) -> tuple[tuple[Any, ...], list[int]]:  # pragma: no cover
    """One request's reply (and the fds to attach); a request that fails is answered
    with the error, and the zygote goes on serving (it dying would take every running
    attempt with it)."""
    try:
        request = pickle.loads(data)  # noqa: S301 -- from the daemon that forked us
        if request[0] == "spawn":
            return ("pid", _spawn(sock, request[1], fds)), []
        if request[0] == "reap":
            return ("status", request[1], os.waitpid(request[1], 0)[1]), []
        if request[0] == "clone":
            pid, attached = _clone(sock)
            clones.add(pid)
            return ("clone", pid), attached
        return ("error", f"unknown request {request[0]!r}"), []
    except Exception as exc:
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        return ("error", f"{type(exc).__name__}: {exc}"), []


def _spawn(sock: socket.socket, spec: AttemptSpec, fds: list[int]) -> int:  # pragma: no cover
    result_w, output_w = fds
    try:
        return reaper.fork(spec, result_w, output_w, close_in_child=[sock.fileno()])
    finally:
        os.close(result_w)
        os.close(output_w)


def _clone(sock: socket.socket) -> tuple[int, list[int]]:  # pragma: no cover
    """Fork a copy of this zygote; its pid, and the daemon's end of its socket with its
    pidfd (opened here, while it is our unreaped child, so it names that process)."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        pid = os.fork()
        if pid == 0:
            sock.close()
            ours.close()
            _serve(theirs)
        return pid, [os.dup(ours.fileno()), os.pidfd_open(pid)]
    finally:
        ours.close()
        theirs.close()
