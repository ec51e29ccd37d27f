"""One run of one task: lock, record, attempts with retries, record again, hooks."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import structlog
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from toilbox.errors import RunFenced, StateError
from toilbox.isolation import KILL_GRACE_S, REAPER_MARGIN_S, Outcome, run_attempt
from toilbox.log import redact
from toilbox.models import RUNNING, AttemptSpec, RunRecord, now_iso, utc_iso
from toilbox.store import Store
from toilbox.verdict import failure_status

if TYPE_CHECKING:
    from toilbox.app import App
    from toilbox.config import RetryPolicy, Task
    from toilbox.zygote import Zygote

log = structlog.get_logger("toilbox.runner")


class _Transient(Exception):  # noqa: N818 -- carries an outcome to tenacity, not an error
    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.message)
        self.outcome = outcome


def new_run_id() -> str:
    """Sortable by start time, unique without coordination."""
    return f"{time.time_ns() // 1_000_000:x}-{os.urandom(3).hex()}"


def run_task(
    app: App,
    name: str,
    *,
    trigger: str = "manual",
    dry_run: bool = False,
    force: bool = False,
    scheduled_for: datetime | None = None,
    parent_run_id: str | None = None,
    stop: threading.Event | None = None,
    purpose: str = "toilbox run",
    zygote: Zygote | None = None,
    leased: bool = False,
    first_attempt: int = 1,
    unrecorded: Callable[[RunRecord], None] | None = None,
) -> RunRecord:
    """Run ``name`` once, now, and return its finished record.

    Raises AlreadyRunning if the task's lock is held elsewhere, and RunFenced if the run
    was taken away from us meanwhile (its verdict is then void).  An interrupted run is
    recorded as such and returned; the caller decides what an interruption means.
    ``leased``: the caller already holds the fleet task's lease, which is its lock.
    ``first_attempt``: a run taken over from a dead daemon goes on from its attempt.
    ``unrecorded``: where a finished run goes when the store cannot take its end (a full
    disk): the daemon writes it once the store can, so it is not mistaken for abandoned.
    """
    task = app.task(name)
    store = app.store()
    lock = (
        contextlib.nullcontext()
        if leased
        else store.hold(
            name,
            f'task "{name}"',
            purpose,
            scope=app.scope_of(task),
            lease_s=_lock_lease(app, task),
        )
    )
    with lock:
        record = RunRecord(
            run_id=new_run_id(),
            task=name,
            task_type=task.type.name,
            status=RUNNING,
            trigger=trigger,
            started_at=now_iso(),
            hostname=socket.gethostname(),
            pid=os.getpid(),
            scheduled_for=utc_iso(scheduled_for) if scheduled_for else None,
            parent_run_id=parent_run_id,
            dry_run=dry_run,
            host=app.host_id,
            scope=app.scope_of(task),
        )
        store.start_run(record)
        _ping(task.ping, "/start", record)
        with structlog.contextvars.bound_contextvars(task=name, run_id=record.run_id):
            log.info("run.started", trigger=trigger, task_type=task.type.name, dry_run=dry_run)
            started = time.monotonic()
            try:
                outcome, attempts = _attempts(
                    app, task, record, dry_run, force, stop, zygote, scheduled_for, first_attempt
                )
            except Exception as exc:  # a bug of ours: record it, never leave a run "running"
                log.exception("run.crashed_in_runner")
                outcome, attempts = Outcome("crashed", f"toilbox failed to run it: {exc}"), 0
            _finish(record, outcome, attempts, time.monotonic() - started)
            if not _record_finish(store, record, unrecorded):
                log.warning("run.fenced", status=record.status, summary=record.summary)
                raise RunFenced(
                    f'the run {record.run_id} of task "{name}" was taken over while it ran;'
                    " its result is discarded"
                )
            log.info(
                "run.finished",
                status=record.status,
                attempts=record.attempts,
                duration_s=record.duration_s,
                summary=record.summary,
                error_type=(record.error or {}).get("type"),
            )
    _ping(task.ping, "/fail" if record.status in ("critical", "unknown") else "", record)
    app.plugins.run_finished(record)
    return record


def _record_finish(
    store: Store, record: RunRecord, unrecorded: Callable[[RunRecord], None] | None
) -> bool:
    """The run's end, stored; False if the run was taken away meanwhile (fenced)."""
    try:
        return store.finish_run(record)
    except StateError as exc:
        if unrecorded is None:
            raise
        log.error("run.finish_deferred", status=record.status, error=str(exc))
        unrecorded(record)
        return True


PING_TIMEOUT_S = 10


def _lock_lease(app: App, task: Task) -> float:
    """How long a fleet task's lock lasts unless renewed: a daemon renews it, so the
    fleet's lease; a one-shot run does not, so the longest the run can take (every
    attempt timing out and killed, every wait at its longest with its jitter, both
    pings), and a minute to spare: a lease that lapsed under a live run would let the
    next claim write it off."""
    if app.pooled:
        return app.config.fleet.lease
    retry = task.retry
    attempt = task.timeout + KILL_GRACE_S + REAPER_MARGIN_S
    wait = retry.max_backoff + min(retry.backoff, retry.max_backoff)
    return attempt * retry.attempts + wait * (retry.attempts - 1) + 2 * PING_TIMEOUT_S + 60.0


