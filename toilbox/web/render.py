"""The status page's HTML: jinja2 templates, autoescaped, plus one inline SVG chart.

Text from tasks (summaries, output, details) is escaped by the templates and stripped of
terminal controls first; nothing on a page runs a script or loads anything from
elsewhere (the CSP says so too).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from markupsafe import Markup, escape

from toilbox.terminal import printable

if TYPE_CHECKING:
    from toilbox.app import App

COLOURS = {"ok": "#2e9d5b", "warning": "#e0a106", "critical": "#d64545",
           "unknown": "#8a5cc7", "running": "#3b82c4"}


class Pages:
    def __init__(self) -> None:
        from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

        self.env = Environment(
            loader=PackageLoader("toilbox.web", "templates"),
            autoescape=select_autoescape(default=True, default_for_string=True),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            # Every value printed loses its terminal controls first (task text can hold
            # them): cheaper than cleaning all the data, most of which is never shown.
            finalize=_printable,
        )
        self.env.filters.update(
            when=when, ago=ago, seconds=seconds, status=status_word, strip_cells=strip_cells
        )
        self.env.globals.update(duration_chart=duration_chart)

    def render(self, name: str, data: dict[str, Any], app: App) -> str:
        template = self.env.get_template(f"{name}.html")
        return template.render(
            page=name, d=data, fleet_mode=app.fleet, this_host=app.host_id,
            refresh_s=30, now=datetime.now(UTC).isoformat(timespec="seconds"),
        )


def _printable(value: Any) -> Any:
    """Task text without terminal controls; our own markup (every piece of it already
    escaped and cleaned) as it is."""
    return value if isinstance(value, Markup) else printable(value)


def when(iso: str | None) -> str:
    return iso[:19].replace("T", " ") if iso else "-"


def ago(iso: str | None) -> str:
    """How long ago (or, for a time to come, how soon), in words a glance can read."""
    if not iso:
        return "-"
    delta = (datetime.now(UTC) - datetime.fromisoformat(iso)).total_seconds()
    span = abs(delta)
    text = (f"{span:.0f}s" if span < 90 else f"{span / 60:.0f}m" if span < 5400
            else f"{span / 3600:.1f}h" if span < 172800 else f"{span / 86400:.0f}d")
    return f"{text} ago" if delta >= 0 else f"in {text}"


def seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def status_word(value: str | None) -> str:
    return (value or "-").upper()


_CELL_KINDS = frozenset({"ok", "warning", "critical", "unknown", "running", "gap"})


def strip_cells(strip: list[dict[str, Any]]) -> Markup:
    """A task's last runs as small cells, oldest first, a gap for a missed or skipped
    slot; each names its time and status on hover.  Built here, not in the template: a
    thousand tasks make 24,000 cells.  Nothing in a cell comes from a task: the kind is
    one of ours (else "unknown") and the time is digits, so nothing needs escaping."""
    cells = []
    for cell in strip:
        kind = "gap" if cell["gap"] else cell["status"]
        if kind not in _CELL_KINDS:
            kind = "unknown"
        at = "".join(ch for ch in when(cell["at"]) if ch in "0123456789-: ")
        label = cell["status"].upper() if cell["status"].isalpha() else "?"
        cells.append(f'<i class="cell {kind}" title="{at} {label}"></i>')
    return Markup("".join(cells))  # noqa: S704 -- built only from the safe pieces above


def duration_chart(points: list[dict[str, Any]], width: int = 640, height: int = 140) -> Markup:
    """Durations of recent runs as bars, coloured by status; text escaped here."""
    if not points:
        return Markup('<p class="muted">no finished runs yet</p>')
    top = max(p["duration_s"] or 0 for p in points) or 1.0
    step = width / max(len(points), 1)
    bars = []
    for index, point in enumerate(points):
        value = point["duration_s"] or 0
        bar = max(1.0, (height - 20) * value / top)
        x = index * step
        title = escape(f"{when(point['at'])}: {point['status'].upper()}, {seconds(value)}")
        colour = COLOURS.get(point["status"], "#8a8f98")
        bars.append(
            f'<rect x="{x:.1f}" y="{height - 16 - bar:.1f}" width="{max(step - 2, 1):.1f}"'
            f' height="{bar:.1f}" fill="{colour}"><title>{title}</title></rect>'
        )
    label = escape(f"longest {seconds(top)}")
    # Markup of our own numbers and colours; every text in it went through escape().
    return Markup(  # noqa: S704
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}"'
        f' role="img" aria-label="run durations">{"".join(bars)}'
        f'<text x="0" y="{height - 2}" class="tick">{label}</text></svg>'
    )
