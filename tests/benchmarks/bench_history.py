"""Reading history on a big store: `toilbox list`, `history`, `explain` and `report`
at 1,000 / 10,000 / 100,000 / 1,000,000 runs, on SQLite and on PostgreSQL (issue 14,
goals 1 and 5).

    .venv/bin/python tests/benchmarks/bench_history.py [--sizes 1000,10000,100000,1000000]
        [--backends sqlite,postgresql] [--pg-url postgresql://postgres@127.0.0.1/postgres]
        [--runs 5] [--write-docs docs/performance.md]

Each store holds 100 tasks over a month (history_store.py: checks with outages, fixes
and verifies, cleanups, skipped and missed slots), filled through the store's own
``record_many``.  Stores are kept under /tmp/toilbox-bench-history (SQLite) and in a
schema per size (PostgreSQL), so a second run measures at once.  Every command is a
whole `toilbox` process; the figures are medians of --runs rounds, every command of
every store in each round, so they share the machine's load.

Goals: with 1,000,000 runs, list, history, explain and report --window 1d at most 1.2x
their time on 1,000 runs; report --window 7d under 1 s.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _common import write_docs  # this script's directory is on sys.path

sys.path.insert(0, str(Path(__file__).parent))
import history_store
from bench_run_startup import NOOP_PLUGIN as NOOP

ROOT = Path("/tmp/toilbox-bench-history")
COMMANDS = {
    "list": ["list"],
    "history TASK --limit 20": ["history", "t7", "--limit", "20"],
    "explain TASK": ["explain", "t7"],
    "report --window 1d": ["report", "--window", "1d"],
    "report --window 7d": ["report", "--window", "7d"],
}
FLAT = 1.2  # goal 1: at 1,000,000 runs at most this times the 1,000-run figure
SEVEN_DAYS_S = 1.0


def store_dir(backend: str, size: int) -> Path:
    return ROOT / f"{backend}-{size}"


def build(backend: str, size: int, pg_url: str) -> Path:
    """The config of a store of ``size`` runs, filled on first use (a marker says so)."""
    root = store_dir(backend, size)
    (root / "plugins.d").mkdir(parents=True, exist_ok=True)
    (root / "plugins.d" / "noop.py").write_text(NOOP)
    store_line = ""
    if backend == "postgresql":
        schema = f"bench_history_{size}"
        url = f"{pg_url}?options=-csearch_path%3D{schema}"
        store_line = f"store: {{url: '{url}'}}\n"
    tasks = "".join(f"  t{n}: {{uses: check.noop, schedule: every 1h}}\n"
                    for n in range(history_store.TASKS))
    config = root / "toilbox.yaml"
    config.write_text(f"state_dir: {root / 'state'}\nplugin_dirs: [{root / 'plugins.d'}]\n"
                      f"host_id: {history_store.HOST}\n{store_line}tasks:\n{tasks}")
    marker = root / "filled"
    if marker.exists():
        return config
    began = time.perf_counter()
    if backend == "sqlite":
        import shutil

        from toilbox.store.sqlite import SqliteStore

        shutil.rmtree(root / "state", ignore_errors=True)
        store = SqliteStore.open(root / "state")
    else:
        import psycopg

        from toilbox.store.postgres import PostgresStore

        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
            conn.execute(f"CREATE SCHEMA {schema}")
        store = PostgresStore.open(url)  # type: ignore[assignment]
    try:
        total = history_store.fill(store, size)
    finally:
        store.close()
    if backend == "postgresql":
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE runs")
    marker.write_text(str(total))
    print(f"  filled {backend} store of {total:,} runs in {time.perf_counter() - began:.0f} s",
          flush=True)
    return config


def once(config: Path, argv: list[str]) -> tuple[float, float]:
    """Wall time and CPU time (user + system) of one whole `toilbox` process."""
    env = {**os.environ, "TOILBOX_HOST_ID": history_store.HOST}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    subprocess.run([sys.executable, "-m", "toilbox", "-c", str(config), *argv], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    wall = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


Key = tuple[str, int, str]


Figures = dict[Key, float]


def measure(
    configs: dict[tuple[str, int], Path], rounds: int
) -> tuple[Figures, Figures, Figures, Figures]:
    """Medians of wall and of CPU time, then their least (load only ever adds time, so
    the least of the rounds is the closest to the cost itself: growth is judged on it);
    every command of every store in each round."""
    walls: dict[Key, list[float]] = {}
    cpus: dict[Key, list[float]] = {}
    for _ in range(rounds):
        for (backend, size), config in configs.items():
            for label, argv in COMMANDS.items():
                wall, cpu = once(config, argv)
                walls.setdefault((backend, size, label), []).append(wall)
                cpus.setdefault((backend, size, label), []).append(cpu)
    return ({key: statistics.median(v) for key, v in walls.items()},
            {key: statistics.median(v) for key, v in cpus.items()},
            {key: min(v) for key, v in walls.items()},
            {key: min(v) for key, v in cpus.items()})


NOISE_S = 0.05  # differences smaller than this, under other helpers' load, are noise


def growth(sizes: list[int], times: list[float]) -> str:
    """Flat (goal 1), linear or better, or worse than linear, from the time above the
    smallest store's (start-up, config, the fixed part): from one size to the next it
    may grow at most as the runs do (10% allowed), where it is above the noise."""
    if times[-1] <= FLAT * times[0]:
        return "flat"
    excess = [max(t - times[0], NOISE_S) for t in times]
    for i in range(1, len(sizes) - 1):
        if excess[i + 1] > NOISE_S and excess[i + 1] / excess[i] > 1.1 * sizes[i + 1] / sizes[i]:
            return "worse than linear"
    return "linear or better"


def per_run_us(sizes: list[int], times: list[float]) -> float:
    return (times[-1] - times[0]) / (sizes[-1] - sizes[0]) * 1e6


def table(figures: tuple[Figures, Figures, Figures, Figures], backends: list[str],
          sizes: list[int], load: tuple[float, float]) -> str:
    walls, cpus, least_walls, least_cpus = figures
    lines = [
        "Reading history: `toilbox COMMAND` as a whole process, medians of wall time (and,"
        " in brackets, of its CPU time, user + system, which depends much less on what else"
        " the machine runs); 100 tasks over a month (tests/benchmarks/bench_history.py)."
        f" Goals: at 1,000,000 runs at most {FLAT}x the 1,000-run time, and"
        f" `report --window 7d` under {SEVEN_DAYS_S:.0f} s. Growth is judged on the least"
        " of the rounds, of CPU time on SQLite and of wall time on PostgreSQL (whose queries"
        f" run in the server, outside the process). Load average {load[0]:.1f} at the start, {load[1]:.1f} at the end.",
        "",
        "| backend | command | " + " | ".join(f"{s:,} runs" for s in sizes)
        + f" | {sizes[-1]:,} / {sizes[0]:,} wall (cpu) | growth |",
        "| --- | --- | " + " | ".join("---:" for _ in sizes) + " | ---: | --- |",
    ]
    sentences = []
    for backend in backends:
        judged = least_cpus if backend == "sqlite" else least_walls
        verdicts = {}
        for label in COMMANDS:
            wall = [walls[(backend, s, label)] for s in sizes]
            cpu = [cpus[(backend, s, label)] for s in sizes]
            verdicts[label] = growth(sizes, [judged[(backend, s, label)] for s in sizes])
            cells = " | ".join(f"{w * 1000:,.0f} ms ({c * 1000:,.0f})"
                               for w, c in zip(wall, cpu, strict=True))
            lines.append(f"| {backend} | `{label}` | {cells} | {wall[-1] / wall[0]:.2f}x"
                         f" ({cpu[-1] / cpu[0]:.2f}x) | {verdicts[label]} |")
        worse = [f"`{label}`" for label, v in verdicts.items() if v == "worse than linear"]
        flat = [f"`{label}`" for label, v in verdicts.items() if v == "flat"]
        grows = [label for label, v in verdicts.items() if v != "flat"]
        sentences.append(
            f"On {backend}, every curve is linear or better"
            if not worse else f"On {backend}, {', '.join(worse)} grow worse than linear"
        )
        sentences[-1] += (f" ({', '.join(flat)} flat: within {FLAT}x from {sizes[0]:,} to"
                          f" {sizes[-1]:,} runs" if flat else "")
        costs = [
            f"`{label}` {per_run_us(sizes, [judged[(backend, s, label)] for s in sizes]):.2f}"
            for label in grows
        ]
        sentences[-1] += (f"{'; ' if flat else ' ('}growing: {', '.join(costs)} µs per further"
                          " run in the store)." if costs else ")." if flat else ".")
    return "\n".join([*lines, "", " ".join(sentences)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000,1000000")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--runs", type=int, default=int(os.environ.get("BENCH_RUNS", "5")))
    parser.add_argument("--write-docs", type=Path)
    args = parser.parse_args()
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    sizes = [int(s) for s in args.sizes.split(",")]
    backends = args.backends.split(",")
    configs = {(b, s): build(b, s, args.pg_url) for b in backends for s in sizes}
    load = os.getloadavg()[0]
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {args.runs} rounds, "
          f"load average {load:.1f} at the start", flush=True)
    for config in configs.values():  # one warm-up each: page cache, bytecode
        for argv in COMMANDS.values():
            once(config, argv)
    figures = measure(configs, args.runs)
    walls = figures[0]
    section = table(figures, backends, sizes, (load, os.getloadavg()[0]))
    print("\n" + section)
    for backend in backends:
        seven = walls[(backend, sizes[-1], "report --window 7d")]
        print(f"{backend}: report --window 7d at {sizes[-1]:,} runs: {seven:.2f} s"
              f" ({'met' if seven < SEVEN_DAYS_S else 'missed'}: goal < {SEVEN_DAYS_S:.0f} s)")
    if args.write_docs:
        write_docs(args.write_docs, "bench_history", "Reading history", section)


if __name__ == "__main__":
    main()