def _ping(url: str | None, suffix: str, record: RunRecord) -> None:
    """A Healthchecks-style heartbeat: URL/start, URL (success) or URL/fail, with the run id.

    The URL's own query string (``?create=1``) is kept; the run's summary is the body of
    the finishing ping, which Healthchecks shows.  Healthchecks wants ``rid`` to be a
    UUID, so the run id is mapped to one, stably.  A ping that fails is logged; it never
    fails the run.
    """
    if not url or record.dry_run:
        return
    import urllib.parse
    import urllib.request
    import uuid

    rid = uuid.uuid5(uuid.NAMESPACE_URL, f"toilbox:{record.run_id}")
    parts = urllib.parse.urlsplit(url)
    query = "&".join(q for q in (parts.query, f"rid={rid}") if q)
    target = parts._replace(path=parts.path.rstrip("/") + suffix, query=query).geturl()
    body = b"" if suffix == "/start" else record.summary.encode()[:100_000]
    try:
        urllib.request.urlopen(target, data=body, timeout=PING_TIMEOUT_S).close()  # noqa: S310 -- configured
    except Exception as exc:
        log.warning("ping.failed", url=redact(target), error=str(exc))


def _attempts(
    app: App,
    task: Task,
    record: RunRecord,
    dry_run: bool,
    force: bool,
    stop: threading.Event | None,
    zygote: Zygote | None,
    scheduled_for: datetime | None,
    first_attempt: int = 1,
) -> tuple[Outcome, int]:
    attempt_number = 0
    outcome = Outcome("crashed", "no attempt was made")
    left = max(1, task.retry.attempts - first_attempt + 1)
    try:
        for attempt in _retrying(task.retry, stop, left):
            with attempt:
                attempt_number = attempt.retry_state.attempt_number + first_attempt - 1
                if stop is not None and stop.is_set():
                    return Outcome("interrupted", "stopped by shutdown"), attempt_number - 1
                spec = AttemptSpec(
                    task=task.name,
                    task_type=task.type.name,
                    params=task.params,
                    plugin_dirs=tuple(str(p) for p in app.config.plugin_dirs),
                    run_id=record.run_id,
                    attempt=attempt_number,
                    dry_run=dry_run,
                    force=force,
                    state_dir=str(app.state_dir),
                    scheduled_for=scheduled_for,
                    secrets=tuple(app.loaded.secrets),
                    store_url=app.config.store.url if app.config.store else None,
                    config_dir=str(app.loaded.config_dir),
                )
                with structlog.contextvars.bound_contextvars(attempt=attempt_number):
                    outcome = run_attempt(spec, task.timeout, stop, zygote)
                    if outcome.kind != "ok":
                        log.warning(
                            "attempt.failed", error_type=outcome.kind, message=outcome.message
                        )
                if outcome.transient:
                    raise _Transient(outcome)
    except _Transient as exc:
        outcome = exc.outcome
    except KeyboardInterrupt:  # between attempts (a backoff sleep): nothing left to kill
        outcome = Outcome("interrupted", "interrupted")
    return outcome, attempt_number


def _retrying(policy: RetryPolicy, stop: threading.Event | None, attempts: int) -> Retrying:
    def before_sleep(state: RetryCallState) -> None:
        log.info(
            "attempt.retrying",
            attempt=state.attempt_number,
            of=policy.attempts,
            delay_s=round(state.upcoming_sleep, 3),
        )

    def sleep(seconds: float) -> None:
        if stop is not None:
            stop.wait(seconds)
        else:
            time.sleep(seconds)

    return Retrying(
        stop=stop_after_attempt(attempts),
        # backoff, 2x, 4x ... capped, plus up to one backoff of jitter so that tasks that
        # failed together do not retry in lockstep.
        wait=wait_exponential(multiplier=policy.backoff, max=policy.max_backoff)
        + wait_random(0, min(policy.backoff, policy.max_backoff)),
        retry=retry_if_exception_type(_Transient),
        reraise=True,
        before_sleep=before_sleep,
        sleep=sleep,
    )


def _finish(record: RunRecord, outcome: Outcome, attempts: int, duration: float) -> None:
    record.attempts = attempts
    record.duration_s = round(duration, 6)
    record.finished_at = now_iso()
    record.output = redact(outcome.output)
    if outcome.kind == "ok" and outcome.result is not None:
        result: dict[str, Any] = redact(outcome.result)
        record.status = result["status"]
        record.summary = result["summary"]
        record.metrics = result["metrics"]
        record.data = result["data"]
        record.details = result.get("details", "")
        record.error = None
        return
    record.status = failure_status(record.task_type, outcome.kind).label
    record.summary = redact(outcome.message)
    record.error = {"type": outcome.kind, "message": record.summary, **redact(outcome.details)}
