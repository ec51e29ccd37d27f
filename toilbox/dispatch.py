"""Dispatch: due fires become claimed slots and runs handed to workers.

The scheduler's executor queues each due fire (``enqueue``); a dispatcher thread takes
whatever has queued meanwhile and claims it in one batch (``fire_batch``): a burst of
fires costs one store round trip, not one per task.  A fire of a task still running is
claimed as skipped; fires that passed unrun follow the task's ``on_missed``; a fleet
slot comes with its task's lease (``claim_fleet_slots``).  Each claimed run goes to a
worker thread (``_run``), which runs it, and its remediation, through ``automation``.
Part of ``Daemon``: the state it works on (running tasks, their stops, the leases held)
is declared here and set up by ``Daemon.__init__``.
"""

from __future__ import annotations

import collections
import hashlib
import os
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

import structlog

from toilbox import automation, runner, schedule
from toilbox.app import App
from toilbox.config import Task
from toilbox.errors import AlreadyRunning, RunFenced, StateError, ToilboxError
from toilbox.metrics import DaemonMetrics
from toilbox.models import Claim, Lease, RunRecord, SlotWanted, now_iso, utc_iso
from toilbox.zygote import Zygote

log = structlog.get_logger("toilbox.daemon")


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


class Dispatching:
    app: App
    clock: Callable[[], datetime]
    stop_attempts: threading.Event
    running: dict[str, Future[None]]
    stops: dict[str, threading.Event]  # each running task's own stop
    leases: dict[str, float]  # fleet leases held for runs: when taken (monotonic)
    held: set[str]  # tasks whose fires the store could not take: caught up later
    _lock: threading.Lock
    _warned_clock: float
    _fires: collections.deque[tuple[str, list[datetime]]]
    _fires_ready: threading.Event
    metrics: DaemonMetrics
    pool: ThreadPoolExecutor | None
    zygote: Zygote | None
    upkeep: Any

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

    @staticmethod
    def _scheduled(app: App) -> list[Task]:
        return [t for t in app.tasks.values() if t.enabled and t.schedule]

    def _slot_host(self, task: Task) -> str:
        """A host task's slots are this host's; a fleet task's are the fleet's ("")."""
        return "" if self.app.scope_of(task) == "fleet" else self.app.host_id

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
