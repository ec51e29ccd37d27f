"""The status page on a big store, beside `toilbox list` and `toilbox history` (issue 10).

    python tests/benchmarks/bench_status_page.py [--runs 1000000] [--tasks 1000]

Fills a SQLite store with RUNS runs of TASKS tasks (a month of history: statuses mixed,
skipped and missed slots among them, a check state per task), then measures, in one
run: the overview drawn server-side (views + template, as the daemon's listener does),
a run's page, and, whole process, `toilbox list` and `toilbox history TASK`.  Goal:
overview p95 < 300 ms and run page < 50 ms with 1,000 tasks and 1,000,000 runs.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[2]))
from _common import percentile
from bench_run_startup import NOOP_PLUGIN as NOOP

HOST = "bench"


def build(root: Path, tasks: int, runs: int) -> Path:
    plugins = root / "plugins.d"
    plugins.mkdir()
    (plugins / "noop.py").write_text(NOOP)
    lines = "".join(f"  t{n}: {{uses: check.noop, schedule: every 1h}}\n" for n in range(tasks))
    config = root / "toilbox.yaml"
    config.write_text(f"state_dir: {root / 'state'}\nplugin_dirs: [{plugins}]\n"
                      f"host_id: {HOST}\ntasks:\n{lines}")
    from toilbox.store.sqlite import SqliteStore

    SqliteStore.open(root / "state").close()  # the schema, as toilbox makes it
    db = sqlite3.connect(root / "state" / "toilbox.db")
    rng = random.Random(7)  # noqa: S311 -- a repeatable mix of statuses, no secret
    start = datetime.now(UTC) - timedelta(days=30)
    step = timedelta(days=30) / max(runs // tasks, 1)
    statuses = ["ok"] * 90 + ["warning"] * 4 + ["critical"] * 3 + ["skipped"] * 2 + ["missed"]
    rows = []
    for index in range(runs):
        task = index % tasks
        at = start + step * (index // tasks) + timedelta(milliseconds=task)
        status = rng.choice(statuses)
        iso = at.isoformat(timespec="microseconds")
        rows.append((
            f"r{index:08d}", f"t{task}", "check.noop", status, "schedule", iso, iso, iso,
            None, 1, 0.05, f"{status} run {index}", "{}",
            json.dumps({"count": 1}) if status == "missed" else "{}", None, "",
            "" if status != "critical" else "some output\n" * 20, 0, "vm", 1, HOST, "host",
        ))
        if len(rows) == 50_000:
            db.executemany(f"INSERT INTO runs VALUES ({','.join('?' * 22)})", rows)  # noqa: S608
            rows.clear()
    db.executemany(f"INSERT INTO runs VALUES ({','.join('?' * 22)})", rows)  # noqa: S608
    for task in range(tasks):
        state = {"task": f"t{task}", "status": "ok" if task % 50 else "critical", "hard": True,
                 "since": start.isoformat(), "count": 3, "problem_count": 0,
                 "problem_since": None, "changes": [], "flapping": False,
                 "circuit_open": False, "circuit_reason": None}
        db.execute("INSERT INTO check_states VALUES (?, ?, ?)",
                   (f"t{task}", HOST, json.dumps(state)))
    db.commit()
    db.close()
    return config


def server_side(config: Path, repeat: int, run_id: str) -> tuple[list[float], list[float]]:
    os.environ["TOILBOX_HOST_ID"] = HOST
    from toilbox.app import load_app
    from toilbox.web import views
    from toilbox.web.render import Pages

    app = load_app(str(config))
    store = app.store()
    pages = Pages()
    overview, run = [], []
    for _ in range(repeat):
        began = time.perf_counter()
        pages.render("overview", views.overview(app, store, views.Filters()), app)
        overview.append((time.perf_counter() - began) * 1000)
        began = time.perf_counter()
        pages.render("run", views.run_page(store, run_id), app)
        run.append((time.perf_counter() - began) * 1000)
    return overview, run


def whole(config: Path, *args: str, repeat: int = 5) -> float:
    env = {**os.environ, "TOILBOX_HOST_ID": HOST}
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        subprocess.run([sys.executable, "-m", "toilbox", "-c", str(config), *args], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        times.append(time.perf_counter() - began)
    return sorted(times)[len(times) // 2] * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="toilbox-bench-page-"))
    began = time.perf_counter()
    config = build(root, args.tasks, args.runs)
    print(f"store: {args.runs:,} runs of {args.tasks:,} tasks, filled in"
          f" {time.perf_counter() - began:.0f} s")
    overview, run = server_side(config, args.repeat, f"r{args.runs // 2:08d}")
    print(f"{'':<44} {'p50 ms':>8} {'p95 ms':>8}")
    print(f"{'overview, server-side (views + template)':<44} {percentile(overview, 50):>8.1f}"
          f" {percentile(overview, 95):>8.1f}")
    print(f"{'a run page, server-side':<44} {percentile(run, 50):>8.1f}"
          f" {percentile(run, 95):>8.1f}")
    print(f"{'toilbox list (whole process, median)':<44} {whole(config, 'list'):>8.1f}")
    print(f"{'toilbox history t7 (whole process, median)':<44}"
          f" {whole(config, 'history', 't7'):>8.1f}")


if __name__ == "__main__":
    main()
