"""Small hand-written SVG charts for the HTML report: no plotting library, no script,
nothing fetched.  Each returns markup ready to inline (text is escaped here)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from markupsafe import Markup, escape

from toilbox.units import format_size

COLOURS = {
    "ok": "#2e9d5b",
    "warning": "#e0a106",
    "critical": "#d64545",
    "unknown": "#8a5cc7",
    "no data": "#d5d9de",
}
LABEL_W = 150
AXIS_H = 22


def _x(iso: str, start: datetime, span: float, width: float) -> float:
    at = (datetime.fromisoformat(iso) - start).total_seconds()
    return max(0.0, min(width, width * at / span)) if span else 0.0


def _axis(start: datetime, end: datetime, x0: float, width: float, y: float) -> str:
    marks = []
    for i in range(5):
        at = start + (end - start) * (i / 4)
        x = x0 + width * i / 4
        anchor = "start" if i == 0 else "end" if i == 4 else "middle"
        marks.append(
            f'<line x1="{x:.1f}" y1="{y - 4}" x2="{x:.1f}" y2="{y}" stroke="#9aa3ad"/>'
            f'<text x="{x:.1f}" y="{y + 13}" text-anchor="{anchor}" class="tick">'
            f"{at:%m-%d %H:%M}</text>"
        )
    return "".join(marks)


def timeline(report: dict[str, Any], width: int = 880) -> Markup:
    """One row per task across the window: a check's states as bands, other runs as ticks."""
    start = datetime.fromisoformat(report["window"]["start"])
    end = datetime.fromisoformat(report["window"]["end"])
    span = (end - start).total_seconds()
    band = width - LABEL_W - 10
    row_h = 22
    tasks = report["tasks"]
    height = len(tasks) * row_h + AXIS_H + 6
    parts = [
        f'<svg class="chart chart-timeline" role="img" width="{width}" height="{height}"'
        f' viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">'
        "<title>Status timeline per task</title>"
    ]
    for row, task in enumerate(tasks):
        y = row * row_h + 3
        parts.append(
            f'<text x="{LABEL_W - 8}" y="{y + 13}" text-anchor="end" class="label">'
            f"{escape(task['task'])}</text>"
            f'<rect x="{LABEL_W}" y="{y}" width="{band}" height="{row_h - 6}" fill="#f1f3f5"/>'
        )
        for segment in (task.get("check") or {}).get("segments", []):
            x1 = _x(segment["start"], start, span, band)
            x2 = _x(segment["end"], start, span, band)
            parts.append(
                f'<rect x="{LABEL_W + x1:.1f}" y="{y}" width="{max(x2 - x1, 0.5):.1f}"'
                f' height="{row_h - 6}" fill="{COLOURS.get(segment["state"], "#999")}">'
                f"<title>{escape(segment['state'])} from {segment['start'][:16]}</title></rect>"
            )
        if task["kind"] != "check":
            for point in task["points"]:
                x = _x(point["at"], start, span, band)
                parts.append(
                    f'<rect x="{LABEL_W + x - 1:.1f}" y="{y}" width="3" height="{row_h - 6}"'
                    f' fill="{COLOURS.get(point["status"], "#999")}">'
                    f"<title>{escape(point['status'])} at {point['at'][:16]}</title></rect>"
                )
    parts.append(_axis(start, end, LABEL_W, band, height - AXIS_H + 4))
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 -- every text in it went through escape()


def durations(task: dict[str, Any], report: dict[str, Any], width: int = 180) -> Markup:
    """A sparkline of run durations over the window; failed runs are red dots."""
    height = 34
    start = datetime.fromisoformat(report["window"]["start"])
    span = report["window"]["seconds"]
    points = [p for p in task["points"] if p["duration_s"] is not None]
    top = max((p["duration_s"] for p in points), default=0) or 1
    parts = [
        f'<svg class="chart chart-durations" role="img" width="{width}" height="{height}"'
        f' viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">'
        f"<title>Durations of {escape(task['task'])}, longest {top:.2f}s</title>"
        f'<line x1="0" y1="{height - 2}" x2="{width}" y2="{height - 2}" stroke="#d5d9de"/>'
    ]
    xy = [
        (_x(p["at"], start, span, width - 4) + 2, height - 3 - (height - 8) * p["duration_s"] / top)
        for p in points
    ]
    if len(xy) > 1:
        line = " ".join(f"{x:.1f},{y:.1f}" for x, y in xy)
        parts.append(f'<polyline points="{line}" fill="none" stroke="#3b6fb6" stroke-width="1.5"/>')
    for (x, y), point in zip(xy, points, strict=True):
        if point["status"] != "ok" or len(xy) == 1:
            colour = COLOURS.get(point["status"], "#3b6fb6")
            parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{colour}"/>')
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 -- every text in it went through escape()


def states(check: dict[str, Any], width: int = 220) -> Markup:
    """Time in each state, as one stacked bar."""
    height = 16
    total = sum(check["time_in_state"].values()) or 1
    parts = [
        f'<svg class="chart chart-states" role="img" width="{width}" height="{height}"'
        f' viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">'
        "<title>Time in each state</title>"
    ]
    x = 0.0
    for state in ("ok", "warning", "critical", "unknown", "no data"):
        seconds = check["time_in_state"].get(state, 0)
        if not seconds:
            continue
        w = width * seconds / total
        parts.append(
            f'<rect x="{x:.1f}" y="0" width="{w:.1f}" height="{height}" fill="{COLOURS[state]}">'
            f"<title>{state}: {100 * seconds / total:.1f}%</title></rect>"
        )
        x += w
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 -- every text in it went through escape()


def freed_per_day(report: dict[str, Any], width: int = 880) -> Markup:
    """Bytes freed by all cleanups, one bar per day."""
    days = report["bytes_freed_per_day"]
    height = 150
    plot_h = height - AXIS_H - 18
    top = max((d["bytes"] for d in days), default=0) or 1
    slot = (width - 20) / max(len(days), 1)
    bar = min(60.0, slot * 0.7)
    parts = [
        f'<svg class="chart chart-freed" role="img" width="{width}" height="{height}"'
        f' viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">'
        "<title>Bytes freed per day</title>"
        f'<line x1="10" y1="{plot_h + 18}" x2="{width - 10}" y2="{plot_h + 18}" stroke="#9aa3ad"/>'
    ]
    for i, day in enumerate(days):
        h = plot_h * day["bytes"] / top
        x = 10 + i * slot + (slot - bar) / 2
        y = plot_h + 18 - h
        parts.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" fill="#3b6fb6">'
            f"<title>{day['date']}: {format_size(day['bytes'])}</title></rect>"
        )
        if day["bytes"]:
            parts.append(
                f'<text x="{x + bar / 2:.1f}" y="{y - 4:.1f}" text-anchor="middle" class="tick">'
                f"{format_size(day['bytes'])}</text>"
            )
        if len(days) <= 14 or i % max(1, len(days) // 10) == 0:
            parts.append(
                f'<text x="{x + bar / 2:.1f}" y="{height - 6}" text-anchor="middle" class="tick">'
                f"{day['date'][5:]}</text>"
            )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 -- every text in it went through escape()
