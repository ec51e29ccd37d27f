"""The daemon against bare APScheduler 3.x, side by side in one run (issue 3).

    python tests/benchmarks/bench_daemon.py [lag] [startup] [idle] [soak]

- lag:     1,000 no-op fires spread over 5 s (200/s).  Lag to dispatch (slot claimed,
           run handed to a worker) and to child start, against bare APScheduler with a
           ThreadPoolExecutor running a no-op.  Goal: dispatch p99 < 5 ms, child start
           p99 < 25 ms, no fire missed.
- startup: 10,000 configured tasks: `toilbox daemon` start to READY=1 (sd_notify) and
           RSS, against bare APScheduler adding 10,000 interval jobs.  Goal: < 3 s, < 150 MB.
- idle:    1,000 cron tasks idle for 60 s: CPU used, against bare APScheduler holding the
           same 1,000 cron jobs.  Goal: < 0.1% of one core.
- soak:    20,000 no-op runs back to back through the daemon path: RSS growth from run
           1,000 to run 20,000 (goal < 10%), and the store's size per run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import daemon_to_ready, percentile, rss_kib

NOOP_PLUGIN = '''
from pydantic import BaseModel
import toilbox

class Params(BaseModel):
    pass

def noop(ctx, params):
    """Do nothing; say how late the child started."""
    if ctx.scheduled_for is not None:
        lag = (ctx.now() - ctx.scheduled_for).total_seconds()
        ctx.log.info("bench.child_started", child_lag_ms=lag * 1000)
    return toilbox.Result(toilbox.Status.OK, "nothing done")

@toilbox.hookimpl
def register_task_types(register):
    register("check.noop", noop, params=Params)
'''


def cpu_s(pid: int) -> float:
    """CPU time of every live thread, in ns precision (/proc/PID/stat counts 10 ms ticks)."""
    total_ns = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total_ns += int((task / "schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            continue  # a thread that ended meanwhile
    return total_ns / 1e9


def workspace(tasks: str, extra: str = "") -> tuple[Path, Path]:
    root = Path(tempfile.mkdtemp(prefix="toilbox-bench-"))
    (root / "plugins.d").mkdir()
    (root / "plugins.d" / "noop.py").write_text(NOOP_PLUGIN)
    config = root / "toilbox.yaml"
    config.write_text(f"state_dir: {root / 'state'}\nplugin_dirs: [{root / 'plugins.d'}]\n"
                      f"{extra}tasks:\n{tasks}")
    return root, config


def show(name: str, samples: list[float], unit: str = "ms") -> None:
    if not samples:
        print(f"  {name:<44} no samples")
        return
    print(f"  {name:<44} n={len(samples):<5} p50 {percentile(samples, 50):8.2f}{unit}"
          f"  p99 {percentile(samples, 99):8.2f}{unit}  max {max(samples):8.2f}{unit}")


# -- lag ----------------------------------------------------------------------------

def bench_lag(fires: int = 1000, spread_s: float = 5.0) -> None:
    print(f"lag: {fires} no-op fires spread over {spread_s:g} s")
    bare_lags = _bare_lag(fires, spread_s)
    show("bare APScheduler, ThreadPoolExecutor(20)", bare_lags)
    dispatch, child, finished = _toilbox_lag(fires, spread_s)
    show("toilbox: to dispatch (slot claimed)", dispatch)
    show("toilbox: to child start", child)
    print(f"  toilbox runs finished: {finished} of {fires} (missed: {fires - finished})")


def _bare_lag(fires: int, spread_s: float) -> list[float]:
    from apscheduler.executors.pool import ThreadPoolExecutor
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.triggers.date import DateTrigger

    lags: list[float] = []
    done = threading.Event()

    def job(when: float) -> None:
        lags.append((time.time() - when) * 1000)
        if len(lags) == fires:
            done.set()

    scheduler = BackgroundScheduler(executors={"default": ThreadPoolExecutor(20)},
                                    job_defaults={"misfire_grace_time": None})
    scheduler.start()
    start = time.time() + 1.0
    for i in range(fires):
        when = start + i * spread_s / fires
        scheduler.add_job(job, DateTrigger(datetime.fromtimestamp(when, UTC)), args=(when,))
    done.wait(spread_s + 30)
    scheduler.shutdown()
    return lags


def _toilbox_lag(fires: int, spread_s: float) -> tuple[list[float], list[float], int]:
    from apscheduler.triggers.date import DateTrigger

    from toilbox import log
    from toilbox.daemon import Daemon, _never_called

    tasks = "".join(f"  t{i}: {{uses: check.noop, schedule: '@yearly'}}\n" for i in range(fires))
    root, config = workspace(tasks, f"max_concurrent: {os.environ.get('BENCH_CONCURRENT', '8')}\n")
    log_path = root / "daemon.log"
    with log_path.open("w") as log_file:
        log.configure("json", "info", log_file)
        saved_stderr = os.dup(2)
        os.dup2(log_file.fileno(), 2)  # the children log to the inherited stderr
        daemon = Daemon(str(config))
        daemon.start()
        # Date triggers spread the fires; everything after the trigger is the daemon's path.
        start = time.time() + 2.0
        for i in range(fires):
            when = datetime.fromtimestamp(start + i * spread_s / fires, UTC)
            daemon.scheduler.add_job(_never_called, DateTrigger(when), id=f"t{i}",
                                     replace_existing=True)
        time.sleep(spread_s + 2.5)
        deadline = time.monotonic() + 60
        while daemon.running and time.monotonic() < deadline:
            time.sleep(0.1)
        daemon.shutdown(grace=5)
        os.dup2(saved_stderr, 2)
    dispatch, child = [], []
    for line in log_path.read_text().splitlines():
        event = json.loads(line)
        if event["event"] == "task.fired":
            dispatch.append(event["dispatch_lag_ms"])
        elif event["event"] == "bench.child_started":
            child.append(event["child_lag_ms"])
    store_runs = sum(1 for line in log_path.read_text().splitlines()
                     if '"event": "run.finished"' in line and '"status": "ok"' in line)
    return dispatch, child, store_runs


# -- startup ------------------------------------------------------------------------

def bench_startup(count: int = 10_000) -> None:
    print(f"startup: {count} configured tasks")
    code = textwrap.dedent(f"""
        import time, resource
        start = time.perf_counter()
        from apscheduler.schedulers.background import BackgroundScheduler
        s = BackgroundScheduler()
        for i in range({count}):  # added before start, as the daemon does
            s.add_job(print, "interval", hours=1, id=f"t{{i}}")
        s.start()
        took = time.perf_counter() - start
        rss = int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0])
        print(took, rss)
        s.shutdown()
    """)
    took, rss = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                               check=True).stdout.split()
    print(f"  {'bare APScheduler, interval jobs':<44} {float(took):6.2f} s   RSS {int(rss) / 1024:6.1f} MiB")
    tasks = "".join(f"  t{i}: {{uses: check.noop, schedule: every 1h}}\n" for i in range(count))
    root, config = workspace(tasks)
    ready = daemon_to_ready(root, config)
    print(f"  {'toilbox daemon (YAML + validation included)':<44} {ready['ready']:6.2f} s   RSS "
          f"{ready['rss'] / 1024:6.1f} MiB (+ zygote {ready['zygote'] / 1024:.1f} MiB, shared"
          " pages)")


# -- idle ---------------------------------------------------------------------------

def bench_idle(count: int = 1000, seconds: float = 60.0) -> None:
    print(f"idle: {count} cron tasks for {seconds:g} s (measured side by side)")
    code = textwrap.dedent(f"""
        import time
        from apscheduler.schedulers.background import BackgroundScheduler
        from apscheduler.triggers.cron import CronTrigger
        s = BackgroundScheduler()
        s.start()
        for i in range({count}):
            s.add_job(print, CronTrigger.from_crontab(f"{{i % 60}} 3 * * *"), id=f"t{{i}}")
        print("ready", flush=True)
        time.sleep(3600)
    """)
    bare = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert bare.stdout is not None
    bare.stdout.readline()
    tasks = "".join(f"  t{i}: {{uses: check.noop, schedule: '{i % 60} 3 * * *'}}\n"
                    for i in range(count))
    _root, config = workspace(tasks)
    toilbox_bin = str(Path(sys.executable).parent / "toilbox")
    daemon = subprocess.Popen([toilbox_bin, "-c", str(config), "daemon"],
                              stderr=subprocess.DEVNULL)
    time.sleep(5)  # past start-up
    before = {p.pid: cpu_s(p.pid) for p in (bare, daemon)}
    time.sleep(seconds)
    used = {p.pid: cpu_s(p.pid) - before[p.pid] for p in (bare, daemon)}
    for process in (bare, daemon):
        process.terminate()
        process.wait(timeout=60)
    for name, pid in (("bare APScheduler, cron jobs", bare.pid), ("toilbox daemon", daemon.pid)):
        share = 100 * used[pid] / seconds
        print(f"  {name:<44} {used[pid] * 1000:8.1f} CPU ms = {share:.4f}% of one core")


# -- soak ---------------------------------------------------------------------------

def bench_soak(runs: int = 20_000) -> None:
    from toilbox import log
    from toilbox.daemon import Daemon

    print(f"soak: {runs} no-op runs back to back through the daemon path")
    root, config = workspace("  noop: {uses: check.noop, schedule: every 1h}\n")
    with (root / "daemon.log").open("w") as log_file:
        log.configure("json", "warning", log_file)
        daemon = Daemon(str(config))
        daemon.start()
        task = daemon.app.tasks["noop"]
        base = datetime(2030, 1, 1, tzinfo=UTC)
        rss_at: dict[int, int] = {}
        started = time.perf_counter()
        for i in range(1, runs + 1):
            daemon._dispatch(daemon.app, task, [base + timedelta(seconds=i)], "schedule",
                             base)
            while daemon.running:
                time.sleep(0.0002)
            if i in (1000, runs // 2, runs):
                rss_at[i] = rss_kib(os.getpid())
        took = time.perf_counter() - started
        size = daemon.app.store().size_bytes()
        daemon.shutdown(grace=5)
    growth = 100 * (rss_at[runs] - rss_at[1000]) / rss_at[1000]
    print(f"  {runs / took:.0f} runs/s; RSS at run 1,000: {rss_at[1000] / 1024:.1f} MiB,"
          f" at {runs // 2:,}: {rss_at[runs // 2] / 1024:.1f} MiB,"
          f" at {runs:,}: {rss_at[runs] / 1024:.1f} MiB (growth {growth:+.1f}%)")
    print(f"  store: {size / 1024 / 1024:.1f} MiB for {runs} runs = {size / runs:.0f} bytes/run")


if __name__ == "__main__":
    chosen = sys.argv[1:] or ["lag", "startup", "idle", "soak"]
    for name in chosen:
        {"lag": bench_lag, "startup": bench_startup, "idle": bench_idle,
         "soak": bench_soak}[name]()
