"""The daemon: every enabled task with a schedule, fired on time, once per slot.

A thin wait (``serve``) around steps that tests call directly: ``start``, ``fire``,
``catch_up``, ``reload``, ``shutdown``.  Signal handlers only record what was asked.
APScheduler computes fire times and wakes up when one is due (no polling); a custom
executor hands each due fire to ``fire``, which claims the slot in the store, applies
the task's ``on_missed`` policy to fires that passed unrun, skips a fire whose task is
still running, and hands the run to a worker thread.  Each attempt's child process is
forked by the zygote, never by this threaded process.

In fleet mode a fleet-scope fire is claimed with the task's lease (``claim_fleet_slot``),
and the upkeep loop (``upkeep``) renews the leases, fences this daemon's fleet runs off
when it cannot, and takes over the runs of daemons that died.
"""

from __future__ import annotations

import collections
import contextlib
import gc
import os
import select
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from apscheduler.executors.base import BaseExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from toilbox import schedule
from toilbox.app import App, load_app
from toilbox.config import Task
from toilbox.dispatch import slot_key
from toilbox.errors import ToilboxError
from toilbox.metrics import DaemonMetrics
from toilbox.takeover import TakingOver
from toilbox.zygote import Zygote, ZygoteError

log = structlog.get_logger("toilbox.daemon")
DAEMON_LOCK = "_daemon"  # task names start with a letter or digit, so this never collides
HEARTBEAT_S = 5.0
SHUTDOWN_POLL_S = 0.1  # how soon a second SIGTERM cuts the grace short


class _Dispatch(BaseExecutor):  # type: ignore[misc]
    """APScheduler executor that hands every due fire (with all its run times) to us."""

    def __init__(self, fire: Callable[[str, list[datetime]], None]) -> None:
        super().__init__()
        self._fire = fire

    def submit_job(self, job: Any, run_times: list[datetime]) -> None:
        self._fire(job.id, run_times)

    def _do_submit_job(self, job: Any, run_times: list[datetime]) -> None:  # pragma: no cover
        raise NotImplementedError  # submit_job does it all


def preloads(app: App) -> list[Callable[[], None]]:
    """The configured task types' ``preload`` functions, to run once in the zygote.

    A task function may carry one (``fn.preload``): it loads what every run of its type
    would otherwise load again in its own process (check.http: httpx and the trust
    store, about 0.1 s of CPU a run).
    """
    loaders = [getattr(t.type.fn, "preload", None) for t in app.tasks.values() if t.enabled]
    return [f for f in dict.fromkeys(loaders) if callable(f)]


def _run_all(loaders: list[Callable[[], None]]) -> Callable[[], None]:
    """One preload of them all, each on its own: one that fails skips no other."""

    def preload() -> None:
        for loader in loaders:
            try:
                loader()
            except Exception as exc:
                log.warning("zygote.preload_failed", preload=getattr(loader, "__qualname__", "?"),
                            error=f"{type(exc).__name__}: {exc}")

    return preload


def _never_called() -> None:  # pragma: no cover - the executor never calls job functions
    raise AssertionError("toilbox jobs are dispatched by the executor")


