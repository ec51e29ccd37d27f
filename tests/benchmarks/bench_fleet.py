"""Fleet mode against its baselines, side by side in one run (issue 9).

    python tests/benchmarks/bench_fleet.py [claims] [daemons] [startup]

Needs a PostgreSQL on 127.0.0.1:5432 (TOILBOX_TEST_PG names another admin URL); each
part makes a database of its own and drops it.

- claims:  slot-claim latency from three processes on loopback, every process claiming
           the same 3,000 slots (the fleet's case: each slot contested).  The bare
           statement (psycopg 3, autocommit, `INSERT ... ON CONFLICT DO NOTHING
           RETURNING`) beside toilbox's fleet claim (slot and lease, pool and all), its
           plain slot claim, and the same claims on SQLite.  Goal: toilbox's fleet claim
           p99 < 2 ms.
- daemons: three `toilbox daemon`s with 1,000 fleet tasks each due about every minute
           (each its own interval from 50 to 70 s: about 17 fires a second in all), for three minutes:
           dispatch lag (slot to claimed and handed to a worker) p50/p99; double and
           missed runs; PostgreSQL connections per daemon, sampled.  Goal: lag p99 <
           25 ms, none double or missed, connections bounded.
- burst:   the same with all 1,000 due at once, every minute on the minute, beside bare
           APScheduler handing 1,000 simultaneous jobs to a no-op executor.
- startup: `toilbox daemon` with 10,000 tasks to READY on PostgreSQL beside SQLite.
           Goal: < 3 s.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[2]))
from _common import percentile
from bench_run_startup import NOOP_PLUGIN as NOOP

from toilbox.models import Lease, utc_iso

ADMIN = os.environ.get("TOILBOX_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
TOILBOX = [sys.executable, "-m", "toilbox"]
class Database:
    def __init__(self) -> None:
        import psycopg

        self.name = f"toilbox_bench_{os.getpid()}"
        self.admin = psycopg.connect(ADMIN, autocommit=True)
        self.admin.execute(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")
        self.admin.execute(f"CREATE DATABASE {self.name}")
        self.url = ADMIN.rsplit("/", 1)[0] + "/" + self.name

    def drop(self) -> None:
        self.admin.execute(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")
        self.admin.close()


# -- claims ------------------------------------------------------------------------------

SLOTS = 3000


def _slots() -> list[str]:
    base = datetime(2026, 1, 1, tzinfo=UTC)
    return [utc_iso(base + timedelta(seconds=n)) for n in range(SLOTS)]


def _claimer(kind: str, where: str, gate, results) -> None:
    slots = _slots()
    if kind == "bare":
        import psycopg

        conn = psycopg.connect(where, autocommit=True)
        claim = conn.cursor()
        statement = ("INSERT INTO bare_slots (task, scheduled_for) VALUES (%s, %s)"
                     " ON CONFLICT DO NOTHING RETURNING task")

        def one(slot: str) -> None:
            claim.execute(statement, ("t", slot))
            claim.fetchall()
    else:
        if kind.startswith("pg"):
            from toilbox.store.postgres import PostgresStore

            store = PostgresStore.open(where, pooled=True)
        else:
            from toilbox.store.sqlite import SqliteStore

            store = SqliteStore.open(Path(where))
        if kind.endswith("fleet"):
            def one(slot: str) -> None:
                lease = Lease("task:t", store.owner, "bench", "t", slot, "schedule")
                store.claim_fleet_slot("t", slot, "s", lease, 30)
        else:
            def one(slot: str) -> None:
                store.claim_slot("t", slot, "s", "bench", "")
    gate.wait()
    times = []
    for slot in slots:
        started = time.perf_counter()
        one(slot)
        times.append((time.perf_counter() - started) * 1000)
        if kind.endswith("fleet"):
            store.release_lease("task:t", store.owner)  # as a run's end does, untimed
    results.put(times)


def claims() -> None:
    db = Database()
    try:
        import psycopg

        with psycopg.connect(db.url, autocommit=True) as conn:
            conn.execute("CREATE TABLE bare_slots (task text, scheduled_for timestamptz,"
                         " PRIMARY KEY (task, scheduled_for))")
        rows = []
        for kind in ("bare", "pg fleet", "pg slot", "sqlite fleet", "sqlite slot"):
            if kind.startswith("sqlite"):
                where = tempfile.mkdtemp(prefix="toilbox-bench-")
            else:
                schema = "s_" + kind.replace(" ", "_")
                with psycopg.connect(db.url, autocommit=True) as conn:
                    conn.execute(f"CREATE SCHEMA {schema}")
                where = db.url if kind == "bare" else f"{db.url}?options=-csearch_path%3D{schema}"
                if kind != "bare":
                    from toilbox.store.postgres import PostgresStore

                    PostgresStore.open(where).close()  # the schema, before the race
            if kind.startswith("sqlite"):
                from toilbox.store.sqlite import SqliteStore

                SqliteStore.open(Path(where)).close()
            context = multiprocessing.get_context("fork")
            gate, results = context.Barrier(3), context.Queue()
            workers = [context.Process(target=_claimer, args=(kind, where, gate, results))
                       for _ in range(3)]
            for worker in workers:
                worker.start()
            times = [t for _ in workers for t in results.get(timeout=600)]
            for worker in workers:
                worker.join()
            rows.append((kind, percentile(times, 50), percentile(times, 99), max(times)))
        print(f"\nslot claims: 3 processes x {SLOTS} slots, each slot contested by all three")
        print(f"{'claim':<34} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
        names = {
            "bare": "bare INSERT ... ON CONFLICT (psycopg)",
            "pg fleet": "toilbox fleet claim, PostgreSQL",
            "pg slot": "toilbox slot claim, PostgreSQL",
            "sqlite fleet": "toilbox fleet claim, SQLite",
            "sqlite slot": "toilbox slot claim, SQLite",
        }
        for kind, p50, p99, worst in rows:
            print(f"{names[kind]:<34} {p50:>8.3f} {p99:>8.3f} {worst:>8.3f}")
    finally:
        db.drop()


# -- daemons -----------------------------------------------------------------------------


def _workspace(
    root: Path, host: str, url: str | None, tasks: int, scope: str, cron: str = "* * * * *"
) -> Path:
    plugins = root / "plugins.d"
    plugins.mkdir(exist_ok=True)
    (plugins / "noop.py").write_text(NOOP)
    store = f'store: {{url: "{url}"}}\n' if url else ""
    lines = "".join(
        f"  t{n}: {{uses: check.noop, schedule: '{_schedule(cron, n)}', scope: {scope},"
        " retry: {attempts: 1}}\n"
        for n in range(tasks)
    )
    config = root / f"{host}.yaml"
    config.write_text(f"state_dir: {root / ('state-' + host)}\nplugin_dirs: [{plugins}]\n"
                      f"{store}max_concurrent: 8\ntasks:\n{lines}")
    return config


def _schedule(cron: str, n: int) -> str:
    """"spread": a distinct interval from 50 to 70 s per task (slots count from a fixed
    epoch, so equal intervals would fire together): 1,000 tasks make about 17 fires a
    second, spread over the minute."""
    return f"every {50 + n * 0.02:.2f}s" if cron == "spread" else cron


def _bare_burst(jobs: int) -> list[float]:
    from apscheduler.executors.base import BaseExecutor
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.triggers.interval import IntervalTrigger

    lags: list[float] = []

    class Record(BaseExecutor):  # type: ignore[misc]
        def submit_job(self, job, run_times):
            lags.append((datetime.now(UTC) - run_times[-1]).total_seconds() * 1000)

        def _do_submit_job(self, job, run_times):
            raise NotImplementedError

    scheduler = BackgroundScheduler(timezone=UTC, executors={"default": Record()},
                                    job_defaults={"misfire_grace_time": None})
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)
    for n in range(jobs):
        scheduler.add_job(print, IntervalTrigger(seconds=60, start_date=start), id=str(n),
                          next_run_time=start)
    scheduler.start()
    time.sleep(4)
    scheduler.shutdown()
    return lags


def daemons(minutes: int = 3, tasks: int = 1000, cron: str = "spread") -> None:
    db = Database()
    root = Path(tempfile.mkdtemp(prefix="toilbox-bench-fleet-"))
    processes = []
    try:
        for host in ("a", "b", "c"):
            config = _workspace(root, host, db.url, tasks, "fleet", cron)
            log = (root / f"{host}.log").open("w")
            env = {**os.environ, "TOILBOX_HOST_ID": host}
            processes.append(subprocess.Popen(
                [*TOILBOX, "-c", str(config), "--log-format", "json", "daemon"],
                stdout=subprocess.DEVNULL, stderr=log, env=env))
        deadline = time.time() + 60
        while time.time() < deadline and not all(
            "daemon.started" in (root / f"{h}.log").read_text() for h in "abc"
        ):
            time.sleep(0.2)
        began = datetime.now(UTC)
        connections: dict[str, int] = {}
        import psycopg

        with psycopg.connect(db.url, autocommit=True) as conn:
            until = time.time() + minutes * 60 + 5
            while time.time() < until:
                for name, count in conn.execute(
                    "SELECT application_name, count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND application_name LIKE 'toilbox %'"
                    " GROUP BY 1"
                ).fetchall():
                    connections[name] = max(connections.get(name, 0), count)
                time.sleep(0.5)
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=60)
        lags, fired = [], []
        for host in "abc":
            for line in (root / f"{host}.log").read_text().splitlines():
                event = json.loads(line)
                if event.get("event") == "task.fired" and event["scheduled_for"] >= utc_iso(
                    began
                ):
                    lags.append(event["dispatch_lag_ms"])
                    fired.append((event["task"], event["scheduled_for"]))
        from toilbox.store.postgres import PostgresStore

        store = PostgresStore.open(db.url)
        runs = [r for r in store.history(limit=10_000_000) if r.started_at >= utc_iso(began)]
        store.close()
        finished = [(r.task, r.scheduled_for) for r in runs if r.status == "ok"]
        missed = [r for r in runs if r.status == "missed"]
        doubles = len(finished) - len(set(finished))
        bare = _bare_burst(tasks)
        shape = ("every 50 to 70 s, each its own (about 17 fires a second)" if cron == "spread"
                 else f"on '{cron}' (all at once)")
        print(f"\n3 daemons, {tasks} fleet tasks {shape}, {minutes} minute(s), {len(fired)}"
              " fires")
        print(f"{'':<40} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
        print(f"{'bare APScheduler, 1,000 jobs at once':<40} {percentile(bare, 50):>8.2f}"
              f" {percentile(bare, 99):>8.2f} {max(bare):>8.2f}")
        print(f"{'toilbox: slot to claimed and handed on':<40} {percentile(lags, 50):>8.2f}"
              f" {percentile(lags, 99):>8.2f} {max(lags):>8.2f}")
        print(f"fired {len(fired)}, distinct {len(set(fired))}; runs ok {len(finished)};"
              f" double {doubles}; missed records {len(missed)}")
        print(f"PostgreSQL connections per daemon, most seen: {connections}")
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
        db.drop()


# -- startup -----------------------------------------------------------------------------


def _ready(config: Path, host: str) -> tuple[float, int]:
    started = time.perf_counter()
    env = {**os.environ, "TOILBOX_HOST_ID": host}
    process = subprocess.Popen([*TOILBOX, "-c", str(config), "--log-format", "json", "daemon"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
                               text=True)
    assert process.stderr is not None
    ready = None
    for line in process.stderr:
        if '"daemon.started"' in line:
            ready = time.perf_counter() - started
            break
    rss = 0
    for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) // 1024
    process.terminate()
    threading.Thread(target=process.stderr.read, daemon=True).start()
    process.wait(timeout=120)
    assert ready is not None
    return ready, rss


def startup(tasks: int = 10_000, runs: int = 3) -> None:
    db = Database()
    root = Path(tempfile.mkdtemp(prefix="toilbox-bench-startup-"))
    try:
        hourly = "every 1h"  # as bench_daemon.py's start-up; nothing fires meanwhile
        (root / "sqlite").mkdir()
        (root / "pg").mkdir()
        sqlite = _workspace(root / "sqlite", "a", None, tasks, "host", hourly)
        pg = _workspace(root / "pg", "a", db.url, tasks, "fleet", hourly)
        print(f"\n`toilbox daemon` with {tasks} tasks, start to READY, median of {runs}")
        for name, config in (("SQLite", sqlite), ("PostgreSQL (fleet tasks)", pg)):
            results = sorted(_ready(config, "a") for _ in range(runs))
            ready, rss = results[len(results) // 2]
            print(f"{name:<26} {ready:>6.2f} s   RSS {rss} MiB")
    finally:
        db.drop()


if __name__ == "__main__":
    parts = sys.argv[1:] or ["claims", "daemons", "burst", "startup"]
    for part in parts:
        {"claims": claims, "daemons": daemons, "startup": startup,
         "burst": lambda: daemons(cron="* * * * *")}[part]()
