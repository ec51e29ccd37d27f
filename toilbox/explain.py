"""``toilbox explain``: why a task did or did not run, in plain words."""

from __future__ import annotations

from datetime import UTC, datetime

from toilbox import schedule
from toilbox.app import App
from toilbox.config import Task
from toilbox.models import RunRecord


def next_fire(task: Task, now: datetime | None = None) -> datetime | None:
    """The next fire time from the config alone (no daemon needed); None if unscheduled."""
    if not task.schedule or not task.enabled:
        return None
    trig = schedule.trigger(schedule.parse(task.schedule), task.timezone)
    fire: datetime | None = trig.get_next_fire_time(None, now or datetime.now(UTC))
    return fire


def explain_task(app: App, name: str) -> str:
    task = app.task(name)
    store = app.store()
    lines = [f"{name} ({task.type.name})" + (f": {task.description}" if task.description else "")]
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
    return "\n".join(lines)


def _describe(run: RunRecord) -> str:
    when = run.started_at[:19].replace("T", " ")
    slot = f" for the {run.scheduled_for[:19].replace('T', ' ')} slot" if run.scheduled_for else ""
    if run.status in ("skipped", "missed"):
        return f"{when}: {run.summary}{slot}"
    error = f" [{run.error['type']}]" if run.error else ""
    return (
        f"{when}: {run.status.upper()}{error} ({run.trigger}{slot}, {run.attempts} attempt(s),"
        f" {run.duration_s or 0:.2f}s) {run.summary}"
    )
