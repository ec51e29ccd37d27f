"""Small helpers shared by the benchmark scripts."""

from __future__ import annotations

import re
import statistics
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path


def percentile(samples: Sequence[float], pct: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def wall(argv: Sequence[str], **kwargs: object) -> float:
    started = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   **kwargs)  # type: ignore[call-overload]
    return time.perf_counter() - started


def summary(samples: Sequence[float]) -> dict[str, float]:
    return {
        "median": statistics.median(samples),
        "p99": percentile(samples, 99),
        "min": min(samples),
        "max": max(samples),
    }


def write_docs(path: Path, marker: str, heading: str, section: str) -> None:
    """Write ``section`` into ``path`` between ``<!-- MARKER:begin -->`` and its end
    marker, replacing what was there; where there is none yet, as a new ``## HEADING``
    at the end (a new file starts as docs/performance.md does)."""
    begin, end = f"<!-- {marker}:begin -->", f"<!-- {marker}:end -->"
    text = path.read_text() if path.exists() else (
        "# Performance\n\nHow toilbox's costs grow, as measured by the scripts in "
        "`tests/benchmarks/` (each writes its own section between its markers).\n")
    block = f"{begin}\n{section}\n{end}"
    if begin in text and end in text:
        text = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: block, text,
                      flags=re.S)
    else:
        text = text.rstrip("\n") + f"\n\n## {heading}\n\n{block}\n"
    path.write_text(text)
    print(f"wrote the {marker} section of {path}")
