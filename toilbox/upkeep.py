"""The daemon's upkeep: a loop beside the scheduler that keeps the store in order.

Every daemon prunes history older than ``history_retention`` in small batches and
retries the catch-up of fires the store could not take.  In fleet mode it also says
it is alive (the ``hosts`` table), renews its leases, ships host runs from the local
outbox, takes over the runs of daemons that stopped renewing theirs, and, when it
cannot renew its own in time, kills its fleet runs before anyone may take them over
(self-fencing; a separate watchman thread does that, so a hung database call cannot
delay it).  See docs/fleet.md for the timings.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Protocol

import structlog

from toilbox import __version__
from toilbox.errors import StateError
from toilbox.models import HostInfo, Lease, RunRecord, now_iso

if TYPE_CHECKING:
    from toilbox.app import App

log = structlog.get_logger("toilbox.upkeep")
TICK_S = 1.0
PRUNE_EVERY_S = 600.0
PRUNE_BATCH = 1000
PRUNE_PAUSE_S = 0.05  # between batches: the scheduler's writes go first


class Tended(Protocol):
    """What the upkeep needs of the daemon it keeps (the daemon hands itself over)."""

    app: App
    clock: Callable[[], datetime]
    leases: dict[str, float]  # fleet leases held for runs: when taken (monotonic)
    held: set[str]  # tasks whose fires the store could not take
    _lock: threading.Lock

    def catch_up(self, now: datetime, only: set[str] | None = None) -> None: ...
    def fence(self, tasks: set[str], reason: str) -> None: ...
    def take_over(self, lease: Lease) -> None: ...


class Upkeep:
    def __init__(self, daemon: Tended) -> None:
        self.daemon = daemon
        self.store_error: str | None = None  # the last store failure, until a success
        self._stop = threading.Event()
        self._started_at = now_iso()
        self._renewed = time.monotonic()  # the last time every lease was renewed
        self._last: dict[str, float] = {}
        # Writes the store refused (a full disk), made again in order once it takes them.
        self._pending: collections.deque[tuple[str, RunRecord]] = collections.deque()
        self._threads = [
            threading.Thread(target=self._loop, name="toilbox-upkeep", daemon=True),
        ]
        if daemon.app.fleet:
            self._threads.append(
                threading.Thread(target=self._watch, name="toilbox-fence", daemon=True)
            )

    def start(self) -> None:
        if self.daemon.app.fleet:
            self._beat()
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)

    # -- the loops ---------------------------------------------------------------------

    def defer_finish(self, record: RunRecord) -> None:
        """A run's end the store could not take: written when it can."""
        self._pending.append(("finish", record))

    def defer_record(self, record: RunRecord) -> None:
        self._pending.append(("record", record))

    def failed(self, exc: StateError) -> None:
        """Something the daemon wrote was refused: /healthz says so until it passes."""
        self._failed(exc)

    def _loop(self) -> None:
        timings = self.daemon.app.config.fleet
        while not self._stop.wait(TICK_S):
            try:
                # First the one call that may find a failed store again (in a fleet, the
                # lease renewal); nothing else is tried until it passes.
                if self.daemon.app.fleet:
                    if self._due("renew", timings.renew):
                        self._renew()
                        self._beat()
                elif self.store_error is not None:
                    self._probe()
                if self.store_error is not None:
                    continue
                self._flush()
                if self.daemon.app.fleet:
                    self._ship()
                    if self._due("sweep", timings.sweep):
                        self._sweep()
                self._catch_up()
                if self._due("prune", PRUNE_EVERY_S):
                    self.prune()
            except StateError as exc:
                self._failed(exc)
            except Exception:
                log.exception("upkeep.failed")

    def _watch(self) -> None:
        """Fence this daemon's fleet runs when its leases may have run out."""
        fence_after = self.daemon.app.config.fleet.fence_after
        while not self._stop.wait(0.25):
            now = time.monotonic()
            with self.daemon._lock:
                stale = {
                    name.removeprefix("task:")
                    for name, taken in self.daemon.leases.items()
                    if now - max(taken, self._renewed) > fence_after
                }
            if stale:
                silent = now - self._renewed
                self.daemon.fence(
                    stale, f"leases not renewed for {silent:.0f}s (fence after {fence_after:g}s)"
                )

    def _probe(self) -> None:
        """A write that must pass before anything else is tried again."""
        self.daemon.app.store().set_setting("upkeep_probe", now_iso())
        self._ok()

    def _flush(self) -> None:
        store = self.daemon.app.store()
        while self._pending:
            kind, record = self._pending[0]
            written = True
            if kind == "finish":
                written = store.finish_run(record)
            else:
                store.record(record)
            self._pending.popleft()
            if written:
                log.info("run.recorded_late", run_id=record.run_id, task=record.task,
                         status=record.status)
            else:  # another daemon took the task over meanwhile, and said so in the record
                log.warning("run.fenced_late", run_id=record.run_id, task=record.task,
                            status=record.status)

    def _due(self, what: str, every: float) -> bool:
        now = time.monotonic()
        if now - self._last.get(what, 0.0) < every:
            return False
        self._last[what] = now
        return True

    def _failed(self, exc: StateError) -> None:
        if self.store_error is None:
            log.error("store.failing", error=str(exc))
        self.store_error = str(exc)

    def _ok(self) -> None:
        if self.store_error is not None:
            log.info("store.recovered", was=self.store_error)
        self.store_error = None

    # -- duties ------------------------------------------------------------------------

    def _renew(self) -> None:
        daemon = self.daemon
        store = daemon.app.store()
        # Judge the silence before asking: a daemon that was stopped (SIGSTOP, a paused
        # VM) fences first, then finds out what it still holds.
        before = time.monotonic()
        with daemon._lock:
            expected = dict(daemon.leases)  # a lease taken after the renewal began is not lost
        names = sorted(set(expected) | store.held_leases())
        held = set(store.renew_leases(store.owner, names, daemon.app.config.fleet.lease))
        self._renewed = before
        self._ok()
        with daemon._lock:
            lost = {
                name.removeprefix("task:")
                for name, taken in expected.items()
                if name not in held and daemon.leases.get(name) == taken
            }
        if lost:
            daemon.fence(lost, "lease taken over")

    def _beat(self) -> None:
        app = self.daemon.app
        import socket

        app.store().heartbeat(
            HostInfo(
                host_id=app.host_id,
                hostname=socket.gethostname(),
                version=__version__,
                config_hash=app.config_hash,
                started_at=self._started_at,
                last_seen=now_iso(),
                alive=True,
            )
        )

    def _ship(self) -> None:
        store = self.daemon.app.store()
        ship = getattr(store, "ship", None)
        if ship is not None and ship():
            self._ok()

    def _sweep(self) -> None:
        daemon = self.daemon
        store = daemon.app.store()
        for lease in store.expired_leases(daemon.app.config.fleet.takeover_grace):
            if lease.name.startswith("task:"):
                daemon.take_over(lease)
            elif lease.name.startswith("lock:_daemon@"):
                self._bury(lease.name.removeprefix("lock:_daemon@"), lease)
        self._ok()

    def _bury(self, host_id: str, lease: Lease) -> None:
        """A daemon that stopped renewing and did not come back: its host runs shown as
        running are abandoned (its own record replaces that if it returns)."""
        store = self.daemon.app.store()
        taken = store.take_over(lease, store.owner, "burying a dead daemon", 60.0)
        if taken is None:
            return
        shared = getattr(store, "shared", store)
        for run in shared.running(host_id):
            if run.scope == "fleet":
                continue  # its lease decides: taken over, or abandoned, by the sweep
            shared.mark_abandoned(
                run.run_id, f"abandoned: the daemon of {host_id} stopped while it ran"
            )
        store.release_lease(taken.name, store.owner)
        log.warning("fleet.host_gone", host=host_id)

    def _catch_up(self) -> None:
        daemon = self.daemon
        with daemon._lock:
            held = set(daemon.held)
        if not held:
            return
        daemon.catch_up(daemon.clock(), only=held)
        with daemon._lock:
            daemon.held -= held
        log.info("slots.caught_up", tasks=sorted(held))
        self._ok()

    def prune(self) -> int:
        """Delete history older than ``history_retention``, a batch at a time."""
        app = self.daemon.app
        store = app.store()
        now = datetime.now(UTC)
        before = now - timedelta(seconds=app.config.history_retention)
        # Slots outlive every catch-up window, so a pruned slot is never claimed again.
        longest = max(
            [t.catchup_window or 86400.0 for t in app.tasks.values()] + [86400.0]
        )
        slots_before = min(before, now - timedelta(seconds=2 * longest))
        deleted = 0
        while not self._stop.is_set():
            batch = store.prune(
                before.isoformat(timespec="microseconds"),
                slots_before.isoformat(timespec="microseconds"),
                PRUNE_BATCH,
            )
            deleted += batch
            if batch:
                store.compact()  # a little at a time: each write lock stays short
            if batch < PRUNE_BATCH:
                break
            time.sleep(PRUNE_PAUSE_S)
        if deleted:
            log.info("history.pruned", runs=deleted, before=before.isoformat())
        return deleted
