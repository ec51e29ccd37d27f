"""What the status page shows, as plain data: each page's HTML and its JSON twin under
``/api/v1/`` are made from the same dict, so a script sees exactly what a person sees.

Every function reads through the store port (SQLite or PostgreSQL alike), a bounded
number of index probes per task: a page never reads the whole history to draw one screen.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from toilbox import automation, schedule
from toilbox.app import App
from toilbox.checkstate import CheckState
from toilbox.config import Task
from toilbox.errors import UsageError
from toilbox.models import RunRecord, StripCell, now_iso
from toilbox.store import Store

STRIP = 24  # runs in each task's strip
RECENT = 50  # runs on a task's page
STATES = ("ok", "warning", "critical", "unknown")
NOT_OK = ("warning", "critical", "unknown")
GAPS = ("missed", "skipped")


@dataclass(frozen=True)
class Filters:
    """The overview's query parameters: a filtered view is a link to share."""

    state: str = ""  # ok, warning, critical, unknown, problem (any not OK), never
    task: str = ""  # a part of the task's name
    type: str = ""  # a task type, or its kind (check, cleanup, report)
    host: str = ""  # a host id; "" is this host

    @classmethod
    def from_query(cls, query: dict[str, str]) -> Filters:
        return cls(**{k: query.get(k, "")[:200] for k in ("state", "task", "type", "host")})

    def to_json(self) -> dict[str, str]:
        return {"state": self.state, "task": self.task, "type": self.type, "host": self.host}


def overview(app: App, store: Store, filters: Filters) -> dict[str, Any]:
    host = filters.host or app.host_id
    tasks = [t for t in app.tasks.values() if _wanted_by_name(t, filters)]
    per_host = [t.name for t in tasks if app.scope_of(t) == "host"]
    fleet = [t.name for t in tasks if app.scope_of(t) == "fleet"]
    strips = {**store.run_strips(per_host, STRIP, host), **store.run_strips(fleet, STRIP)}
    # A task's last run is the newest of its strip that ran; only a strip of skipped and
    # missed slots alone needs the store asked again.
    last: dict[str, StripCell | RunRecord] = {}
    for name, cells in strips.items():
        ran = next((c for c in cells if c.status not in GAPS), None)
        if ran is not None:
            last[name] = ran
    unknown = [n for n, cells in strips.items() if n not in last and len(cells) == STRIP]
    last.update(store.last_runs([n for n in unknown if n in per_host], host))
    last.update(store.last_runs([n for n in unknown if n in fleet]))
    # The newest OK and not OK are in the strip for most tasks; the store is asked only
    # for the ones it lacks.
    by_status: dict[str, dict[str, Any]] = {}
    for name, cells in strips.items():
        for cell in cells:
            if cell.status in STATES:
                by_status.setdefault(name, {}).setdefault(cell.status, cell)
    need = [n for n in strips if not (_has_ok(by_status, n) and _has_not_ok(by_status, n))]
    asks = (([n for n in need if n in per_host], host), ([n for n in need if n in fleet], None))
    for names, where in asks:
        for name, found in store.last_with_status(names, list(STATES), where).items():
            for status, record in found.items():
                by_status.setdefault(name, {}).setdefault(status, record)
    states = _check_states(store)
    rows = []
    for task in tasks:
        state_host = "" if app.scope_of(task) == "fleet" else host
        row = _row(app, task, states.get((task.name, state_host)), last.get(task.name),
                   by_status.get(task.name, {}), strips.get(task.name, []))
        if _wanted_by_state(row, filters):
            rows.append(row)
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["state"]["status"]] = counts.get(row["state"]["status"], 0) + 1
    return {
        "generated_at": now_iso(),
        "host": host,
        "this_host": app.host_id,
        "fleet_mode": app.fleet,
        "filters": filters.to_json(),
        "attention": attention(app, store, states),
        "counts": counts,
        "tasks": rows,
    }


def attention(
    app: App, store: Store, states: dict[tuple[str, str], CheckState]
) -> dict[str, Any]:
    """What needs a person: problems, open circuits, the kill switch, budgets in use,
    the day's missed and abandoned runs, and in a fleet the hosts and their configs."""
    problems, circuits = [], []
    for (task, host), state in sorted(states.items()):
        if task not in app.tasks:
            continue
        if state.status in NOT_OK:
            problems.append({"task": task, "host": host, "status": state.status,
                             "hard": state.hard, "since": state.since})
        if state.circuit_open:
            circuits.append({"task": task, "host": host, "reason": state.circuit_reason})
    budgets = []
    for check in app.tasks.values():
        if check.remediate is not None:
            used = store.count_remediations(check.remediate.per, check.name)
            if used:
                budgets.append({"task": check.name, "used": used, "max": check.remediate.max,
                                "per": _duration(check.remediate.per)})
    out: dict[str, Any] = {
        "problems": problems,
        "circuits": circuits,
        "paused": store.setting(automation.PAUSED),
        "remediation_enabled": app.config.remediation.enabled,
        "budgets": budgets,
        "last_day": store.notable_since(
            (datetime.now(UTC) - timedelta(days=1)).isoformat(timespec="microseconds")
        ),
        "hosts": None,
    }
    if app.fleet:
        from toilbox.fleet import fleet_view
        from toilbox.store.base import Budget, fleet_allowance

        view = fleet_view(app, store)
        max_hosts, share = app.config.remediation.host_budget()
        budget = Budget(1, 3600, 1, max_hosts, share)
        out["hosts"] = {
            "alive": view["hosts_alive"],
            "seen": view["hosts_seen"],
            "config_mismatch": view["config_mismatch"],
            "fixed_this_hour": store.remediated_hosts(3600),
            "allowed_per_hour": fleet_allowance(budget, view["hosts_seen"]),
        }
    return out


