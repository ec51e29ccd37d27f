"""How the daemon's start-up grows with its tasks: time to READY and RSS (issue 14, goal 5).

    .venv/bin/python tests/benchmarks/bench_daemon_startup.py [--sizes 1000,10000,50000] \
        [--runs 3] [--write-docs docs/performance.md]

At each size, a config of that many check.disk tasks (``every 1h``, the SQLite store in
state_dir) is started with `toilbox daemon` until it says READY=1 on $NOTIFY_SOCKET: the
point where it is scheduling (config loaded and validated, store opened, catch-up done,
every job added, the scheduler started).  Measured: wall time to READY, the daemon's CPU
time then (user + system, all its threads), its RSS and its zygote's.  The first start
creates the store and is not counted: the runs measured are restarts, the common case.
Beside it, in the same run: bare APScheduler 3 adding as many interval jobs and starting.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from _common import daemon_to_ready, write_docs  # this script's directory is on sys.path


def write_config(root: Path, count: int) -> Path:
    config = root / "toilbox.yaml"
    with config.open("w") as out:
        out.write(f"state_dir: {root / 'state'}\ntasks:\n")
        for i in range(count):
            out.write(f"  t{i}: {{uses: check.disk, schedule: every 1h}}\n")
    return config


def bare_apscheduler(count: int) -> dict[str, float]:
    code = textwrap.dedent(f"""
        import os, time
        start = time.perf_counter()
        from apscheduler.schedulers.background import BackgroundScheduler
        s = BackgroundScheduler()
        for i in range({count}):  # added before start, as the daemon does
            s.add_job(print, "interval", hours=1, id=f"t{{i}}")
        s.start()
        took = time.perf_counter() - start
        times = os.times()
        rss = int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0])
        print(took, times.user + times.system, rss)
        s.shutdown()
    """)
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    interpreter = time.perf_counter() - started - float(out[0])
    # Its own clock starts after the interpreter's start-up: add that, as the daemon's has.
    return {"ready": float(out[0]) + max(interpreter, 0.0), "cpu": float(out[1]),
            "rss": int(out[2])}


def measure(sizes: list[int], runs: int) -> list[dict[str, float]]:
    rows = []
    for count in sizes:
        root = Path(tempfile.mkdtemp(prefix="toilbox-bench-startup-"))
        try:
            config = write_config(root, count)
            daemon_to_ready(root, config)  # creates the store; page cache warm
            ours: list[dict[str, float]] = []
            bare: list[dict[str, float]] = []
            for _ in range(runs):
                ours.append(daemon_to_ready(root, config))
                bare.append(bare_apscheduler(count))
        finally:
            shutil.rmtree(root, ignore_errors=True)
        row = {"tasks": float(count), "load": os.getloadavg()[0]}
        for key in ("ready", "cpu", "rss", "zygote"):
            row[key] = statistics.median(sample[key] for sample in ours)
        for key in ("ready", "cpu", "rss"):
            row[f"bare_{key}"] = statistics.median(sample[key] for sample in bare)
        rows.append(row)
        print(f"  {count:>7,} tasks: READY after {row['ready']:.2f} s (cpu {row['cpu']:.2f} s),"
              f" RSS {row['rss'] / 1024:.1f} MiB; bare APScheduler {row['bare_ready']:.2f} s,"
              f" RSS {row['bare_rss'] / 1024:.1f} MiB")
    return rows


def growth_sentence(rows: list[dict[str, float]]) -> str:
    """Linear or better: a further task costs no more CPU time or memory in a larger
    config (CPU, not wall time, so that another process's load does not decide it)."""
    if len(rows) < 3:
        return "Too few sizes measured to judge the curves."
    parts, worse = [], []
    for key, label, scale, unit in (("cpu", "CPU", 1e6, "µs"), ("rss", "RSS", 1.0, "KiB")):
        (n0, v0), (n1, v1), (n2, v2) = ((r["tasks"], r[key]) for r in rows[:3])
        low, high = (v1 - v0) / (n1 - n0) * scale, (v2 - v1) / (n2 - n1) * scale
        if high > low * 1.15:  # more than noise: each further task costs more
            worse.append(label)
        parts.append(f"{label}: {low:,.1f} {unit} per further task from {int(n0):,} to "
                     f"{int(n1):,} tasks, {high:,.1f} {unit} from {int(n1):,} to {int(n2):,}")
    verdict = ("Both curves are linear or better: a further task costs no more time or memory "
               "in a larger config" if not worse else
               f"Worse than linear ({' and '.join(worse)}): a further task costs more in a "
               "larger config")
    return f"{verdict} ({'; '.join(parts)})."


def markdown(rows: list[dict[str, float]], runs: int) -> str:
    lines = [
        "`toilbox daemon` with N `check.disk` tasks (`every 1h`, SQLite store), restarted: "
        "from exec to READY=1 on $NOTIFY_SOCKET (config read and validated, store opened, "
        "catch-up done, every job added, the scheduler started); CPU is the daemon's user "
        "and system time by then, RSS its resident memory then (the zygote's is mostly "
        "pages shared with the daemon). Beside it, bare APScheduler 3 adding N interval "
        f"jobs and starting, interpreter start-up included. Medians of {runs} runs; load "
        f"average {rows[0]['load']:.1f} at the start, {os.getloadavg()[0]:.1f} at the end.",
        "",
        "| tasks | READY | CPU | RSS | zygote RSS | bare APScheduler | CPU | RSS |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        lines.append(
            f"| {int(row['tasks']):,} | {row['ready']:.2f} s | {row['cpu']:.2f} s | "
            f"{row['rss'] / 1024:.0f} MiB | {row['zygote'] / 1024:.0f} MiB | "
            f"{row['bare_ready']:.2f} s | {row['bare_cpu']:.2f} s | "
            f"{row['bare_rss'] / 1024:.0f} MiB |")
    lines += ["", growth_sentence(rows)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,50000")
    parser.add_argument("--runs", type=int, default=int(os.environ.get("BENCH_RUNS", "3")))
    parser.add_argument("--write-docs", type=Path, help="write the rows into this file")
    args = parser.parse_args()
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)  # measure toilbox as installed
    sizes = [int(size) for size in args.sizes.split(",")]
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {args.runs} runs per size, "
          f"load average {os.getloadavg()[0]:.1f} at the start")
    rows = measure(sizes, args.runs)
    section = markdown(rows, args.runs)
    print("\n" + section)
    if args.write_docs:
        write_docs(args.write_docs, "bench_daemon_startup", "Daemon start-up", section)


if __name__ == "__main__":
    main()
