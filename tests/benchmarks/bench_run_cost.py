"""The daemon's cost per run, against bare APScheduler and a bare fork, in one run (issue 14).

    python tests/benchmarks/bench_run_cost.py [--fires 1000] [--rate 200] [--burst 1000]
        [--rounds 3] [--write-docs docs/performance.md]

- cost:  CPU time per run of a no-op check through the whole daemon path, from the
         processes' own accounting (/proc/PID/stat: user + system, the zygote's reaped
         children included, which is every attempt's reaper and plugin process), split
         into the daemon (and its threads), the zygote and the attempt's two processes.
         Beside it: bare APScheduler's CPU per job (a BackgroundScheduler running a no-op
         on a ThreadPoolExecutor) and a bare ``fork()`` + ``waitpid()`` of a process
         holding the same config and plugins (the floor of any process per run).
         Goal: at most 2 ms of CPU per run outside the task itself.
- lag:   the same fires, ``--fires`` of them at ``--rate`` a second, each its own task:
         lag to dispatch (slot claimed, run handed to a worker) and to the child's start
         (the task function entered), and fires missed; bare APScheduler's lag to the job
         beside it.  Goal: child start p99 < 25 ms at 200 fires/s, no fire missed.
- burst: ``--burst`` tasks due in the same instant: the daemon's throughput, runs/s
         from the first fire to the last finish (goal: >= 500 runs/s on 2 cores).

Each measurement runs in a fresh process; the rounds alternate toilbox and its baselines
so both see the same machine load.  Medians over the rounds are reported.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _common import percentile, write_docs

TICK = os.sysconf("SC_CLK_TCK")

NOOP_PLUGIN = '''
import time
from pydantic import BaseModel
import toilbox

class Params(BaseModel):
    pass

def noop(ctx, params):
    """Do nothing; say how late the child started and what it had used by then."""
    if ctx.scheduled_for is not None:
        lag = (ctx.now() - ctx.scheduled_for).total_seconds()
        ctx.log.info("bench.child_started", child_lag_ms=lag * 1000,
                     child_cpu_ms=time.process_time() * 1000)
    return toilbox.Result(toilbox.Status.OK, "nothing done")

@toilbox.hookimpl
def register_task_types(register):
    register("check.noop", noop, params=Params)
'''


# -- reading the kernel's accounting ----------------------------------------------------

def proc_cpu(pid: int | str = "self") -> tuple[float, float]:
    """(own, reaped children's) user + system seconds of a process, all its threads."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2:].split()
    # utime, stime, cutime, cstime are fields 14-17 of stat(5); here 11-14 after the comm.
    utime, stime, cutime, cstime = (int(v) for v in fields[11:15])
    return (utime + stime) / TICK, (cutime + cstime) / TICK


def child_faults(pid: int) -> int:
    """Minor page faults of a process's reaped children (cminflt: every attempt's)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return int(text[text.rindex(")") + 2:].split()[8])


def thread_cpu() -> dict[int, float]:
    """CPU seconds of each live thread of this process (ns precision: schedstat)."""
    out = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            out[int(task.name)] = int((task / "schedstat").read_text().split()[0]) / 1e9
        except (FileNotFoundError, ProcessLookupError):
            continue
    return out


def thread_kind(name: str) -> str:
    if name.startswith("toilbox-run"):
        return "workers"
    if name.startswith("toilbox-dispatch"):
        return "dispatcher"
    if name == "MainThread":
        return "main"
    if "APScheduler" in name or name.startswith("Thread-"):
        return "scheduler"
    return "other"


# -- toilbox ------------------------------------------------------------------------------

def workspace(root: Path, tasks: int, concurrent: int) -> Path:
    (root / "plugins.d").mkdir(parents=True)
    (root / "plugins.d" / "noop.py").write_text(NOOP_PLUGIN)
    config = root / "toilbox.yaml"
    lines = "".join(f"  t{i}: {{uses: check.noop, schedule: '@yearly'}}\n" for i in range(tasks))
    config.write_text(f"state_dir: {root / 'state'}\nplugin_dirs: [{root / 'plugins.d'}]\n"
                      f"max_concurrent: {concurrent}\ntasks:\n{lines}")
    return config


def toilbox_worker(root: Path, fires: int, rate: float, concurrent: int) -> dict[str, Any]:
    """Fire ``fires`` runs at ``rate``/s (0: all at once) through a real Daemon; measure.

    At a rate, ``rate`` tasks each fire once a second (200 tasks, every 1 s); all at once,
    ``fires`` tasks fire once each.  Every task runs once first, unmeasured, so that what
    a task's first run creates (its lock file, its state) is not counted as per run.
    """
    from apscheduler.triggers.date import DateTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    from toilbox import log
    from toilbox.daemon import Daemon, _never_called

    tasks = min(fires, int(rate)) if rate else fires
    config = workspace(root, tasks, concurrent)
    log_path = root / "daemon.log"
    with log_path.open("w") as log_file:
        # As a daemon under systemd logs: JSON lines, info level, the children's too.
        log.configure("json", "info", log_file)
        saved_stderr = os.dup(2)
        os.dup2(log_file.fileno(), 2)
        daemon = Daemon(str(config))
        daemon.start()
        assert daemon.zygote is not None
        zygotes = [daemon.zygote.pid] + ([daemon.zygote._spare.pid]
                                         if daemon.zygote._spare is not None else [])
        warm = datetime.now(UTC) - timedelta(hours=1)
        for i in range(tasks):
            daemon._dispatch(daemon.app, daemon.app.tasks[f"t{i}"], [warm], "schedule", warm)
            while len(daemon.running) >= concurrent:
                time.sleep(0.001)
        while daemon.running:
            time.sleep(0.01)
        log_file.flush()
        warm_lines = sum(1 for _ in log_path.open())
        start = time.time() + 1.0
        for i in range(tasks):
            first = datetime.fromtimestamp(start + (i / rate if rate else 0.0), UTC)
            if rate:
                rounds = fires // tasks
                trigger: Any = IntervalTrigger(seconds=tasks / rate, start_date=first,
                                               end_date=first + timedelta(
                                                   seconds=(rounds - 0.5) * tasks / rate))
            else:
                trigger = DateTrigger(first)
            daemon.scheduler.add_job(_never_called, trigger, id=f"t{i}", replace_existing=True)
        last_fire = start + (fires - 1) / rate + 0.5 if rate else start + 0.5
        time.sleep(max(0.0, start - time.time() - 0.2))
        threads_before = thread_cpu()
        before = [proc_cpu()] + [proc_cpu(z) for z in zygotes]
        faults_before = sum(child_faults(z) for z in zygotes)
        wall_start = time.perf_counter()
        deadline = time.monotonic() + 120 + (fires / rate if rate else 0)
        settled = 0  # fires run or skipped (their task still running)
        with log_path.open("rb") as tail:
            tail.seek(0, os.SEEK_END)
            while time.monotonic() < deadline:
                time.sleep(0.05)
                chunk = tail.read()
                settled += chunk.count(b'"run.finished"') + chunk.count(b'"slot.skipped"')
                if settled >= fires and time.time() > last_fire and not daemon.running:
                    break
        wall = time.perf_counter() - wall_start
        after = [proc_cpu()] + [proc_cpu(z) for z in zygotes]
        faults = sum(child_faults(z) for z in zygotes) - faults_before
        threads_after = thread_cpu()
        names = {t.native_id: t.name for t in threading.enumerate()}
        daemon.shutdown(grace=5)
        os.dup2(saved_stderr, 2)
        os.close(saved_stderr)
    by_thread: dict[str, float] = {}
    for tid, used in threads_after.items():
        kind = thread_kind(names.get(tid, "?"))
        by_thread[kind] = by_thread.get(kind, 0.0) + used - threads_before.get(tid, 0.0)
    dispatch, child, child_cpu, finished, first_fire, last_finish = [], [], [], 0, None, None
    skipped = 0
    for line in log_path.read_text().splitlines()[warm_lines:]:
        event = json.loads(line)
        name = event["event"]
        if name == "task.fired":
            dispatch.append(event["dispatch_lag_ms"])
            first_fire = first_fire or event["timestamp"]
        elif name == "bench.child_started":
            child.append(event["child_lag_ms"])
            child_cpu.append(event["child_cpu_ms"])
        elif name in ("slot.skipped", "slots.missed"):
            skipped += event.get("count", 1)
        elif name == "run.finished" and event["status"] == "ok":
            finished += 1
            last_finish = event["timestamp"]
    span = (datetime.fromisoformat(last_finish) - datetime.fromisoformat(first_fire)
            ).total_seconds() if first_fire and last_finish else float("nan")
    return {
        "runs": finished,
        "fires": fires,
        "skipped": skipped,
        "wall_s": wall,
        "span_s": span,
        # The main thread is this benchmark's (a daemon's only waits for signals).
        "daemon_s": after[0][0] - before[0][0] - by_thread.pop("main", 0.0),
        "zygote_s": sum(a[0] - b[0] for a, b in zip(after[1:], before[1:], strict=True)),
        "attempts_s": sum(a[1] - b[1] for a, b in zip(after[1:], before[1:], strict=True)),
        "threads_s": by_thread,
        "child_cpu_ms": statistics.median(child_cpu) if child_cpu else float("nan"),
        "attempt_faults": faults,
        "dispatch_ms": dispatch,
        "child_ms": child,
        "log_lines": sum(1 for _ in log_path.open()) - warm_lines,
    }


# -- baselines ------------------------------------------------------------------------------

def apscheduler_worker(fires: int, rate: float) -> dict[str, Any]:
    """Bare APScheduler, a ThreadPoolExecutor(20) running a no-op, the same fires."""
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
        when = start + (i / rate if rate else 0.0)
        scheduler.add_job(job, DateTrigger(datetime.fromtimestamp(when, UTC)), args=(when,))
    time.sleep(max(0.0, start - time.time() - 0.2))
    before = proc_cpu()[0]
    wall_start = time.perf_counter()
    done.wait(fires / (rate or 1e9) + 60)
    wall = time.perf_counter() - wall_start
    used = proc_cpu()[0] - before
    scheduler.shutdown()
    return {"runs": len(lags), "fires": fires, "cpu_s": used, "wall_s": wall, "lag_ms": lags}


def fork_worker(root: Path, count: int) -> dict[str, Any]:
    """fork() + waitpid() of a process holding the daemon's config and plugins: the child
    exits at once.  The floor of any design that gives each run a process."""
    from toilbox.app import load_app

    app = load_app(str(workspace(root, 1000, 8)))
    assert app.plugins.task_types
    own, children = proc_cpu()
    started = time.perf_counter()
    for _ in range(count):
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
    wall = time.perf_counter() - started
    own2, children2 = proc_cpu()
    # The shape of an attempt with no work in it: a child (the reaper) that forks a child
    # (the plugin's process) and waits for it.
    for _ in range(count):
        pid = os.fork()
        if pid == 0:
            inner = os.fork()
            if inner == 0:
                os._exit(0)
            os.waitpid(inner, 0)
            os._exit(0)
        os.waitpid(pid, 0)
    own3, children3 = proc_cpu()
    rss = int(Path("/proc/self/status").read_text().split("VmRSS:")[1].split()[0])
    return {"runs": count, "cpu_s": (own2 - own) + (children2 - children), "wall_s": wall,
            "pair_s": (own3 - own2) + (children3 - children2), "rss_kib": rss}


def in_fresh_process(kind: str, tree: Path | None = None, **kwargs: Any) -> dict[str, Any]:
    """One worker's figures, measured in a fresh process; toilbox imported from ``tree``
    (another checkout) when given."""
    import tempfile

    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = f"{tree}{os.pathsep}{tree / 'plugins'}"
    with tempfile.TemporaryDirectory(prefix="toilbox-bench-") as tmp:
        argv = [sys.executable, __file__, "--worker", kind, "--args",
                json.dumps({**kwargs, "root": str(Path(tmp) / "w")} if kind != "apscheduler"
                           else kwargs)]
        done = subprocess.run(argv, capture_output=True, text=True, check=False, cwd="/",
                              env=env)
        if done.returncode:
            raise SystemExit(f"{kind} worker failed:\n{done.stderr[-4000:]}")
        result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
        return result


# -- the report ---------------------------------------------------------------------------

def med(rounds: list[dict[str, Any]], key: Any) -> float:
    return statistics.median(key(r) for r in rounds)


def cost_ms(r: dict[str, Any]) -> float:
    return 1000 * (r["daemon_s"] + r["zygote_s"] + r["attempts_s"]) / max(1, r["runs"])


def report(results: dict[str, list[dict[str, Any]]], args: argparse.Namespace,
           loads: tuple[float, float]) -> str:
    lag, burst = results["lag"], results["burst"]
    bare, forks = results["apscheduler"], results["fork"]
    old_lag, old_burst = results["baseline lag"], results["baseline burst"]
    slower = results["slower"]

    def per(key: str) -> Any:
        return lambda r: 1000 * r[key] / max(1, r["runs"])

    def both(rounds: list[dict[str, Any]], olds: list[dict[str, Any]], key: Any,
             fmt: str = "{:.2f} ms", bold: bool = False) -> str:
        mark = "**" if bold else ""
        cell = f"{mark}{fmt.format(med(rounds, key))}{mark}"
        return f"{cell} | {fmt.format(med(olds, key))}" if olds else cell

    def pct(rounds: list[dict[str, Any]], key: str, q: float) -> Any:
        return lambda r: percentile(r[key], q)

    before = " | before (baseline tree)" if old_lag else ""
    tasks = min(args.fires, int(args.rate))
    kinds = sorted({k for r in lag for k in r["threads_s"]})
    lines = [
        f"A no-op check through the whole daemon path: {args.fires} fires at {args.rate:g}/s "
        f"({tasks} tasks, each every {tasks / args.rate:g} s, after one unmeasured run of "
        f"each), max_concurrent {args.concurrent}; each measurement in a fresh process, "
        f"medians of {args.rounds} rounds alternating toilbox and its baselines. CPU is user + "
        f"system time from `/proc/PID/stat`; the zygote's reaped children are every "
        f"attempt's reaper and plugin process. {os.cpu_count()} CPUs, Python "
        f"{sys.version.split()[0]}; load average {loads[0]:.1f} at the start, "
        f"{loads[1]:.1f} at the end (other work shares this machine: CPU times are less "
        f"sensitive to it than wall times, but not immune).",
        "",
        f"| CPU per run | toilbox{before} | bare baseline |",
        f"| --- | ---: |{' ---: |' if old_lag else ''} ---: |",
        f"| whole run (daemon + zygote + attempt) | {both(lag, old_lag, cost_ms, bold=True)} | "
        f"APScheduler job {med(bare, per('cpu_s')):.3f} ms |",
        f"| daemon process | {both(lag, old_lag, per('daemon_s'))} | |",
        *[f"| &nbsp;&nbsp;its {kind} thread(s) | "
          f"{both(lag, old_lag, lambda r, k=kind: 1000 * r['threads_s'].get(k, 0) / r['runs'])} |"
          f" |" for kind in kinds],
        f"| zygote (forks each attempt's reaper) | {both(lag, old_lag, per('zygote_s'))} | "
        f"fork() + waitpid() {med(forks, per('cpu_s')):.2f} ms "
        f"({med(forks, lambda r: r['rss_kib']) / 1024:.0f} MiB RSS, the daemon's image) |",
        f"| attempt: reaper + plugin process | {both(lag, old_lag, per('attempts_s'))} | "
        f"fork() of a child that forks a child, both exiting at once, as the zygote's "
        f"share plus the attempt's: {med(forks, per('pair_s')):.2f} ms |",
        f"| &nbsp;&nbsp;the plugin process's CPU when the task starts | "
        f"{both(lag, old_lag, lambda r: r['child_cpu_ms'])} | |",
        f"| log lines per run | {both(lag, old_lag, lambda r: r['log_lines'] / r['runs'], '{:.1f}')}"
        f" | |",
        "",
        f"| at {args.rate:g} fires/s | toilbox{before} | bare APScheduler | goal |",
        f"| --- | ---: |{' ---: |' if old_lag else ''} ---: | ---: |",
        f"| lag to dispatch p50 | {both(lag, old_lag, pct(lag, 'dispatch_ms', 50), '{:.1f} ms')} "
        f"| {med(bare, pct(bare, 'lag_ms', 50)):.1f} ms (to the job) | |",
        f"| lag to dispatch p99 | {both(lag, old_lag, pct(lag, 'dispatch_ms', 99), '{:.1f} ms')} "
        f"| {med(bare, pct(bare, 'lag_ms', 99)):.1f} ms (to the job) | |",
        f"| lag to child start p50 | {both(lag, old_lag, pct(lag, 'child_ms', 50), '{:.1f} ms')}"
        f" | | |",
        f"| lag to child start p99 | "
        f"{both(lag, old_lag, pct(lag, 'child_ms', 99), '{:.1f} ms', bold=True)} | | < 25 ms |",
        f"| fires not run (of {args.fires}; skipped: the task's run still waiting) | "
        f"{both(lag, old_lag, lambda r: r['fires'] - r['runs'], '{:.0f}')} | "
        f"{max(r['fires'] - r['runs'] for r in bare)} | 0 |",
        *([f"| at {args.slower} fires/s ({med(slower, lambda r: r['fires']):.0f}"
           f" fires): child start p50 / p99, fires not run | "
           f"{med(slower, pct(slower, 'child_ms', 50)):.1f} / "
           f"{med(slower, pct(slower, 'child_ms', 99)):.1f} ms, "
           f"{max(r['fires'] - r['runs'] for r in slower)} |{' |' if old_lag else ''} | |"]
          if slower else []),
        f"| {args.burst} tasks due at once: runs/s, first fire to last finish | "
        f"{both(burst, old_burst, lambda r: r['runs'] / r['span_s'], '{:.0f}', bold=True)} | "
        f"| >= 500 |",
        f"| &nbsp;&nbsp;CPU per run in that burst | {both(burst, old_burst, cost_ms)} | | "
        f"<= 2 ms |",
    ]
    whole, floor = med(lag, cost_ms), med(forks, per("pair_s"))
    attempt = med(lag, per("zygote_s")) + med(lag, per("attempts_s"))
    daemon = med(lag, per("daemon_s"))
    lines += [
        "",
        f"Where a run's {whole:.1f} ms go: {daemon:.1f} ms in the daemon (claiming the slot, "
        f"the run's two store writes, its lock, its log lines, supervising the attempt) and "
        f"{attempt:.1f} ms in the zygote and the attempt's two processes, of which "
        f"{floor:.1f} ms is the floor of that shape alone: a fork of the "
        f"{med(forks, lambda r: r['rss_kib']) / 1024:.0f} MiB image that forks again, both "
        f"exiting at once (copying page tables, Python's after-fork hooks, tearing the "
        f"address spaces down). The rest, {max(0.0, attempt - floor):.1f} ms, is the "
        f"attempt's own work, most of it page faults: each page an attempt writes is copied "
        f"from the zygote's ({med(lag, lambda r: r['attempt_faults'] / r['runs']):.0f} minor "
        f"faults a run in the attempt's processes). The goal of 2 ms per run is below "
        f"what one fork of this image costs here; it needs fewer forks per run, not a "
        f"faster path around them.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fires", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--burst", type=int, default=1000)
    parser.add_argument("--slower", type=int, default=100, help="also measure the lag at this "
                        "rate (fires/s), to show where the daemon keeps up (0: not)")
    parser.add_argument("--forks", type=int, default=2000)
    parser.add_argument("--concurrent", type=int, default=8, help="the daemon's max_concurrent")
    parser.add_argument("--rounds", type=int, default=int(os.environ.get("BENCH_ROUNDS", "3")))
    parser.add_argument("--write-docs", type=Path, help="write the figures into this file")
    parser.add_argument("--baseline", type=Path, help="another checkout (e.g. main's: git "
                        "archive main toilbox plugins | tar -x -C DIR) measured beside this one")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--args", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        kwargs = json.loads(args.args)
        if "root" in kwargs:
            kwargs["root"] = Path(kwargs["root"])
        worker = {"toilbox": toilbox_worker, "apscheduler": apscheduler_worker,
                  "fork": fork_worker}[args.worker]
        print(json.dumps(worker(**kwargs)))
        return
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    start_load = os.getloadavg()[0]
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {args.rounds} rounds, "
          f"load average {start_load:.1f} at the start", flush=True)
    results: dict[str, list[dict[str, Any]]] = {
        "lag": [], "burst": [], "apscheduler": [], "fork": [], "baseline lag": [],
        "baseline burst": [], "slower": []}
    for round_no in range(args.rounds):
        results["apscheduler"].append(in_fresh_process("apscheduler", fires=args.fires,
                                                       rate=args.rate))
        results["lag"].append(in_fresh_process("toilbox", fires=args.fires, rate=args.rate,
                                               concurrent=args.concurrent))
        results["fork"].append(in_fresh_process("fork", count=args.forks))
        results["burst"].append(in_fresh_process("toilbox", fires=args.burst, rate=0,
                                                 concurrent=args.concurrent))
        if args.slower:
            results["slower"].append(in_fresh_process(
                "toilbox", fires=args.fires * args.slower // int(args.rate), rate=args.slower,
                concurrent=args.concurrent))
        if args.baseline:
            results["baseline lag"].append(in_fresh_process(
                "toilbox", args.baseline, fires=args.fires, rate=args.rate,
                concurrent=args.concurrent))
            results["baseline burst"].append(in_fresh_process(
                "toilbox", args.baseline, fires=args.burst, rate=0, concurrent=args.concurrent))
        last = results["lag"][-1]
        print(f"  round {round_no + 1}: {cost_ms(last):.2f} ms CPU/run, child start p99 "
              f"{percentile(last['child_ms'], 99):.1f} ms, burst "
              f"{results['burst'][-1]['runs'] / results['burst'][-1]['span_s']:.0f} runs/s, "
              f"load {os.getloadavg()[0]:.1f}", flush=True)
    section = report(results, args, (start_load, os.getloadavg()[0]))
    print("\n" + section)
    if args.write_docs:
        write_docs(args.write_docs, "bench_run_cost", "The daemon's cost per run", section)


if __name__ == "__main__":
    main()
