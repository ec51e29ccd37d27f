"""Connect the dots after every run: state, notifications, verified remediation.

A run's result moves its task's state (``checkstate``).  A HARD change notifies; a
check that stays failing runs its ``remediate`` tasks, then runs again to verify.  A fix
that did not help, or a budget that ran out, opens the check's circuit: no more
automatic fixes until it recovers on its own or a human runs ``toilbox reset``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import structlog

from toilbox import checkstate, runner
from toilbox.checkstate import Change, CheckState
from toilbox.errors import AlreadyRunning, StateError, UsageError
from toilbox.models import Notification, RunRecord
from toilbox.store import Budget, Store

if TYPE_CHECKING:
    from toilbox.app import App
    from toilbox.config import Task

log = structlog.get_logger("toilbox.automation")
PAUSED = "remediation_paused"
Rerun = Callable[[str, str, str], RunRecord]  # (task, trigger, parent run id) -> record


def run(app: App, name: str, *, stop: threading.Event | None = None, **kwargs: Any) -> RunRecord:
    """Run a task, then follow its result through state, notifications and remediation."""
    record = runner.run_task(app, name, stop=stop, **kwargs)
    if record.dry_run:
        return record

    def rerun(target: str, trigger: str, parent: str) -> RunRecord:
        return runner.run_task(
            app,
            target,
            trigger=trigger,
            parent_run_id=parent,
            stop=stop,
            purpose=kwargs.get("purpose", "toilbox run"),
            zygote=kwargs.get("zygote"),
        )

    try:
        follow(app, record, rerun, stop)
    except StateError as exc:
        # The run is recorded (a host run waits locally); what follows from it needs the
        # shared state and fails closed: no fix without the budgets to count it against.
        log.error("automation.held", task=name, run_id=record.run_id, reason=str(exc))
    return record


def follow(
    app: App,
    record: RunRecord,
    rerun: Rerun,
    stop: threading.Event | None = None,
    now: datetime | None = None,
) -> None:
    task = app.tasks.get(record.task)
    if task is None or record.status in ("running", "skipped", "missed") or _interrupted(record):
        return  # a run stopped by a shutdown or Ctrl-C says nothing about the task
    state, changes = _advance(app, task, record, now)
    for change in changes:
        _notify_change(app, task, state, change, record)
    if task.remediate is not None:
        _maybe_remediate(app, task, state, record, rerun, stop)


def state_host(app: App, task: Task) -> str:
    """Whose state a check's result moves: this host's, or the fleet's ("")."""
    return "" if app.scope_of(task) == "fleet" else app.host_id


def _advance(
    app: App, task: Task, record: RunRecord, now: datetime | None
) -> tuple[CheckState, list[Change]]:
    store = app.store()
    raw = store.check_state(task.name, state_host(app, task))
    state = CheckState.from_json(raw) if raw else CheckState(task.name, since=record.started_at)
    flap = app.config.flapping
    healthy_as_before = raw is not None and state.status == record.status == checkstate.OK
    changes = checkstate.advance(
        state, record.status, now or datetime.now(UTC), task.hard_after, flap.window, flap.changes
    )
    if not healthy_as_before or changes:  # an OK that follows an OK changes nothing that counts
        store.save_check_state(task.name, state.to_json(), state_host(app, task))
    return state, changes


def _notify_change(
    app: App, task: Task, state: CheckState, change: Change, record: RunRecord
) -> None:
    if state.flapping and change.kind in ("problem", "recovery"):
        log.info("notify.suppressed", task=task.name, reason="flapping", change=change.kind)
        return
    if change.kind == "problem":
        failed = f" after {record.attempts} attempt(s)" if record.error else ""
        title = f"{task.name} is {change.status.upper()}{failed}"
        body = record.summary
    elif change.kind == "recovery":
        title = f"{task.name} recovered"
        body = f"OK again after {_duration(change.outage_s or 0)}: {record.summary}"
    elif change.kind == "flapping":
        title = f"{task.name} is flapping"
        body = "Its state changes too often; notifications pause until it settles."
    else:
        title = f"{task.name} settled"
        body = f"Now {change.status.upper()}: {record.summary}"
    send(
        app,
        task,
        Notification(task.name, change.kind, change.status, title, body, record.run_id),
        key=f"{change.kind}:{state.since}",
    )