class Daemon(TakingOver):
    def __init__(self, config_option: str | None, clock: Callable[[], datetime] | None = None):
        self.config_option = config_option
        self.clock = clock or (lambda: datetime.now(UTC))
        self.app: App = load_app(config_option)
        self.app.pooled = True
        self.stop_attempts = threading.Event()
        self.running: dict[str, Future[None]] = {}
        self.stops: dict[str, threading.Event] = {}  # each running task's own stop
        self.leases: dict[str, float] = {}  # fleet leases held for runs: when taken (monotonic)
        self.held: set[str] = set()  # tasks whose fires the store could not take: catch up
        self._lock = threading.Lock()
        self.upkeep: Any = None
        self._warned_clock = -1e9
        self._fires: collections.deque[tuple[str, list[datetime]]] = collections.deque()
        self._fires_ready = threading.Event()
        self._exit = contextlib.ExitStack()
        self.heartbeat = time.monotonic()
        self.metrics = DaemonMetrics(lambda: len(self.running))
        self.scheduler: Any = None
        self.zygote: Zygote | None = None
        self.pool: ThreadPoolExecutor | None = None
        self.http: Any = None
        self.web_store: Any = None

    # -- lifecycle steps ------------------------------------------------------------

    def start(self) -> None:
        """Lock the state dir, close abandoned runs, catch up, then schedule everything."""
        # Every plugin's code, now: the zygote's attempts then never import a module, and
        # a reload cannot mix code upgraded on disk since with what is running.
        self.app.plugins.load_all()
        # What start-up built (config, plugins, imports) lives as long as the daemon: the
        # collector need not walk it again on every full collection, whose work grows
        # with the number of tasks (at 1,000 tasks, perf: 8% of the daemon's CPU went to
        # the collector, 4% with this).  The zygote inherits it frozen.  The price: a
        # frozen object is never collected, so what of a config replaced by a reload is
        # held in a reference cycle stays.
        gc.collect()
        gc.freeze()
        # First, while this process has a single thread (a database pool starts threads).
        self.zygote = Zygote.start(_run_all(preloads(self.app)))
        try:
            store = self.app.store()  # opening it marks runs left by a dead process abandoned
            lease = self.app.config.fleet.lease
            self._exit.enter_context(
                store.hold(DAEMON_LOCK, "toilbox daemon", "toilbox daemon", lease_s=lease)
            )
        except BaseException:
            self.zygote.stop()
            raise
        self.metrics.seed(store, self.app.tasks)
        self.pool = ThreadPoolExecutor(self.app.config.max_concurrent, "toilbox-run")
        from toilbox.upkeep import Upkeep

        self.upkeep = Upkeep(self)
        self.upkeep.start()
        caught_up_to = self.clock()
        self.catch_up(caught_up_to)
        self.scheduler = BackgroundScheduler(
            timezone=UTC,
            executors={"default": _Dispatch(self.enqueue)},
            # Never accept the defaults: APScheduler would drop a fire over 1 s late.
            job_defaults={"coalesce": False, "misfire_grace_time": None, "max_instances": 1},
        )
        for task in self._scheduled(self.app):
            self._add_job(task, after=caught_up_to)
        threading.Thread(target=self._dispatcher, name="toilbox-dispatch", daemon=True).start()
        self.scheduler.start()
        if self.app.config.http is not None:
            self._serve_http()
        log.info(
            "daemon.started",
            tasks=len(self._scheduled(self.app)),
            pid=os.getpid(),
            state_dir=str(self.app.state_dir),
        )

    def reload(self) -> bool:
        """Re-read the config and apply the difference; keep the old one if it is invalid."""
        old = self.app
        try:
            new = load_app(self.config_option)
        except Exception as exc:  # whatever a config can do to the loader, the daemon goes on
            reason = str(exc) if isinstance(exc, ToilboxError) else f"{type(exc).__name__}: {exc}"
            log.error("config.reload_failed", error="; ".join(reason.splitlines()))
            return False
        for key, was, now in (
            ("state_dir", old.state_dir, new.state_dir),
            ("store", old.config.store, new.config.store),
            ("host_id", old.host_id, new.host_id),
        ):
            if was != now:
                log.error("config.reload_failed", error=f"{key} cannot change without a restart")
                return False
        new.pooled = True
        new._store = old.store()
        old_tasks = {t.name: t for t in self._scheduled(old)}
        new_tasks = {t.name: t for t in self._scheduled(new)}
        self.app = new
        for name in old_tasks.keys() - new_tasks.keys():
            self.scheduler.remove_job(name)
        for name, task in new_tasks.items():
            previous = old_tasks.get(name)
            if previous is None or slot_key(previous) != slot_key(task):
                self._add_job(task, after=self.clock())  # from now on: no fire by itself
        log.info(
            "config.reloaded",
            added=sorted(new_tasks.keys() - old_tasks.keys()),
            removed=sorted(old_tasks.keys() - new_tasks.keys()),
        )
        stale = new.plugins.stale()  # plugin code is imported once per process
        if stale:
            log.warning("config.reload_plugins_not_loaded", plugins=stale, fix="restart the daemon")
        return True

    def shutdown(self, grace: float | None = None, hurry: Callable[[], bool] | None = None) -> None:
        """Stop firing; give running tasks ``shutdown_grace`` to finish, then kill them.

        ``hurry`` is asked while waiting: once it returns True (a second SIGTERM or
        SIGINT), the wait ends at once.
        """
        grace = self.app.config.shutdown_grace if grace is None else grace
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        self._fires.clear()  # fires not yet claimed stay unclaimed: catch-up sees them
        pending = set(self.running.values())
        log.info("daemon.stopping", running=sorted(self.running), grace_s=grace)
        deadline = time.monotonic() + grace
        while pending and time.monotonic() < deadline:
            if hurry is not None and hurry():
                log.warning("daemon.grace_cut_short", running=sorted(self.running))
                break
            slice_s = min(deadline - time.monotonic(), SHUTDOWN_POLL_S)
            pending = wait_for(pending, timeout=max(slice_s, 0)).not_done
        if pending:
            self.stop_all()  # attempts are killed and recorded as interrupted
        if self.pool is not None:
            self.pool.shutdown(wait=True)
        if self.upkeep is not None:
            self.upkeep.stop()
        if self.http is not None:
            self.http.stop()
            self.web_store.close()
        if self.zygote is not None:
            self.zygote.stop()
        self.app.close()
        self._exit.close()
        log.info("daemon.stopped")

    def _serve_http(self) -> None:
        """/healthz, /metrics and the status page, read through a store connection of
        their own, so a page never waits on (or holds up) the scheduler's."""
        from toilbox.store import open_store
        from toilbox.web.server import HttpServer, StatusApp

        http = self.app.config.http
        assert http is not None  # noqa: S101 -- the caller checked
        url = self.app.config.store.url if self.app.config.store else None
        self.web_store = open_store(self.app.state_dir, url, self.app.host_id)
        pages = StatusApp(lambda: self.app, self.web_store, self.metrics.registry, self.health,
                          http.token)
        self.http = HttpServer(http.listen, pages)
        self.http.start()

    def stop_all(self) -> None:
        self.stop_attempts.set()
        with self._lock:
            for stop in self.stops.values():
                stop.set()

    def healthy(self) -> bool:
        """The scheduler, the zygote and the main loop are alive (what the watchdog needs)."""
        thread = getattr(self.scheduler, "_thread", None)
        alive = bool(self.scheduler and self.scheduler.running and thread and thread.is_alive())
        zygote = self.zygote is not None and self.zygote.alive()
        return alive and zygote and time.monotonic() - self.heartbeat < 3 * HEARTBEAT_S

    def health(self) -> tuple[bool, list[str]]:
        """``/healthz``: alive, and able to record (a store that fails is reported)."""
        problems = [] if self.healthy() else ["scheduler stalled"]
        if self.upkeep is not None and self.upkeep.store_error:
            scope = "fleet tasks held" if self.app.fleet else "runs cannot be recorded"
            problems.append(f"store failing ({scope}): {self.upkeep.store_error}")
        return not problems, problems or ["ok"]

    # -- helpers ----------------------------------------------------------------------

    def _add_job(self, task: Task, after: datetime) -> None:
        """Schedule from the first fire after ``after``: catch-up covered up to it, so no
        fire falls between the two, however long start-up takes."""
        trig = schedule.trigger(schedule.parse(task.schedule or ""), task.timezone)
        first = trig.get_next_fire_time(None, after + timedelta(microseconds=1))
        self.scheduler.add_job(
            _never_called,
            trig,
            id=task.name,
            name=task.name,
            replace_existing=True,
            next_run_time=first,
        )


