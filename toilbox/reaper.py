"""The attempt's reaper: a small process that owns every process an attempt starts.

An attempt is two processes.  The reaper is forked by ``isolation`` (``toilbox run``) or
by the zygote (the daemon); it forks the plugin's process and then only waits.  It is a
child subreaper (``PR_SET_CHILD_SUBREAPER``, Linux 3.4+): whatever the plugin starts,
even through ``setsid`` or a double fork, is re-parented to the reaper when its own
parent exits, never to init.  So the attempt's processes are exactly the reaper's
descendants, and the reaper ends them all before it exits:

- the plugin's process exits (answer written or not): whatever it left running gets
  SIGKILL at once; then the reaper exits with the plugin's own wait status;
- SIGTERM (or SIGINT, SIGHUP) from toilbox, on a timeout, Ctrl-C or daemon shutdown:
  every descendant gets SIGTERM (and SIGCONT, so that a stopped one sees it); whatever
  is left after ``KILL_GRACE_S`` gets SIGKILL;
- the reaper's parent dies (toilbox or the zygote, even by SIGKILL): SIGKILL to all.

When toilbox sees the reaper gone, the attempt's whole tree is gone.

Why not a cgroup: it would hold escaped processes too, but creating one needs a
delegated cgroup v2 subtree (root, or systemd's ``Delegate=``), which a ``toilbox run``
from a shell does not have; a subreaper works for any user.  Why not make toilbox (or
the zygote) the subreaper: the daemon's zygote serves many attempts at once, and an
orphan does not say which attempt it came from.  The price is one more fork per
attempt (see tests/benchmarks/bench_isolation.py).

The reaper blocks the signals it waits for and takes them with ``sigwaitinfo``, so no
handler ever interrupts it, and no signal can end it by its default action before it
has set itself up (they are blocked across the fork).

Limits: a process handed to an unrelated one (systemd-run, at, a request to a server) is
not a descendant; one that the reaper may not signal (a set-user-ID program that changed
its real uid) survives, and is logged.  If the reaper itself is killed by someone else,
the plugin's process dies with it, but what the plugin started goes to init.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, NoReturn

import structlog

from toilbox import child, locks

if TYPE_CHECKING:
    from toilbox.models import AttemptSpec

KILL_GRACE_S = 2.0
# Sent to the reaper when its parent dies; a real-time signal nothing else sends.
PARENT_DIED_SIGNAL = signal.SIGRTMIN
_STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGHUP})
_WATCHED = frozenset({signal.SIGCHLD, PARENT_DIED_SIGNAL, *_STOP_SIGNALS})
_PR_SET_DUMPABLE = 4
_PR_SET_CHILD_SUBREAPER = 36
_EX_SOFTWARE = 70  # sysexits: the reaper itself failed

log = structlog.get_logger("toilbox.reaper")


def fork(
    spec: AttemptSpec, result_w: int, output_w: int, close_in_child: Iterable[int] = ()
) -> int:
    """Fork the reaper of one attempt, in its own process group; its pid.

    The caller must have a single thread.  The reaper's signals are blocked across the
    fork, so that it never runs a moment with this process's handlers.
    """
    parent = os.getpid()
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _WATCHED)
    try:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the reaper; tested through the attempts it runs
            for fd in close_in_child:
                os.close(fd)
            _main(spec, result_w, output_w, parent)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    with contextlib.suppress(PermissionError, ProcessLookupError):
        os.setpgid(pid, pid)  # also done in the reaper: whichever runs first wins the race
    return pid


def _main(  # pragma: no cover - runs in the reaper
    spec: AttemptSpec, result_w: int, output_w: int, parent: int
) -> NoReturn:
    tree = _Tree(spec)
    try:
        gc.freeze()  # it never collects what it inherited: no page of it is copied
        os.setpgid(0, 0)
        for signum in _WATCHED:
            signal.signal(signum, signal.SIG_DFL)  # inherited SIG_IGN would discard SIGCHLD
        child.prctl(_PR_SET_CHILD_SUBREAPER, 1)
        if child.prctl(child.PR_SET_PDEATHSIG, PARENT_DIED_SIGNAL) and os.getppid() != parent:
            os._exit(_EX_SOFTWARE)  # the parent died before the signal was armed
        locks.close_inherited()
        reaper = os.getpid()
        tree.plugin = os.fork()
        if tree.plugin == 0:
            child.child_main(spec, result_w, output_w, reaper)
        os.close(result_w)
        os.close(output_w)
        tree.watch()
    except BaseException:
        with contextlib.suppress(BaseException):
            tree.kill()
        os._exit(_EX_SOFTWARE)
    _exit_as(tree.status)


class _Tree:  # pragma: no cover - runs in the reaper
    """The reaper's descendants: the plugin's process and everything it started."""

    def __init__(self, spec: AttemptSpec) -> None:
        self.spec = spec
        self.plugin = 0
        self.status: int | None = None  # the plugin process's wait status, once reaped

    def watch(self) -> None:
        """Wait for the plugin to exit or for a request; end the tree either way."""
        while True:
            signum = signal.sigwaitinfo(_WATCHED).si_signo
            if signum == signal.SIGCHLD:
                self.reap()
                if self.status is not None:
                    self.kill()  # what the plugin left behind: nobody waits for it
                    return
            elif signum == PARENT_DIED_SIGNAL:
                self.kill()
                return
            else:
                self.terminate()
                return

    def reap(self) -> bool:
        """Reap every child that has exited; False once no child is left."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return False
            if pid == 0:
                return True
            if pid == self.plugin:
                self.status = status

    def terminate(self) -> None:
        """SIGTERM to every descendant, a grace to exit, then SIGKILL to what is left."""
        self.signal_all(signal.SIGTERM, signal.SIGCONT)
        deadline = time.monotonic() + KILL_GRACE_S
        while self.reap():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            info = signal.sigtimedwait({signal.SIGCHLD, PARENT_DIED_SIGNAL}, remaining)
            if info is not None and info.si_signo == PARENT_DIED_SIGNAL:
                break
        self.kill()

    def kill(self) -> None:
        """SIGKILL to every descendant until none is left (or none more can be killed).

        A process killed while forking leaves a child that is re-parented to us: each
        round finds what the last one missed.
        """
        deadline = time.monotonic() + KILL_GRACE_S
        while self.reap():
            if time.monotonic() > deadline:
                log.warning(
                    "attempt.processes_survived",
                    task=self.spec.task,
                    run_id=self.spec.run_id,
                    attempt=self.spec.attempt,
                    pids=[p.pid for p in _descendants()],
                )
                return
            self.signal_all(signal.SIGKILL)
            signal.sigtimedwait({signal.SIGCHLD}, 0.1)

    @staticmethod
    def signal_all(*signums: int) -> None:
        import psutil

        for process in _descendants():
            for signum in signums:
                with contextlib.suppress(psutil.Error):
                    process.send_signal(signum)  # psutil refuses a pid that was reused


def _descendants() -> list[Any]:  # pragma: no cover - runs in the reaper
    import psutil

    with contextlib.suppress(psutil.Error):
        return list(psutil.Process().children(recursive=True))
    return []


def _exit_as(status: int | None) -> NoReturn:  # pragma: no cover - runs in the reaper
    """Exit as the plugin's process did, so that toilbox reads its wait status from ours.

    A plugin killed by a signal is mirrored by raising that signal here, after making
    this process non-dumpable so that it leaves no core of its own (as GNU timeout does).
    """
    if status is None:
        os._exit(_EX_SOFTWARE)
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        child.prctl(_PR_SET_DUMPABLE, 0)
        with contextlib.suppress(OSError, ValueError):
            signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signum})
        os._exit(128 + signum)  # not reached: the signal's default action ends us
    os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else _EX_SOFTWARE)