def send(app: App, task: Task, notification: Notification, key: str) -> None:
    """Notify once per ``key``, to each destination within its rate limit."""
    store = app.store()
    if not store.add_notification(
        f"{task.name}:{key}",
        task.name,
        notification.kind,
        notification.run_id,
        notification.title,
        notification.body,
    ):
        return  # told already
    limit = app.config.notify_limit
    wanted = list(dict.fromkeys([*app.config.notify, *task.notify]))
    notification.destinations = [
        d for d in wanted if store.take_send_slot(d, limit.count, limit.per)
    ]
    if len(notification.destinations) < len(wanted):
        log.warning(
            "notify.rate_limited",
            task=task.name,
            kind=notification.kind,
            dropped=len(wanted) - len(notification.destinations),
        )
    store.set_notification_sent_to(f"{task.name}:{key}", notification.destinations)
    log.info(
        "notify.sent",
        task=task.name,
        kind=notification.kind,
        title=notification.title,
        destinations=len(notification.destinations),
    )
    app.plugins.notify(notification)


def _maybe_remediate(
    app: App,
    task: Task,
    state: CheckState,
    record: RunRecord,
    rerun: Rerun,
    stop: threading.Event | None,
) -> None:
    plan = task.remediate
    if plan is None or not _due(task, state, record) or not _allowed(app, task, state, record):
        return
    if not _run_fixes(app, task, state, record, rerun, stop) or not plan.verify:
        return
    if (stop or threading.Event()).wait(plan.settle) or (stop and stop.is_set()):
        return  # told to stop while settling: no verdict either way
    try:
        check = rerun(task.name, "verify", record.run_id)
    except AlreadyRunning as exc:
        log.warning("remediation.verify_deferred", task=task.name, reason=str(exc))
        return  # the run that holds the check will judge the fix
    if _interrupted(check):
        return
    state, _ = _advance(app, task, check, None)  # the fix's outcome speaks, not a recovery
    if check.status == "ok":
        send(
            app,
            task,
            Notification(
                task.name,
                "fixed",
                "ok",
                f"{task.name} was fixed automatically",
                f"Ran {', '.join(plan.run)}; the check is OK again.",
                record.run_id,
                chain=chain(app.store(), record.run_id),
            ),
            key=f"fixed:{record.run_id}",
        )
    else:
        _open_circuit(
            app, task, state, record, f"still {check.status.upper()} after the fix: {check.summary}"
        )


def _interrupted(record: RunRecord) -> bool:
    return bool(record.error and record.error.get("type") == "interrupted")


def _due(task: Task, state: CheckState, record: RunRecord) -> bool:
    """A HARD problem, bad enough, for long enough, seen by a regular run."""
    plan = task.remediate
    if plan is None or record.trigger in ("verify", "remediation"):
        return False
    bad = ("critical",) if plan.on == "critical" else ("warning", "critical")
    streak = state.problem_count if plan.on == "warning" else state.count
    return record.status in bad and state.hard and streak >= (plan.after or task.hard_after)


def _allowed(app: App, task: Task, state: CheckState, record: RunRecord) -> bool:
    """Switches, the circuit and the budgets; a spent budget opens the circuit.

    The budgets are counted and this fix recorded in one transaction, so fixes asked
    for at once on many hosts cannot together go past a fleet-wide budget.
    """
    plan, store = task.remediate, app.store()
    assert plan is not None  # noqa: S101 -- _due checked it
    why_not = _why_not(app, task, state, store)
    if why_not:
        log.info("remediation.held", task=task.name, reason=why_not)
        return False
    settings = app.config.remediation
    max_hosts, share = settings.host_budget()
    budget = Budget(
        plan.max,
        plan.per,
        settings.max_per_hour,
        max_hosts,
        share,
        fleet_check=state_host(app, task) == "",
    )
    spent = store.take_remediation(task.name, app.host_id, record.run_id, budget)
    if spent:
        _open_circuit(app, task, state, record, spent)
        return False
    return True


