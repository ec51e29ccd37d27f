"""report.summary: a window of run history, summed up for people (html, markdown) and
machines (json), and delivered to files, stdout or apprise URLs.

``build`` turns the stored runs into one plain dict (the json format, and what the
templates read); ``render`` formats it; ``deliver`` sends it.  Everything is read from the
store; nothing is written to it.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from collections import defaultdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import toilbox
from toilbox import files
from toilbox.models import RunRecord
from toilbox.store import ReadOnlyHistory
from toilbox.store.window import FAILED, Freed, Point, TaskWindow
from toilbox.terminal import printable
from toilbox.units import format_size
from toilbox_reports.params import SummaryParams

NOT_OK = ("warning", "critical", "unknown")
# The Nagios order (CRITICAL, WARNING, UNKNOWN, OK), as toilbox.worst() combines statuses.
SEVERITY = {status.label: status.severity for status in toilbox.Status}
MAX_FAILURES = 10
EMAIL_SCHEMES = ("mailto", "mailtos")


def run(ctx: toilbox.TaskContext, params: SummaryParams) -> toilbox.Result:
    until = ctx.now()
    with ctx.history() as history:
        report = build(
            history, until - timedelta(seconds=params.window), until, params.tasks, params.host
        )
    report["title"] = params.title
    written = deliver(report, params, ctx)
    headline = report["headline"]
    ctx.log.info("report.made", window_s=params.window, attention=len(report["attention"]),
                 written=written, dry_run=ctx.dry_run)
    where = f"; {'would write' if ctx.dry_run else 'written to'} {', '.join(written)}"
    return toilbox.Result(
        toilbox.Status.OK,
        headline + (where if written else ""),
        metrics={"attention": len(report["attention"]), "runs": report["totals"]["runs"]},
        data={"written": written, "attention": report["attention"], "totals": report["totals"]},
    )


# -- the content ----------------------------------------------------------------------------


def build(
    store: ReadOnlyHistory,
    since: datetime,
    until: datetime,
    only: list[str] | None = None,
    host: str | None = None,
) -> dict[str, Any]:
    """The report as plain data: the json format, and what the templates read.  The
    store counts, ranks and thins the window (its ``window_*`` reads): the report reads
    what it shows, not every run."""
    start, end = since.isoformat(), until.isoformat()
    windows = store.window_tasks(start, end, only, host)
    names = [w.task for w in windows]
    kinds = {w.task: w.task_type.split(".", 1)[0] for w in windows}
    failures = store.window_failures(start, end, names, MAX_FAILURES, host)
    points = store.window_points(start, end, names, host)
    changes = store.window_changes(start, end, [n for n in names if kinds[n] == "check"], host)
    freed = store.window_freed(start, end, [n for n in names if kinds[n] == "cleanup"], host)
    tasks = [
        _task(w, failures.get(w.task, []), points.get(w.task, []), since, until,
              changes.get(w.task, []), freed.get(w.task, []))
        for w in windows
    ]
    checks = [t["check"] | {"task": t["task"]} for t in tasks if t["kind"] == "check"]
    cleanups = [t["cleanup"] | {"task": t["task"]} for t in tasks if t["kind"] == "cleanup"]
    chains = _chains(store.window_followups(start, end, only, host))
    days = _days(since, until)
    freed_per_day = dict.fromkeys(days, 0)
    for cleanup in cleanups:
        for day, freed_bytes in cleanup["bytes_per_day"].items():
            freed_per_day[day] = freed_per_day.get(day, 0) + freed_bytes
    runs = sum(w.runs for w in windows)
    ok = sum(w.statuses.get("ok", 0) for w in windows)
    totals = {
        "tasks": len(tasks),
        "runs": runs,
        "ok": ok,
        "failed": sum(w.statuses.get(s, 0) for w in windows for s in FAILED),
        "success_rate": ok / runs if runs else None,
        "files_freed": sum(c["files_freed"] for c in cleanups),
        "bytes_freed": sum(c["bytes_freed"] for c in cleanups),
        "fixed_automatically": sum(c["outcome"] == "fixed automatically" for c in chains),
        "needed_a_human": sum(c["outcome"] == "needed a human" for c in chains),
    }
    attention = _attention(tasks, chains)
    return {
        "generated_at": until.isoformat(),
        "hostname": socket.gethostname(),
        "window": {
            "start": since.isoformat(),
            "end": until.isoformat(),
            "seconds": (until - since).total_seconds(),
            "text": duration_text((until - since).total_seconds()),
        },
        "headline": _headline(attention, totals, until - since),
        "attention": attention,
        "totals": totals,
        "tasks": tasks,
        "checks": checks,
        "cleanups": cleanups,
        "bytes_freed_per_day": [{"date": d, "bytes": b} for d, b in sorted(freed_per_day.items())],
        "remediations": chains,
    }


def _task(
    window: TaskWindow,
    failed: list[RunRecord],
    points: list[Point],
    since: datetime,
    until: datetime,
    changes: list[tuple[str, str]],
    freed: list[Freed],
) -> dict[str, Any]:
    kind = window.task_type.split(".", 1)[0]
    counts = window.statuses
    failure_count = sum(counts.get(status, 0) for status in FAILED)
    last = window.last
    out: dict[str, Any] = {
        "task": window.task,
        "type": window.task_type,
        "kind": kind,
        "runs": window.runs,
        "statuses": dict(counts),
        "success_rate": counts.get("ok", 0) / window.runs if window.runs else None,
        "failure_count": failure_count,
        "failures": [
            {
                "run_id": r.run_id,
                "started_at": r.started_at,
                "status": r.status,
                "summary": r.summary,
                "error_type": (r.error or {}).get("type"),
                "message": (r.error or {}).get("message") or r.summary,
                "trigger": r.trigger,
            }
            for r in failed
        ],
        "duration_p50": window.duration_p50,
        "duration_p95": window.duration_p95,
        "last_status": last.status if last else None,
        "last_summary": last.summary if last else None,
        "last_run": last.started_at if last else None,
        # Every finished run, or of a task with many, the worst of each slice of the window.
        "points": [
            {"at": p.at, "status": p.status, "duration_s": p.duration_s, "trigger": p.trigger}
            for p in points
        ],
    }
    if kind == "check":
        out["check"] = _check_states(changes, window.before, since, until)
    if kind == "cleanup":
        out["cleanup"] = {
            "files_freed": sum(f.files for f in freed),
            "bytes_freed": sum(f.bytes for f in freed),
            "bytes_per_day": {f.day: f.bytes for f in freed},
        }
    return out


def _check_states(
    changes: list[tuple[str, str]], before: str | None, since: datetime, until: datetime
) -> dict[str, Any]:
    """A check is in the state of its latest result, from the moment that run ended.
    ``changes``: the window's finished runs that changed the status, in order of end."""
    state = before or "no data"
    at = since
    segments: list[dict[str, Any]] = []

    def hold(end: datetime) -> None:
        if end <= at:
            return
        if segments and segments[-1]["state"] == state and segments[-1]["end"] == at:
            segments[-1]["end"] = end  # the same state on: one segment
        else:
            segments.append({"start": at, "end": end, "state": state})

    for ended, status in changes:
        if status == state:
            continue
        changed = min(max(_time(ended), since), until)
        hold(changed)
        at = max(at, changed)
        state = status
    hold(until)
    time_in_state: dict[str, float] = defaultdict(float)
    for segment in segments:
        time_in_state[segment["state"]] += (segment["end"] - segment["start"]).total_seconds()
    outages: list[dict[str, Any]] = []
    for segment in segments:
        if segment["state"] not in NOT_OK:
            continue
        if outages and outages[-1]["_end"] == segment["start"]:
            outage = outages[-1]
            outage["_end"] = segment["end"]
            if SEVERITY[segment["state"]] > SEVERITY[outage["worst"]]:
                outage["worst"] = segment["state"]
        else:
            outages.append({"_start": segment["start"], "_end": segment["end"],
                            "worst": segment["state"]})
    for outage in outages:
        start, end = outage.pop("_start"), outage.pop("_end")
        outage.update(
            start=start.isoformat(),
            end=None if end == until and state in NOT_OK else end.isoformat(),
            duration_s=(end - start).total_seconds(),
            from_window_start=start == since and before is not None,
        )
    known = sum(s for state, s in time_in_state.items() if state != "no data")
    return {
        "ok_share": time_in_state.get("ok", 0.0) / known if known else None,
        "time_in_state": dict(time_in_state),
        "outages": outages,
        "segments": [
            {"start": s["start"].isoformat(), "end": s["end"].isoformat(), "state": s["state"]}
            for s in segments
        ],
    }


