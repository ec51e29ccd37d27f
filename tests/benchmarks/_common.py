"""Small helpers shared by the benchmark scripts."""

from __future__ import annotations

import os
import re
import socket
import statistics
import subprocess
import sys
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


TICK = os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def stat_cpu_s(pid: int) -> float:
    """User + system time of the whole process, its ended threads included."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def daemon_to_ready(root: Path, config: Path) -> dict[str, float]:
    """Start `toilbox daemon`, wait for READY=1, measure, stop it."""
    sock_path = root / "notify.sock"
    sock_path.unlink(missing_ok=True)
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(sock_path))
    receiver.settimeout(600)
    toilbox_bin = str(Path(sys.executable).parent / "toilbox")
    env = {**os.environ, "NOTIFY_SOCKET": str(sock_path)}
    started = time.perf_counter()
    process = subprocess.Popen([toilbox_bin, "-c", str(config), "daemon"], env=env,
                               stderr=subprocess.DEVNULL)
    try:
        while not receiver.recv(4096).startswith(b"READY=1"):
            pass
        ready = time.perf_counter() - started
        children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
        zygote = rss_kib(int(children[0])) if children else 0
        return {"ready": ready, "cpu": stat_cpu_s(process.pid), "rss": rss_kib(process.pid),
                "zygote": zygote}
    finally:
        process.terminate()
        process.wait(timeout=120)
        receiver.close()
