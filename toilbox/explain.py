"""``toilbox explain``: why a task did or did not run, in plain words."""

from __future__ import annotations

from datetime import UTC, datetime

from toilbox import schedule
from toilbox.app import App
from toilbox.config import Task
from toilbox.errors import StateError
from toilbox.models import RunRecord
from toilbox.store import Store


def next_fire(task: Task, now: datetime | None = None) -> datetime | None:
    """The next fire time from the config alone (no daemon needed); None if unscheduled."""
    if not task.schedule or not task.enabled:
        return None
    trig = schedule.trigger(schedule.parse(task.schedule), task.timezone)
    fire: datetime | None = trig.get_next_fire_time(None, now or datetime.now(UTC))
    return fire


def explain_task(app: App, name: str, store: Store | None = None) -> str:
    """``store``: read through this one (the status page's) rather than the app's."""
    task = app.task(name)
    lines = [f"{name} ({task.type.name})" + (f": {task.description}" if task.description else "")]
    if app.scope_of(task) == "fleet":
        lines.append(
            "Scope: fleet: each slot runs once, on whichever daemon of the fleet claims it"
            " first."
        )
    elif task.scope == "fleet":
        lines.append("Scope: fleet, but there is no shared store (store.url): it runs here.")
    if not task.enabled:
        lines.append("It is disabled (enabled: false), so the daemon never fires it.")
    elif not task.schedule:
        lines.append("It has no schedule: it runs only when asked (toilbox run).")
    else:
        upcoming = next_fire(task)
        lines.append(
            f'Schedule "{task.schedule}" in {task.timezone}'
            + (f", with up to {task.jitter:g}s of jitter" if task.jitter else "")
            + f"; next fire {upcoming.isoformat() if upcoming else 'never'}."
        )
        lines.append(f"Missed fires: on_missed is {task.on_missed}.")
    try:
        lines.extend(_from_store(app, store or app.store(), name))
    except StateError as exc:
        held = "fleet-scope tasks do not run until it answers (they fail closed)"
        if app.fleet:
            held += "; host-scope tasks run and their records wait on each host"
        lines.append(f"The store is unavailable: {exc}; {held}.")
    return "\n".join(lines)


def _from_store(app: App, store: Store, name: str) -> list[str]:
    lines = []
    daemon = store.holder("_daemon")
    lines.append(
        f"Daemon: running, {daemon}." if daemon else "Daemon: not running on this state dir."
    )
    holder = store.holder(name)
    if holder:
        lines.append(f"Running now: {holder}.")
    runs = store.history(name, limit=10)
    if not runs:
        lines.append("It has never run (or its history was cleared).")
    else:
        lines.append("Recent history, newest first:")
        lines.extend(f"  {_describe(run)}" for run in runs)
    return lines


def _describe(run: RunRecord) -> str:
    when = run.started_at[:19].replace("T", " ")
    slot = f" for the {run.scheduled_for[:19].replace('T', ' ')} slot" if run.scheduled_for else ""
    host = f" on {run.host}" if run.host else ""
    if run.status in ("skipped", "missed"):
        return f"{when}: {run.summary}{slot}"
    error = f" [{run.error['type']}]" if run.error else ""
    return (
        f"{when}: {run.status.upper()}{error} ({run.trigger}{slot}{host},"
        f" {run.attempts} attempt(s), {run.duration_s or 0:.2f}s) {run.summary}"
    )