def _chains(runs: list[RunRecord]) -> list[dict[str, Any]]:
    """A failing check run, the fixes it set off and the runs that verified them."""
    by_id = {r.run_id: r for r in runs}
    children: dict[str, list[RunRecord]] = defaultdict(list)
    for record in runs:
        if record.parent_run_id and record.trigger in ("remediation", "verify"):
            children[record.parent_run_id].append(record)
    chains = []
    for parent_id, kids in children.items():
        fixes = [k for k in kids if k.trigger == "remediation"]
        if not fixes:
            continue
        verifies = [k for k in kids if k.trigger == "verify" and k.status != "running"]
        root = by_id.get(parent_id)
        verified = verifies[-1].status if verifies else None
        if verified == "ok":
            outcome = "fixed automatically"
        elif verified is None and all(f.status == "ok" for f in fixes):
            outcome = "not verified"
        else:
            outcome = "needed a human"
        chains.append(
            {
                "check": root.task if root else (verifies[0].task if verifies else "?"),
                "check_run_id": parent_id,
                "started_at": root.started_at if root else fixes[0].started_at,
                "check_status": root.status if root else None,
                "check_summary": root.summary if root else "",
                "fixes": [
                    {"task": f.task, "run_id": f.run_id, "status": f.status, "summary": f.summary}
                    for f in fixes
                ],
                "verified": verified,
                "verify_summary": verifies[-1].summary if verifies else None,
                "outcome": outcome,
            }
        )
    return sorted(chains, key=lambda c: c["started_at"])


