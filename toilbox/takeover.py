"""A dead daemon's fleet runs, taken over; this daemon's own, fenced off.

When another daemon's lease on a fleet task expires, this daemon takes it (once: of
several, one wins).  A scheduled check or report runs again for its slot as attempt + 1;
anything else (a remediation, a manual run, a cleanup) is recorded abandoned and the
next slot decides.  A slot whose run had ended keeps its verdict.  ``fence`` kills this
daemon's own fleet runs whose leases may have lapsed.  Part of ``Daemon``.
"""

from __future__ import annotations

import time
from datetime import datetime

import structlog

from toilbox.config import Task
from toilbox.dispatch import Dispatching
from toilbox.models import Lease

log = structlog.get_logger("toilbox.daemon")
TRIGGERS_TAKEN_OVER = ("schedule", "catch-up")
KINDS_TAKEN_OVER = ("check", "report")


class TakingOver(Dispatching):
    def fence(self, tasks: set[str], reason: str) -> None:
        """Kill this daemon's runs of these fleet tasks: their leases are lost."""
        with self._lock:
            fenced = sorted(t for t in tasks if t in self.stops and not self.stops[t].is_set())
            for name in fenced:
                self.stops[name].set()
        if fenced:
            log.error("fleet.fenced", tasks=fenced, reason=reason)

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
            lease.trigger in TRIGGERS_TAKEN_OVER
            and task.type.kind in KINDS_TAKEN_OVER
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
