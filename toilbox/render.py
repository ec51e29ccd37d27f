"""Human-readable output for the CLI: plain text, no heavy imports, colour on a TTY."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click

from toilbox.models import RunRecord
from toilbox.perfdata import perfdata
from toilbox.result import describe_range
from toilbox.units import format_size

_COLOURS = {
    "ok": "green",
    "warning": "yellow",
    "critical": "red",
    "unknown": "magenta",
    "running": "cyan",
}


def status_word(status: str) -> str:
    return click.style(status.upper(), fg=_COLOURS.get(status), bold=True)


def run_result(record: RunRecord) -> str:
    """``toilbox run``'s output, in the Monitoring Plugins format: the first line is the
    status and the summary, then ``|`` and the perfdata; long output on the lines after.
    A ``|`` in any text would start perfdata, so it is shown as ``¦``."""
    first = f"{status_word(record.status)} {record.task}: {_text(record.summary, one_line=True)}"
    perf = perfdata(record.metrics)
    attempts = f"{record.attempts} attempt{'s' if record.attempts != 1 else ''}"
    lines = [
        f"{first} | {perf}" if perf else first,
        f"  {record.duration_s or 0:.2f}s, {attempts}, run {record.run_id}"
        + (", dry run" if record.dry_run else ""),
    ]
    lines.extend(f"  {line}" for line in record.details.splitlines())
    for label, metric in record.metrics.items():
        lines.append(f"  {_text(label, one_line=True)} = {_metric(metric)}")
    if record.error:
        lines.append(f"  error ({record.error['type']}): {record.error['message']}")
        if record.output.strip():
            tail = record.output.strip().splitlines()[-5:]
            lines.extend(["  output (last lines):", *(f"    {line}" for line in tail)])
    return "\n".join([lines[0], *(_text(line) for line in lines[1:])])


def _metric(metric: dict[str, Any]) -> str:
    unit = metric.get("unit") or ""
    text = format_size(metric["value"]) if unit == "B" else f"{metric['value']:.6g}{unit}"
    # Nagios ranges in words: "30:" reads "below 30", the opposite of a plain 30.
    number = format_size if unit == "B" else None
    limits = [
        f"{name} {describe_range(metric[name], number)}"
        for name in ("warn", "crit")
        if metric.get(name) is not None
    ]
    return f"{text} ({', '.join(limits)})" if limits else text


def plugins(infos: Sequence[dict[str, Any]]) -> str:
    """``toilbox plugins``: a row per task type, with its description; a plugin that
    is broken or gives nothing says so in place of its task types."""
    rows = []
    for p in infos:
        first = [p["name"], p["version"] or "-", p["source"]]
        if p["error"]:
            rows.append([*first, "-", f"BROKEN: {p['error']}"])
        elif p["warning"]:
            rows.append([*first, "-", f"WARNING: {p['warning']}"])
        elif not p["task_types"]:
            rows.append([*first, "-", f"hooks: {', '.join(p['hooks'])}"])
        else:
            for index, name in enumerate(p["task_types"]):
                cells = first if index == 0 else ["", "", ""]
                rows.append([*cells, name, p["descriptions"].get(name) or "-"])
    return table(["PLUGIN", "VERSION", "SOURCE", "TASK TYPE", "DESCRIPTION"], rows)


def _text(text: str, *, one_line: bool = False) -> str:
    text = text.replace("|", "\u00a6")
    return " ".join(text.split()) if one_line else text


def chain(story: Sequence[dict[str, Any]]) -> str:
    """``history --chain``: one line per step, in order."""
    lines = []
    for step in story:
        if step["kind"] == "notification":
            sent = ", ".join(step["sent_to"]) or "no destination"
            lines.append(f"{when(step['created_at'])}  notified: {step['title']} ({sent})")
        else:
            lines.append(
                f"{when(step['started_at'])}  {step['trigger']:<11} {step['task']}: "
                f"{step['status'].upper()} {step['summary']}  [{step['run_id']}]"
            )
    return "\n".join(lines)


def fleet(view: dict[str, Any]) -> str:
    """``toilbox fleet``: a line about the fleet, then one row per daemon."""
    mode = "fleet mode" if view["fleet_mode"] else "single host (no store.url)"
    lines = [
        f"{mode}, store {view['store']}: {view['hosts_alive']} of {view['hosts_seen']}"
        " host(s) alive"
    ]
    if view["config_mismatch"]:
        lines.append(f"config differs on: {', '.join(view['config_mismatch'])}")
    rows = [
        [
            h["host_id"] + (" (this host)" if h["host_id"] == view["this_host"] else ""),
            h["hostname"],
            h["version"],
            h["config_hash"] + (" DIFFERS" if h["config_differs"] else ""),
            when(h["last_seen"]),
            "alive" if h["alive"] else "gone",
            str(h["runs_day"]),
            str(h["failures_day"]),
        ]
        for h in view["hosts"]
    ]
    headers = ["HOST", "HOSTNAME", "VERSION", "CONFIG", "LAST SEEN", "STATE", "RUNS/24H", "FAILED"]
    lines.append(table(headers, rows) or "no daemon has registered yet")
    return "\n".join(lines)


def when(iso: str | None) -> str:
    """A stored timestamp, short: "2026-11-24 14:05:00", or "-"."""
    return iso[:19].replace("T", " ") if iso else "-"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to fit; the last column runs free."""
    if not rows:
        return ""
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers) - 1)]

    def line(cells: Sequence[str]) -> str:
        padded = [str(c).ljust(w) for c, w in zip(cells, widths, strict=False)]
        return "  ".join([*padded, str(cells[-1])]).rstrip()

    return "\n".join([click.style(line(headers), bold=True), *(line(r) for r in rows)])


def tasks(rows: Sequence[dict[str, Any]]) -> str:
    """``toilbox list``: one line per task."""
    return table(
        ["TASK", "TYPE", "SCHEDULE", "NEXT FIRE", "LAST", "LAST RUN"],
        [
            [
                r["task"],
                r["type"],
                (r["schedule"] or "-") + ("" if r["enabled"] else " (disabled)"),
                when(r["next_fire"]),
                r["last_status"] or "-",
                when(r["last_run"]),
            ]
            for r in rows
        ],
    ) or "no tasks configured"


def history(records: Sequence[RunRecord]) -> str:
    """``toilbox history``: one line per run, newest first."""
    return table(
        ["STARTED", "TASK", "HOST", "STATUS", "TRIGGER", "TRIES", "SECONDS", "SUMMARY"],
        [
            [
                when(r.started_at),
                r.task,
                r.host or "-",
                r.status,
                r.trigger,
                str(r.attempts),
                f"{r.duration_s:.2f}" if r.duration_s is not None else "-",
                r.summary,
            ]
            for r in records
        ],
    ) or "no runs recorded yet"