class _Signals:
    """The signals received, in order, as requests: "stop" or "reload".

    Python's C-level handler writes each signal's number to a wake-up pipe
    (``signal.set_wakeup_fd``): that is the record, made without a lock or an allocation,
    and it wakes the main loop.  The Python-level handler has nothing left to do.
    """

    def __init__(self) -> None:
        self._read, self.wakeup_fd = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self.wakeup_fd, False)
        self.requests: list[str] = []

    def wait(self, timeout: float, fds: list[int]) -> None:
        """Sleep until a signal comes, one of ``fds`` is readable, or ``timeout``."""
        poller = select.poll()  # not select(): it fails on fd numbers past 1023
        for fd in (self._read, *fds):
            poller.register(fd, select.POLLIN)
        poller.poll(timeout * 1000)
        self.collect()

    def collect(self) -> None:
        while True:
            try:
                received = os.read(self._read, 512)
            except BlockingIOError:
                return
            if not received:
                return
            self.requests += ["reload" if s == signal.SIGHUP else "stop" for s in received]

    def stop_again(self) -> bool:
        """A stop is (still) asked for: polled while the shutdown waits."""
        self.collect()
        return "stop" in self.requests

    def close(self) -> None:
        os.close(self._read)
        os.close(self.wakeup_fd)


def _noted(signum: int, frame: object) -> None:
    """Installed so that the signal does not kill us; the wake-up pipe has noted it."""


@contextlib.contextmanager
def _signals() -> Iterator[_Signals]:
    inbox = _Signals()
    previous_fd = signal.set_wakeup_fd(inbox.wakeup_fd, warn_on_full_buffer=False)
    previous = {s: signal.signal(s, _noted) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        yield inbox
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
        signal.set_wakeup_fd(previous_fd)
        inbox.close()


def serve(config_option: str | None) -> int:
    """``toilbox daemon``: run until SIGTERM or SIGINT; SIGHUP reloads the config."""
    from toilbox.systemd import Notifier

    notifier = Notifier()
    daemon = Daemon(config_option)
    with _signals() as inbox:
        daemon.start()
        notifier.ready()
        while True:
            fds = daemon.zygote.fds() if daemon.zygote is not None else []
            inbox.wait(notifier.watchdog_interval(HEARTBEAT_S), fds)
            daemon.heartbeat = time.monotonic()
            try:
                if daemon.zygote is not None:
                    daemon.zygote.revive()  # a dead zygote is replaced by its spare
            except ZygoteError as exc:
                log.error(
                    "zygote.died",
                    error=f"{exc}: no attempt can start; stopping so a supervisor restarts "
                    "the daemon",
                )
                notifier.stopping()
                daemon.shutdown(grace=0)
                return 1
            if daemon.healthy():
                notifier.watchdog()
            while inbox.requests:
                if inbox.requests.pop(0) == "stop":
                    notifier.stopping()
                    daemon.shutdown(hurry=inbox.stop_again)
                    return 0
                notifier.reloading()
                daemon.reload()
                notifier.ready()