def _run_fixes(
    app: App,
    task: Task,
    state: CheckState,
    record: RunRecord,
    rerun: Rerun,
    stop: threading.Event | None,
) -> bool:
    """Run the fixes in order; False (and the circuit open) if one did not succeed."""
    plan = task.remediate
    assert plan is not None  # noqa: S101 -- _due checked it
    for target in plan.run:
        if stop is not None and stop.is_set():
            return False
        log.info("remediation.started", task=task.name, fix=target, run_id=record.run_id)
        try:
            fix = rerun(target, "remediation", record.run_id)
        except AlreadyRunning as exc:
            log.warning("remediation.deferred", task=task.name, fix=target, reason=str(exc))
            return False
        if _interrupted(fix):
            return False  # stopped, not failed: the circuit stays as it is
        if fix.status != "ok":
            _open_circuit(
                app, task, state, record, f"the fix {target} ended {fix.status}: {fix.summary}"
            )
            return False
    return True


def _why_not(app: App, task: Task, state: CheckState, store: Store) -> str | None:
    if not app.config.remediation.enabled:
        return "remediation is disabled in the config (remediation.enabled: false)"
    paused = store.setting(PAUSED)
    if paused:
        return f"remediation is paused ({paused})"
    if state.circuit_open:
        return f"the circuit is open: {state.circuit_reason}"
    for _task, host, other in store.check_states(task.name):
        if other.get("circuit_open"):  # a fix that did not help one host stops it fleet-wide
            return f"the circuit is open on {host or 'the fleet'}: {other.get('circuit_reason')}"
    if state.flapping:
        return "the check is flapping"
    return None


def _open_circuit(app: App, task: Task, state: CheckState, record: RunRecord, reason: str) -> None:
    # Re-read: minutes may have passed (fixes, retries) and another run may have written.
    host = state_host(app, task)
    raw = app.store().check_state(task.name, host)
    state = CheckState.from_json(raw) if raw else state
    state.circuit_open, state.circuit_reason = True, reason
    app.store().save_check_state(task.name, state.to_json(), host)
    log.warning("circuit.opened", task=task.name, reason=reason)
    send(
        app,
        task,
        Notification(
            task.name,
            "circuit_open",
            state.status,
            f"{task.name} needs a human",
            f"Automatic fixes stopped: {reason}. Fix it, then `toilbox reset {task.name}`.",
            record.run_id,
            chain=chain(app.store(), record.run_id),
        ),
        key=f"circuit:{record.run_id}",
    )


def chain(store: Store, run_id: str) -> list[dict[str, Any]]:
    """The story of a run: the check run, what it triggered, and what was said."""
    run = store.get(run_id)
    if run is None:
        raise UsageError(f'no run with id "{run_id}" in {store.location}')
    root = (store.get(run.parent_run_id) if run.parent_run_id else None) or run
    runs = [root, *store.children(root.run_id)]
    story: list[dict[str, Any]] = [{"kind": "run", **r.to_json(history=True)} for r in runs]
    for sent in store.notifications_for([r.run_id for r in runs]):
        story.append({**sent, "notification": sent["kind"], "kind": "notification"})
    return sorted(story, key=lambda item: item.get("started_at") or item.get("created_at", ""))


def reset(app: App, name: str) -> str:
    """Close the check's circuit on every host (a fleet-wide reset)."""
    task = app.task(name)
    store = app.store()
    closed = []
    for _task, host, raw in store.check_states(task.name):
        if raw.get("circuit_open"):
            state = CheckState.from_json(raw)
            state.circuit_open, state.circuit_reason = False, None
            store.save_check_state(name, state.to_json(), host)
            closed.append(host or "fleet")
    if not closed:
        return f"{name}: the circuit is not open; nothing to reset"
    log.info("circuit.reset", task=name, hosts=closed)
    return f"{name}: circuit closed; automatic fixes may run again"


def pause_remediation(app: App) -> str:
    """The kill switch: no automatic fix anywhere until ``resume_remediation``."""
    from toilbox.models import now_iso

    app.store().set_setting(PAUSED, f"by toilbox pause at {now_iso()}")
    log.warning("remediation.paused")
    return (
        "remediation paused: checks and notifications go on; `toilbox resume "
        "--remediation` undoes it"
    )


def resume_remediation(app: App) -> str:
    app.store().set_setting(PAUSED, None)
    log.info("remediation.resumed")
    return "remediation resumed"


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