def _attention(tasks: list[dict[str, Any]], chains: list[dict[str, Any]]) -> list[dict[str, Any]]:
    items = []
    for task in tasks:
        status = task["last_status"]
        if status in NOT_OK:
            items.append({"task": task["task"], "severity": SEVERITY[status], "status": status,
                          "why": f"{status.upper()} now: {task['last_summary']}"})
        elif task["failure_count"]:
            items.append({"task": task["task"], "severity": 0, "status": "ok",
                          "why": f"recovered, but failed {task['failure_count']} of"
                                 f" {task['runs']} runs"})
    for chain in chains:
        if chain["outcome"] == "needed a human":
            items.append({"task": chain["check"], "severity": 3, "status": "critical",
                          "why": "an automatic fix did not help: it needs a human"})
    return sorted(items, key=lambda i: (-i["severity"], i["task"]))


def _headline(attention: list[dict[str, Any]], totals: dict[str, Any], span: timedelta) -> str:
    urgent = [i for i in attention if i["severity"] > 0]
    window = duration_text(span.total_seconds())
    if urgent:
        names = list(dict.fromkeys(i["task"] for i in urgent))
        word = "task needs" if len(names) == 1 else "tasks need"
        return f"{len(names)} {word} attention: {', '.join(names)}"
    if not totals["runs"]:
        return f"no runs in the last {window}"
    tasks = "the task is" if totals["tasks"] == 1 else f"all {totals['tasks']} tasks are"
    return f"{tasks} OK now; {plural(totals['runs'], 'run')} in the last {window}"


def plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def _days(since: datetime, until: datetime) -> list[str]:
    days, day = [], since.date()
    while day <= until.date():
        days.append(day.isoformat())
        day += timedelta(days=1)
    return days


def _time(iso: str) -> datetime:
    return datetime.fromisoformat(iso)


def duration_text(seconds: float | None) -> str:
    """``3d 4h``, ``2h 5m``, ``4m 10s``, ``1.25s``: two units at most."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.2f}s" if seconds < 10 else f"{seconds:.0f}s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{int(seconds // size)}{unit}")
            seconds %= size
    return " ".join(parts[:2])


# -- formats and delivery -------------------------------------------------------------------


def render(report: dict[str, Any], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(report, indent=2) + "\n"
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    from toilbox_reports import charts

    env = Environment(
        loader=PackageLoader("toilbox_reports", "templates"),
        autoescape=select_autoescape(["html.jinja"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        size=format_size,
        duration=duration_text,
        pct=lambda v: "-" if v is None else f"{100 * v:.0f}%",
        plural=plural,
        when=lambda iso: iso[:16].replace("T", " ") if iso else "ongoing",
    )
    env.globals["charts"] = charts
    template = env.get_template("report.html.jinja" if fmt == "html" else "report.md.jinja")
    return template.render(r=report)


def deliver(report: dict[str, Any], params: SummaryParams, ctx: toilbox.TaskContext) -> list[str]:
    """Send the report to each target; the ones written (or, in a dry run, that would be)."""
    rendered: dict[str, str] = {}

    def text(fmt: str) -> str:
        if fmt not in rendered:
            rendered[fmt] = render(report, fmt)
        return rendered[fmt]

    written = []
    date = report["generated_at"][:10]
    for target in params.to:
        if target == "-":
            if not ctx.dry_run:
                sys.stdout.write(printable(text(params.format)))  # runs' summaries are in it
                sys.stdout.flush()
            written.append("stdout")
        elif "://" in target and not target.startswith("file://"):
            if not ctx.dry_run:
                _notify(target, report, text)
            written.append(target.split("://", 1)[0] + "://...")  # URLs may hold secrets
        else:
            path = Path(target.removeprefix("file://").replace("{date}", date)).expanduser()
            if not ctx.dry_run:
                try:
                    files.replace_regular(path, text(params.format).encode("utf-8"))
                except OSError as exc:
                    reason = exc.strerror or exc
                    raise toilbox.TaskFailed(f"cannot write {path}: {reason}") from None
            written.append(str(path))
    return written


def _notify(url: str, report: dict[str, Any], text: Any) -> None:
    """Email gets the HTML as its body; chat and everything else gets the markdown."""
    import apprise

    _fresh_apprise_pools()
    email = url.split("://", 1)[0].lower() in EMAIL_SCHEMES
    sender = apprise.Apprise()
    if not sender.add(url):
        raise toilbox.TaskFailed(f"not an apprise URL apprise can use: {url.split('://', maxsplit=1)[0]}://...")
    sent = sender.notify(
        title=f"{report['title']}: {report['headline']}",
        body=text("html" if email else "markdown"),
        body_format=apprise.NotifyFormat.HTML if email else apprise.NotifyFormat.MARKDOWN,
    )
    if not sent:
        raise RuntimeError(f"sending the report to {url.split('://', maxsplit=1)[0]}://... failed")


_pools_pid: list[int] = []


def _fresh_apprise_pools() -> None:
    """apprise keeps module-wide thread pools.  A task process forked from one that had
    used them inherits the pools but not their threads, and every send would wait out its
    timeout; drop them once per process so apprise makes its own."""
    if _pools_pid == [os.getpid()]:
        return
    import apprise.apprise as pools

    for name in ("_shared_executor", "_coordinator_executor"):
        if hasattr(pools, name):
            setattr(pools, name, None)
    _pools_pid[:] = [os.getpid()]
