"""``toilbox explain``: why a task did or did not run, in plain words (or as JSON)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

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


def explanation(app: App, name: str, store: Store | None = None) -> dict[str, Any]:
    """What ``explain --json`` prints: the facts the plain-words version is made of.

    ``store``: read through this one (the status page's) rather than the app's.
    """
    facts, runs = _gather(app, name, store)
    return {**facts, "history": [run.to_json(history=True) for run in runs]}


def _gather(
    app: App, name: str, store: Store | None = None
) -> tuple[dict[str, Any], list[RunRecord]]:
    task = app.task(name)
    upcoming = next_fire(task)
    facts: dict[str, Any] = {
        "task": name,
        "type": task.type.name,
        "description": task.description,
        "enabled": task.enabled,
        "schedule": task.schedule,
        "timezone": task.timezone,
        "jitter_s": task.jitter,
        "on_missed": task.on_missed,
        "next_fire": upcoming.isoformat() if upcoming else None,
        "scope": app.scope_of(task),
        "configured_scope": task.scope,
        "store_error": None,
        "daemon": None,
        "running": None,
    }
    runs: list[RunRecord] = []
    try:
        store = store or app.store()
        facts["daemon"] = store.holder("_daemon")
        facts["running"] = store.holder(name)
        runs = store.history(name, limit=10)
    except StateError as exc:
        facts["store_error"] = str(exc)
    return facts, runs


def explain_task(app: App, name: str, store: Store | None = None) -> str:
    """``store``: read through this one (the status page's) rather than the app's."""
    facts, runs = _gather(app, name, store)
    description = f": {facts['description']}" if facts["description"] else ""
    lines = [f"{name} ({facts['type']}){description}"]
    if facts["scope"] == "fleet":
        lines.append(
            "Scope: fleet: each slot runs once, on whichever daemon of the fleet claims it"
            " first."
        )
    elif facts["configured_scope"] == "fleet":
        lines.append("Scope: fleet, but there is no shared store (store.url): it runs here.")
    if not facts["enabled"]:
        lines.append("It is disabled (enabled: false), so the daemon never fires it.")
    elif not facts["schedule"]:
        lines.append("It has no schedule: it runs only when asked (toilbox run).")
    else:
        lines.append(
            f'Schedule "{facts["schedule"]}" in {facts["timezone"]}'
            + (f", with up to {facts['jitter_s']:g}s of jitter" if facts["jitter_s"] else "")
            + f"; next fire {facts['next_fire'] or 'never'}."
        )
        lines.append(f"Missed fires: on_missed is {facts['on_missed']}.")
    if facts["store_error"] is not None:
        held = "fleet-scope tasks do not run until it answers (they fail closed)"
        if app.fleet:
            held += "; host-scope tasks run and their records wait on each host"
        lines.append(f"The store is unavailable: {facts['store_error']}; {held}.")
        return "\n".join(lines)
    daemon = facts["daemon"]
    lines.append(
        f"Daemon: running, {daemon}." if daemon else "Daemon: not running on this state dir."
    )
    if facts["running"]:
        lines.append(f"Running now: {facts['running']}.")
    if not runs:
        lines.append("It has never run (or its history was cleared).")
    else:
        lines.append("Recent history, newest first:")
        lines.extend(f"  {_describe(run)}" for run in runs)
    return "\n".join(lines)


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
