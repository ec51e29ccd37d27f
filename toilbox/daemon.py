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
import hashlib
import os
import select
import signal
import socket
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

from toilbox import automation, runner, schedule
from toilbox.app import App, load_app
from toilbox.config import Task
from toilbox.errors import AlreadyRunning, RunFenced, StateError, ToilboxError
from toilbox.metrics import DaemonMetrics
from toilbox.models import Claim, Lease, RunRecord, SlotWanted, now_iso, utc_iso
from toilbox.zygote import Zygote, ZygoteError

log = structlog.get_logger("toilbox.daemon")
DAEMON_LOCK = "_daemon"  # task names start with a letter or digit, so this never collides
HEARTBEAT_S = 5.0
SHUTDOWN_POLL_S = 0.1  # how soon a second SIGTERM cuts the grace short
FLEET_TRIGGERS_TAKEN_OVER = ("schedule", "catch-up")
FLEET_KINDS_TAKEN_OVER = ("check", "report")


class _Dispatch(BaseExecutor):  # type: ignore[misc]
    """APScheduler executor that hands every due fire (with all its run times) to us."""

    def __init__(self, fire: Callable[[str, list[datetime]], None]) -> None:
        super().__init__()
        self._fire = fire

    def submit_job(self, job: Any, run_times: list[datetime]) -> None:
        self._fire(job.id, run_times)

    def _do_submit_job(self, job: Any, run_times: list[datetime]) -> None:  # pragma: no cover
        raise NotImplementedError  # submit_job does it all


def _never_called() -> None:  # pragma: no cover - the executor never calls job functions
    raise AssertionError("toilbox jobs are dispatched by the executor")


def slot_key(task: Task) -> str:
    """What a claimed slot is tied to: a schedule edit starts a new series of slots."""
    return f"{task.schedule} {task.timezone}"


def iso(moment: datetime) -> str:
    """Slots are stored in UTC, so one instant is always one string, and strings sort."""
    return utc_iso(moment)


def jitter_delay(task: Task, slot: datetime) -> float:
    """A random delay up to the task's jitter, the same for the same slot (restarts agree)."""
    if not task.jitter:
        return 0.0
    digest = hashlib.sha256(f"{task.name}@{iso(slot)}".encode()).digest()
    return task.jitter * int.from_bytes(digest[:8], "big") / 2**64