def task_page(app: App, store: Store, name: str, host: str = "") -> dict[str, Any]:
    from toilbox.explain import explain_task
    from toilbox.log import redact

    task = app.task(name)
    spec = app.config.tasks[name].model_dump(mode="json", by_alias=True, exclude_none=True)
    scoped = "" if app.scope_of(task) == "fleet" else (host or app.host_id)
    runs = store.history(name, RECENT, scoped or None)
    return {
        "task": name,
        "type": task.type.name,
        "kind": task.type.kind,
        "scope": app.scope_of(task),
        "description": task.description or task.type.description,
        "config": redact(spec),
        "explain": explain_task(app, name, store),
        "next_fire": _next_fire(task),
        "runs": [_run_summary(r) for r in runs],
        "durations": [
            {"run_id": r.run_id, "at": r.started_at, "status": r.status,
             "duration_s": r.duration_s}
            for r in reversed(runs)
            if r.duration_s is not None and r.status not in GAPS
        ],
    }


def run_page(store: Store, run_id: str) -> dict[str, Any]:
    record = store.get(run_id)
    if record is None:
        raise UsageError(f'no run with id "{run_id}"')
    output = record.output.splitlines()
    return {
        "run": record.to_json(history=True),
        "output_tail": output[-100:],
        "output_lines": len(output),
        "chain": automation.chain(store, run_id),
    }


def hosts_page(app: App, store: Store) -> dict[str, Any]:
    from toilbox.fleet import fleet_view

    return fleet_view(app, store)


# -- pieces -----------------------------------------------------------------------------------


def _check_states(store: Store) -> dict[tuple[str, str], CheckState]:
    return {(task, host): CheckState.from_json(raw) for task, host, raw in store.check_states()}


def _has_ok(by_status: dict[str, dict[str, Any]], name: str) -> bool:
    return "ok" in by_status.get(name, {})


def _has_not_ok(by_status: dict[str, dict[str, Any]], name: str) -> bool:
    return any(s in by_status.get(name, {}) for s in NOT_OK)


def _row(
    app: App,
    task: Task,
    state: CheckState | None,
    last: StripCell | RunRecord | None,
    by_status: dict[str, RunRecord | StripCell],
    strip: list[StripCell],
) -> dict[str, Any]:
    if state is not None and task.type.kind == "check":
        status = {"status": state.status, "hard": state.hard, "since": state.since,
                  "flapping": state.flapping, "circuit_open": state.circuit_open}
    elif last is not None:
        status = {"status": last.status if last.status in STATES else "unknown",
                  "hard": True, "since": last.started_at, "flapping": False,
                  "circuit_open": False}
    else:
        status = {"status": "never", "hard": True, "since": None, "flapping": False,
                  "circuit_open": False}
    not_ok = [by_status[s] for s in NOT_OK if s in by_status]
    return {
        "task": task.name,
        "type": task.type.name,
        "kind": task.type.kind,
        "scope": app.scope_of(task),
        "schedule": task.schedule,
        "enabled": task.enabled,
        "state": status,
        "last_run": _run_summary(last) if last else None,
        "last_ok": _run_summary(by_status["ok"]) if "ok" in by_status else None,
        "last_not_ok": _run_summary(max(not_ok, key=lambda r: r.started_at)) if not_ok else None,
        "next_fire": _next_fire(task),
        "strip": [
            {"run_id": c.run_id, "status": c.status, "at": c.started_at, "gap": c.status in GAPS}
            for c in reversed(strip)
        ],
    }


def _run_summary(record: RunRecord | StripCell) -> dict[str, Any]:
    if isinstance(record, StripCell):
        error_type = record.error_type
    else:
        error_type = (record.error or {}).get("type")
    return {
        "run_id": record.run_id,
        "status": record.status,
        "trigger": record.trigger,
        "started_at": record.started_at,
        "duration_s": record.duration_s,
        "summary": record.summary,
        "error_type": error_type,
        "host": getattr(record, "host", None),
        "attempts": getattr(record, "attempts", None),
    }


def _next_fire(task: Task) -> str | None:
    if not task.schedule or not task.enabled:
        return None
    trig = schedule.trigger(schedule.parse(task.schedule), task.timezone)
    fire = trig.get_next_fire_time(None, datetime.now(UTC))
    return fire.astimezone(UTC).isoformat() if fire else None


def _wanted_by_name(task: Task, filters: Filters) -> bool:
    if filters.task and filters.task.lower() not in task.name.lower():
        return False
    wanted = filters.type
    return not wanted or wanted in (task.type.name, task.type.kind)


def _wanted_by_state(row: dict[str, Any], filters: Filters) -> bool:
    status = row["state"]["status"]
    if not filters.state:
        return True
    if filters.state == "problem":
        return status in NOT_OK
    return bool(status == filters.state)


def _duration(seconds: float) -> str:
    from toilbox.units import format_duration

    return format_duration(seconds)
