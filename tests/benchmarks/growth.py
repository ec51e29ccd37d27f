"""How cost grows, in one table and one chart (issue 14, goal 5), from the benchmarks' own.

    python tests/benchmarks/growth.py --write-docs docs/performance.md

Reads the scaling tables that bench_daemon_startup.py, bench_history.py and
bench_cleanup.py --scaling wrote into docs/performance.md (between their markers), and
writes, between its own markers there, one table of every curve (each cost at each size,
and how much it grew against how much the size grew) with a verdict in words, and the
chart docs/performance-growth.svg: each cost against its size, both as multiples of the
smallest, on log scales, beside the line of linear growth.  Nothing is typed in by hand:
run the benchmarks again and then this.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from _common import write_docs  # this script's directory is on sys.path

SVG_NAME = "performance-growth.svg"


@dataclass
class Curve:
    name: str
    unit: str  # of the size: tasks, runs, files
    points: list[tuple[float, float]]  # (size, cost)
    cost: str  # what the cost is: "CPU s", "RSS MiB", ...

    def growth(self) -> tuple[float, float]:
        """Size and cost of the largest point, each as a multiple of the smallest."""
        (s0, c0), (s1, c1) = self.points[0], self.points[-1]
        return s1 / s0, c1 / c0

    def verdict(self) -> str:
        """Flat when the largest costs at most 1.2x the smallest.  Otherwise linear or
        better when the last step's cost per further unit is at most 1.15x the average
        over the whole range: a curve that bends upwards (quadratic, say) has its
        steepest step last.  Judged on the whole range, not on two small steps, whose
        differences are mostly noise."""
        if self.growth()[1] <= 1.2:
            return "flat"
        (s0, c0), (s_prev, c_prev), (s1, c1) = self.points[0], self.points[-2], self.points[-1]
        average = (c1 - c0) / (s1 - s0)
        last = (c1 - c_prev) / (s1 - s_prev)
        return "linear or better" if last <= average * 1.15 else "worse than linear"


def _section(text: str, marker: str) -> str:
    begin, end = f"<!-- {marker}:begin -->", f"<!-- {marker}:end -->"
    if begin not in text:
        raise SystemExit(f"docs/performance.md has no {marker} section: run that benchmark")
    return text.split(begin, 1)[1].split(end, 1)[0]


def _rows(section: str) -> list[list[str]]:
    rows = []
    for line in section.splitlines():
        if line.startswith("|") and not line.startswith("| ---"):
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows[1:]  # the header row goes


def _number(cell: str) -> float:
    """``1,000`` -> 1000; ``2.05 s`` -> 2.05; ``447 ms (339)`` -> 0.447; ``49 MiB`` -> 49."""
    match = re.match(r"([\d,.]+)\s*(ms|s|MiB)?", cell.replace("**", ""))
    if not match:
        raise ValueError(f"not a figure: {cell!r}")
    value = float(match[1].replace(",", ""))
    return value / 1000 if match[2] == "ms" else value


def _cpu(cell: str) -> float:
    """The CPU time in brackets of a bench_history cell, in seconds."""
    inner = re.search(r"\(([\d,.]+)\)", cell)
    return float(inner[1].replace(",", "")) / 1000 if inner else _number(cell)


def curves(text: str) -> list[Curve]:
    found = []
    daemon = _rows(_section(text, "bench_daemon_startup"))
    sizes = [_number(row[0]) for row in daemon]
    found.append(Curve("daemon start-up, CPU to READY", "tasks",
                       list(zip(sizes, [_number(r[2]) for r in daemon], strict=True)), "CPU s"))
    found.append(Curve("daemon start-up, RSS", "tasks",
                       list(zip(sizes, [_number(r[3]) for r in daemon], strict=True)), "MiB"))
    history = _rows(_section(text, "bench_history"))
    header_sizes = [1_000, 10_000, 100_000, 1_000_000]
    for row in history:
        backend, command = row[0], row[1].strip("`")
        if command not in ("list", "report --window 7d", "report --window 1d"):
            continue
        # The sizes: 10,000 runs and up; SQLite's CPU is the process's own, and
        # PostgreSQL's queries run in its server, so its wall time is the cost.
        cells = row[3:6]  # backend, command, then 1,000 / 10,000 / 100,000 / 1,000,000 runs
        costs = [_cpu(c) if backend == "sqlite" else _number(c) for c in cells]
        found.append(Curve(f"{command} ({backend})", "runs",
                           list(zip(header_sizes[1:], costs, strict=True)),
                           "CPU s" if backend == "sqlite" else "wall s"))
    cleanup = _rows(_section(text, "bench_cleanup"))
    for kind in ("scan (dry run)", "delete"):
        rows = [r for r in cleanup if r[0] == kind]
        found.append(Curve(f"cleanup {kind}, CPU", "files",
                           [(_number(r[1]), _number(r[4])) for r in rows], "CPU s"))
    return found


def table(found: list[Curve]) -> str:
    lines = [
        "| curve | sizes | cost at each size | size grew | cost grew | growth |",
        "| --- | --- | --- | ---: | ---: | --- |",
    ]
    for curve in found:
        size_x, cost_x = curve.growth()
        sizes = " / ".join(f"{s:,.0f}" for s, _ in curve.points) + f" {curve.unit}"
        costs = " / ".join(f"{c:,.3g}" for _, c in curve.points) + f" {curve.cost}"
        lines.append(f"| {curve.name} | {sizes} | {costs} | {size_x:,.0f}x | {cost_x:,.2f}x |"
                     f" {curve.verdict()} |")
    return "\n".join(lines)


def svg(found: list[Curve]) -> str:
    """Log-log: x is the size as a multiple of the smallest, y the cost likewise."""
    width, height, pad = 720, 420, 60
    top = max(max(p[0] / c.points[0][0] for p in c.points) for c in found)
    span = math.log10(top) or 1

    def at(x: float, y: float) -> tuple[float, float]:
        return (pad + math.log10(x) / span * (width - 2 * pad),
                height - pad - math.log10(max(y, 1)) / span * (height - 2 * pad))

    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
               "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#637939"]
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + 20 * len(found)}"'
             f' font-family="sans-serif" font-size="12">',
             '<rect width="100%" height="100%" fill="white"/>']
    x0, y0 = at(1, 1)
    x1, y1 = at(top, top)
    parts.append(f'<line x1="{x0:.1f}" y1="{y0:.1f}" x2="{x1:.1f}" y2="{y1:.1f}" stroke="#999"'
                 ' stroke-dasharray="6 4"/>')
    parts.append(f'<text x="{x1 - 90:.1f}" y="{y1 + 14:.1f}" fill="#666">linear</text>')
    parts.append(f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}"'
                 ' stroke="black"/>')
    parts.append(f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" stroke="black"/>')
    decade = 1
    while decade <= top:
        x, _ = at(decade, 1)
        _, y = at(1, decade)
        parts.append(f'<text x="{x:.1f}" y="{height - pad + 16}" text-anchor="middle">'
                     f'{decade:,}x</text>')
        parts.append(f'<text x="{pad - 6}" y="{y + 4:.1f}" text-anchor="end">{decade:,}x</text>')
        decade *= 10
    parts.append(f'<text x="{width / 2}" y="{height - 18}" text-anchor="middle">size, as a'
                 ' multiple of the smallest measured</text>')
    parts.append(f'<text x="16" y="{height / 2}" transform="rotate(-90 16 {height / 2})"'
                 ' text-anchor="middle">cost, as a multiple of its cost there</text>')
    for index, curve in enumerate(found):
        colour = palette[index % len(palette)]
        s0, c0 = curve.points[0]
        coords = " ".join("{:.1f},{:.1f}".format(*at(s / s0, c / c0)) for s, c in curve.points)
        parts.append(f'<polyline points="{coords}" fill="none" stroke="{colour}"'
                     ' stroke-width="2"/>')
        legend_y = height + 20 * index
        parts.append(f'<line x1="{pad}" y1="{legend_y}" x2="{pad + 24}" y2="{legend_y}"'
                     f' stroke="{colour}" stroke-width="2"/>')
        parts.append(f'<text x="{pad + 30}" y="{legend_y + 4}">{curve.name}'
                     f' ({curve.verdict()})</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def section(found: list[Curve]) -> str:
    worse = [c.name for c in found if c.verdict() == "worse than linear"]
    words = ("Every curve is linear or better." if not worse else
             f"Worse than linear: {', '.join(worse)}.")
    return (
        "The issue's scaling curves in one table, and in the chart below as multiples of"
        " each curve's smallest size (log scales: a curve under the dashed line grows more"
        " slowly than its size): daemon start-up (CPU to READY, RSS), `list` and `report`"
        " at 10,000 to 1,000,000 runs (the medians of the history table; SQLite's own CPU,"
        " PostgreSQL's wall time, whose queries run in its server), and cleanup scan and"
        " delete (CPU). A curve is flat when its largest size costs at most 1.2x its"
        " smallest, and linear or better when its last step costs at most 1.15x per further"
        " task, run or file what the whole range costs on average (a curve that bends"
        " upwards has its steepest step last). "
        f"{words} Written by tests/benchmarks/growth.py from the benchmarks' tables above.\n\n"
        f"{table(found)}\n\n![How cost grows]({SVG_NAME})"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--write-docs", type=Path, help="docs/performance.md to read and write")
    args = parser.parse_args()
    path = args.write_docs or Path(__file__).parents[2] / "docs" / "performance.md"
    text = path.read_text()
    found = curves(text)
    body = section(found)
    sys.stdout.write(body + "\n")
    if args.write_docs:
        write_docs(path, "growth", "How cost grows", body)
        path.with_name(SVG_NAME).write_text(svg(found))


if __name__ == "__main__":
    main()