class Daemon:
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
        # First, while this process has a single thread (a database pool starts threads).
        self.zygote = Zygote.start()
        try:
            store = self.app.store()  # opening it marks runs left by a dead process abandoned
            lease = self.app.config.fleet.lease
            self._exit.enter_context(
                store.hold(DAEMON_LOCK, "toilbox daemon", "toilbox daemon", lease_s=lease)
            )
        except BaseException:
            self.zygote.stop()
            raise
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

    def enqueue(self, name: str, run_times: list[datetime]) -> None:
        """A fire is due (the scheduler's thread: must not block): queue it for the
        dispatcher, which claims whatever has queued meanwhile in one batch."""
        self._fires.append((name, run_times))
        self._fires_ready.set()

    def _dispatcher(self) -> None:
        while not self.stop_attempts.is_set():
            self._fires_ready.wait(1.0)
            self._fires_ready.clear()
            batch = []
            while self._fires:
                batch.append(self._fires.popleft())
            if batch:
                try:
                    self.fire_batch(batch)
                except Exception:
                    log.exception("dispatch.failed", tasks=sorted({name for name, _ in batch}))

    def fire(self, name: str, run_times: list[datetime]) -> None:
        """One task's fire, now (tests call this; the scheduler's come in batches)."""
        self.fire_batch([(name, run_times)])

    def fire_batch(self, fires: list[tuple[str, list[datetime]]]) -> None:
        app = self.app
        now = self.clock()
        plans: list[tuple[Task, list[datetime], list[datetime]]] = []
        for name, run_times in fires:
            task = app.tasks.get(name)
            if task is None or not task.enabled or task.schedule is None:
                continue
            slot, late = run_times[-1], run_times[:-1]
            self.metrics.lag.observe(max(0.0, (now - slot).total_seconds()))
            # Fires that came late together (the daemon was busy or the machine asleep):
            # the newest is this fire; the older ones are missed, or run first (run_all).
            caught_up = late[-task.catchup_max :] if task.on_missed == "run_all" else []
            plans.append((task, late[: len(late) - len(caught_up)], [*caught_up, slot]))
        try:
            for task, missed, _slots in plans:
                self._record_missed(app, task, missed, "the daemon was busy or asleep")
            self._dispatch_many(app, [(t, slots) for t, _, slots in plans], "schedule", now)
        except StateError as exc:
            # The store cannot take the claims (PostgreSQL away, a full disk): a fleet task
            # fails closed.  Once the store answers again, catch-up settles what passed.
            names = sorted(t.name for t, _, _ in plans)
            with self._lock:
                self.held.update(names)
            self._store_failed(exc)
            log.error("slots.not_claimed", tasks=names, error=str(exc))

    def catch_up(self, now: datetime, only: set[str] | None = None) -> None:
        """Apply each task's ``on_missed`` to the fires that passed while we were down
        (or while the store could not take their claims: ``only`` those tasks)."""
        tasks = [t for t in self._scheduled(self.app) if only is None or t.name in only]
        store = self.app.store()
        last_slots: dict[str, tuple[str, str]] = {}
        for host in {self._slot_host(t) for t in tasks}:
            names = [t.name for t in tasks if self._slot_host(t) == host]
            last_slots.update(store.last_slots(names, host))
        for task in tasks:
            last = last_slots.get(task.name)
            if last is None or last[1] != slot_key(task):
                continue  # never fired, or the schedule changed: an edit never fires a run
            trig = schedule.trigger(schedule.parse(task.schedule or ""), task.timezone)
            after = datetime.fromisoformat(last[0])
            passed = schedule.fire_times_between(trig, after, now, limit=10_000)
            if passed:
                self._settle_missed(self.app, task, passed, now, reason="the daemon was down")

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

    def fence(self, tasks: set[str], reason: str) -> None:
        """Kill this daemon's runs of these fleet tasks: their leases are lost."""
        with self._lock:
            fenced = sorted(t for t in tasks if t in self.stops and not self.stops[t].is_set())
            for name in fenced:
                self.stops[name].set()
        if fenced:
            log.error("fleet.fenced", tasks=fenced, reason=reason)

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

    @staticmethod
    def _scheduled(app: App) -> list[Task]:
        return [t for t in app.tasks.values() if t.enabled and t.schedule]

    def _slot_host(self, task: Task) -> str:
        """A host task's slots are this host's; a fleet task's are the fleet's ("")."""
        return "" if self.app.scope_of(task) == "fleet" else self.app.host_id

    def _lease(self, task: Task, slot: datetime | None, trigger: str, attempt: int = 1) -> Lease:
        holder = f"pid {os.getpid()} on {socket.gethostname()} as {self.app.host_id}"
        return Lease(
            f"task:{task.name}",
            self.app.store().owner,
            holder,
            task.name,
            iso(slot) if slot else None,
            trigger,
            attempt,
        )

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

    def _settle_missed(
        self, app: App, task: Task, passed: list[datetime], now: datetime, reason: str
    ) -> None:
        """Run or record fires that passed unrun, as the task's ``on_missed`` says."""
        trig = schedule.trigger(schedule.parse(task.schedule or ""), task.timezone)
        window = task.catchup_window or min(schedule.interval_s(trig, now), 86400.0)
        in_window = [t for t in passed if t >= now - timedelta(seconds=window)]
        if task.on_missed == "run_once":
            to_run = in_window[-1:]
        elif task.on_missed == "run_all":
            to_run = in_window[-task.catchup_max :]
        else:
            to_run = []
        self._record_missed(app, task, [t for t in passed if t not in to_run], reason)
        if to_run:
            self._dispatch(app, task, to_run, "catch-up", now)

    def _record_missed(self, app: App, task: Task, not_run: list[datetime], reason: str) -> None:
        """One ``missed`` record (and log line) for slots that will never run."""
        store = app.store()
        if not_run:
            # Claimed first: of daemons catching up together, one records the loss.
            if not store.claim_slot(
                task.name, iso(not_run[-1]), slot_key(task), "missed", self._slot_host(task)
            ):
                return
            self.metrics.missed.labels(task.name).inc(len(not_run))
            summary = (
                f"missed {len(not_run)} slot(s) from {iso(not_run[0])} to "
                f"{iso(not_run[-1])}: {reason} (on_missed: {task.on_missed})"
            )
            store.record(
                self._final_record(
                    task,
                    "missed",
                    summary,
                    not_run[-1],
                    {"slots": [iso(t) for t in not_run[-100:]], "count": len(not_run)},
                )
            )
            log.warning(
                "slots.missed",
                task=task.name,
                count=len(not_run),
                first=iso(not_run[0]),
                last=iso(not_run[-1]),
                on_missed=task.on_missed,
            )

    def _dispatch(
        self, app: App, task: Task, slots: list[datetime], trigger: str, now: datetime
    ) -> None:
        self._dispatch_many(app, [(task, slots)], trigger, now)

    def _dispatch_many(
        self, app: App, plans: list[tuple[Task, list[datetime]]], trigger: str, now: datetime
    ) -> None:
        """Claim the slots, a batch at a time, and hand each task's to a worker, unless
        the task is still running (its fires are then claimed as skipped)."""
        store = app.store()
        fired: list[tuple[Task, datetime, float]] = []
        with self._lock:
            busy = [(t, slots) for t, slots in plans if t.name in self.running]
            free = [(t, slots) for t, slots in plans if t.name not in self.running]
            skips = [
                (t, s, SlotWanted(t.name, iso(s), slot_key(t), "skipped", self._slot_host(t)))
                for t, slots in busy
                for s in slots
            ]
            for (t, s, _), won in zip(skips, store.claim_slots([w for *_, w in skips]),
                                      strict=True):
                if won:
                    self._record_skipped(app, t, s, "still running")
            local = [(t, slots) for t, slots in free if app.scope_of(t) == "host"]
            claimer = f"{socket.gethostname()}:{os.getpid()}"
            wanted = [
                SlotWanted(t.name, iso(s), slot_key(t), claimer, app.host_id)
                for t, slots in local
                for s in slots
            ]
            answers = iter(store.claim_slots(wanted))
            for task, slots in local:
                claimed = [s for s in slots if next(answers)]
                if claimed and self.pool is not None:
                    self._submit(app, task, claimed, trigger, leased=False)
                    fired.append((task, claimed[-1], self._lag(claimed[-1])))
            fleet = [(t, slots) for t, slots in free if app.scope_of(t) == "fleet"]
            if fleet:
                for task, claimed in self._claim_fleet(app, fleet, trigger):
                    if self.pool is not None:
                        self._submit(app, task, claimed, trigger, leased=True)
                        fired.append((task, claimed[-1], self._lag(claimed[-1])))
        for task, slot, lag in fired:
            log.info(
                "task.fired",
                task=task.name,
                scheduled_for=iso(slot),
                trigger=trigger,
                dispatch_lag_ms=round(lag * 1000, 3),
            )

    def _store_failed(self, exc: StateError) -> None:
        if self.upkeep is not None:
            self.upkeep.failed(exc)

    def _lag(self, slot: datetime) -> float:
        """Seconds from the slot to its run handed to a worker (the dispatch lag)."""
        return (self.clock() - slot).total_seconds()

    def _claim_fleet(
        self, app: App, plans: list[tuple[Task, list[datetime]]], trigger: str
    ) -> list[tuple[Task, list[datetime]]]:
        """Each task's first slot with the task's lease, all in one batch (the later
        slots of a run_all catch-up ride on the lease); a slot whose task runs elsewhere
        is recorded skipped; one not yet due on the database's clock is asked again."""
        store = app.store()
        lease_s = app.config.fleet.lease
        claims = store.claim_fleet_slots(
            [(t.name, iso(slots[0]), slot_key(t), self._lease(t, slots[0], trigger))
             for t, slots in plans],
            lease_s,
        )
        won = []
        for (task, slots), claim in zip(plans, claims, strict=True):
            if claim.outcome is Claim.WON:
                self.leases[f"task:{task.name}"] = time.monotonic()
                rest = slots[1:]
                more = store.claim_slots(
                    [SlotWanted(task.name, iso(s), slot_key(task), store.owner) for s in rest]
                ) if rest else []
                won.append((task, [slots[0], *[s for s, ok in zip(rest, more, strict=True)
                                              if ok]]))
            elif claim.outcome is Claim.BUSY:
                self._record_skipped(app, task, slots[0], f"still running ({claim.holder})")
                if slots[1:]:
                    self._retry_soon(app, task, slots[1:], trigger, 0.0)
            elif claim.outcome is Claim.EARLY:
                # Our clock is ahead of the database's: ask again when the slot is due there.
                self._retry_soon(app, task, slots, trigger, claim.early_s + 0.001)
                self._clock_ahead(task, slots[0], claim.early_s)
            elif slots[1:]:  # LOST: another daemon has this slot; the next may be free
                self._retry_soon(app, task, slots[1:], trigger, 0.0)
        return won

    def _retry_soon(
        self, app: App, task: Task, slots: list[datetime], trigger: str, delay: float
    ) -> None:
        retry = threading.Timer(delay, self._retry_early, (app, task, slots, trigger))
        retry.daemon = True
        retry.start()

    def _clock_ahead(self, task: Task, slot: datetime, early_s: float) -> None:
        log.debug("slot.early", task=task.name, scheduled_for=iso(slot),
                  early_ms=round(early_s * 1000, 3))
        now = time.monotonic()
        if early_s > 0.5 and now - self._warned_clock > 600:
            self._warned_clock = now
            log.warning(
                "clock.ahead_of_store",
                ahead_s=round(early_s, 3),
                hint="fleet slots are claimed on the database's clock; sync this host (NTP)",
            )

    def _retry_early(self, app: App, task: Task, slots: list[datetime], trigger: str) -> None:
        if self.app is not app or self.stop_attempts.is_set():
            return
        try:
            self._dispatch(app, task, slots, trigger, self.clock())
        except StateError as exc:
            with self._lock:
                self.held.add(task.name)
            log.error("slot.not_claimed", task=task.name, error=str(exc))

    def _record_skipped(self, app: App, task: Task, slot: datetime, reason: str) -> None:
        self.metrics.skipped.labels(task.name).inc()
        app.store().record(self._final_record(task, "skipped", f"skipped: {reason}", slot, {}))
        log.warning("slot.skipped", task=task.name, scheduled_for=iso(slot), reason=reason)

    def _submit(
        self,
        app: App,
        task: Task,
        slots: list[datetime],
        trigger: str,
        *,
        leased: bool,
        first_attempt: int = 1,
    ) -> None:
        """Hand a claimed run to a worker (under ``self._lock``)."""
        assert self.pool is not None  # noqa: S101 -- started
        self.stops[task.name] = threading.Event()
        if self.stop_attempts.is_set():
            self.stops[task.name].set()
        self.running[task.name] = self.pool.submit(
            self._run, app, task, slots, trigger, leased, first_attempt
        )

    def _run(
        self,
        app: App,
        task: Task,
        slots: list[datetime],
        trigger: str,
        leased: bool = False,
        first_attempt: int = 1,
    ) -> None:
        stop = self.stops.get(task.name) or self.stop_attempts
        try:
            for index, slot in enumerate(slots):
                if stop.wait(jitter_delay(task, slot)):
                    # Claimed, never started: say so, or the slot would vanish unrecorded.
                    for unrun in slots[index:]:
                        self._record_skipped(app, task, unrun, "the daemon stopped first")
                    return
                try:
                    record = automation.run(
                        app,
                        task.name,
                        trigger=trigger,
                        scheduled_for=slot,
                        stop=stop,
                        purpose="toilbox daemon",
                        zygote=self.zygote,
                        leased=leased,
                        first_attempt=first_attempt,
                        unrecorded=self.upkeep.defer_finish if self.upkeep else None,
                    )
                except AlreadyRunning as exc:
                    self._record_skipped(app, task, slot, str(exc))
                    continue
                except StateError as exc:
                    if isinstance(exc, RunFenced):
                        raise
                    # The run could not even be recorded as started (a full disk): it did
                    # not run, and says so, as missed, once the store takes writes again.
                    self._store_failed(exc)
                    log.error("run.not_started", task=task.name, scheduled_for=iso(slot),
                              error=str(exc))
                    if self.upkeep is not None:
                        self.upkeep.defer_record(self._final_record(
                            task, "missed", f"missed: the store could not record it ({exc})",
                            slot, {"slots": [iso(slot)], "count": 1}))
                    continue
                first_attempt = 1
                self.metrics.run_finished(record)
        except RunFenced as exc:
            log.error("run.fenced", task=task.name, error=str(exc))
        except ToilboxError as exc:
            log.error("run.not_recorded", task=task.name, error=str(exc))
        except Exception:
            log.exception("run.crashed_in_daemon", task=task.name)
        finally:
            if leased:
                self._release(app, task)
            with self._lock:
                self.running.pop(task.name, None)
                self.stops.pop(task.name, None)

    def _release(self, app: App, task: Task) -> None:
        name = f"task:{task.name}"
        with self._lock:
            self.leases.pop(name, None)
        try:
            app.store().release_lease(name, app.store().owner)
        except StateError as exc:  # it expires by itself
            log.warning("fleet.release_failed", task=task.name, error=str(exc))

    def take_over(self, lease: Lease) -> None:
        """A dead daemon's lease on one of our fleet tasks: take its run over, or, for a
        run that must not run twice, record it abandoned and let the next slot decide."""
        app, store = self.app, self.app.store()
        task = app.tasks.get(lease.task or "")
        if task is None or app.scope_of(task) != "fleet":
            return
        if lease.owner == store.owner:
            self._tidy_own(task, lease)
            return
        taken = store.take_over(lease, store.owner, self._lease(task, None, "").holder,
                                app.config.fleet.lease)
        if taken is None:
            return  # another daemon was first
        in_flight = store.running_fleet(task.name)
        for run in in_flight:
            store.mark_abandoned(
                run.run_id,
                f"abandoned: {lease.holder} stopped renewing its lease; taken over by"
                f" {app.host_id}",
            )
        # A slot whose run had ended (its owner died while fixing what it found, say)
        # has its verdict: it is not run again.
        ended = lease.scheduled_for is not None and any(
            r.status not in ("running", "skipped", "missed") and r.run_id not in
            {x.run_id for x in in_flight}
            for r in store.slot_runs(task.name, lease.scheduled_for)
        )
        rerun = (
            lease.trigger in FLEET_TRIGGERS_TAKEN_OVER
            and task.type.kind in FLEET_KINDS_TAKEN_OVER
            and lease.scheduled_for is not None
            and not ended
            and (not in_flight or taken.attempt <= task.retry.attempts)
        )
        log.warning(
            "fleet.taken_over",
            task=task.name,
            from_holder=lease.holder,
            scheduled_for=lease.scheduled_for,
            abandoned=[r.run_id for r in in_flight],
            rerun=rerun,
        )
        with self._lock:
            if rerun and task.name not in self.running and self.pool is not None:
                self.leases[f"task:{task.name}"] = time.monotonic()
                slot = datetime.fromisoformat(lease.scheduled_for or "")
                attempt = taken.attempt if in_flight else 1
                self._submit(app, task, [slot], lease.trigger or "schedule", leased=True,
                             first_attempt=attempt)
                return
        store.release_lease(taken.name, store.owner)

    def _tidy_own(self, task: Task, lease: Lease) -> None:
        """Our own lease, expired: left behind when the store was away as our run ended
        (or was fenced off).  Its run could not record an end: say so, and let go."""
        store = self.app.store()
        with self._lock:
            if task.name in self.running:
                return  # still ours to finish; the watchman fences it if need be
        for run in store.running_fleet(task.name):
            store.mark_abandoned(
                run.run_id, "abandoned: its daemon lost the store while it ran; no result"
            )
        store.release_lease(lease.name, store.owner)

    def _final_record(
        self, task: Task, status: str, summary: str, slot: datetime, data: dict[str, Any]
    ) -> RunRecord:
        return _final_record(self.app, task, status, summary, slot, data)


def _final_record(
    app: App, task: Task, status: str, summary: str, slot: datetime, data: dict[str, Any]
) -> RunRecord:
    now = now_iso()
    return RunRecord(
        run_id=runner.new_run_id(),
        task=task.name,
        task_type=task.type.name,
        status=status,
        trigger="schedule",
        started_at=now,
        finished_at=now,
        hostname=socket.gethostname(),
        pid=os.getpid(),
        scheduled_for=iso(slot),
        summary=summary,
        data=data,
        duration_s=0.0,
        host=app.host_id,
        scope=app.scope_of(task),
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
