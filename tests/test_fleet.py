"""Fleet mode as users run it: real daemons with their own host ids and state dirs,
one real PostgreSQL, real signals.  What each task really did is counted from the
ledger its runs write (tests/data/fleet_plugin.py), not only from the store."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import TOILBOX
from tests.fleet_support import (
    FleetDaemon,
    TcpProxy,
    ends_by_slot,
    fleet_config,
    ledger,
    pid_alive,
    wait_for,
)
from toilbox.models import HostInfo, now_iso
from toilbox.store.postgres import PostgresStore

pytestmark = pytest.mark.slow
SECONDS = float(os.environ.get("TOILBOX_FLEET_TEST_SECONDS", "125"))


def shared_runs(url: str, task: str | None = None, limit: int = 100_000) -> list:
    store = PostgresStore.open(url)
    try:
        return store.history(task, limit)
    finally:
        store.close()


def cli(config: Path, *args: str, host: str = "a") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TOILBOX_HOST_ID": host}
    return subprocess.run([*TOILBOX, "-c", str(config), *args], capture_output=True, text=True,
                          env=env, timeout=60, check=False)


@pytest.fixture
def daemons():
    started: list[FleetDaemon] = []
    yield started
    for daemon in started:
        daemon.stop(timeout=15)


def test_three_daemons_run_each_fleet_slot_once_and_every_host_task_everywhere(
    tmp_path, pg_url, daemons
):
    """120+ slots of a fleet task every second on three daemons, a host task on each, and
    the owner of a slower fleet check killed with SIGKILL mid-run, again and again."""
    tasks = (
        f"  tick: {{uses: check.mark, with: {{out: {tmp_path}/tick.jsonl}}, schedule: every 1s,"
        " scope: fleet, retry: {attempts: 1}}\n"
        f"  slow: {{uses: check.mark, with: {{out: {tmp_path}/slow.jsonl, sleep: 3}},"
        " schedule: every 5s, scope: fleet, retry: {attempts: 3, backoff: 0s}}\n"
    )
    tasks += (f"  here: {{uses: check.mark, with: {{out: '{tmp_path}/here-{{host}}.jsonl'}},"
              " schedule: every 1s}\n")
    for host in ("a", "b", "c"):
        daemon = FleetDaemon(fleet_config(tmp_path, pg_url, host, tasks), host, tmp_path)
        daemons.append(daemon.start())
    by_host = {d.host: d for d in daemons}
    began = time.time()
    killed: list[dict] = []
    while time.time() - began < SECONDS:
        time.sleep(min(20.0, max(0.0, SECONDS - (time.time() - began))))
        if time.time() - began > SECONDS - 15:
            break
        # The owner of a slow run still going: kill its daemon mid-run, start it again.
        def in_flight():
            ends = {line["run_id"] for line in ledger(tmp_path / "slow.jsonl")
                    if line["event"] == "end"}
            going = [line for line in ledger(tmp_path / "slow.jsonl")
                     if line["event"] == "start" and line["run_id"] not in ends
                     and pid_alive(line["pid"]) and time.time() - line["at"] < 2]
            return going[-1] if going else None
        wait_for(in_flight, 15, "a slow run in flight")
        victim = in_flight()
        by_host[victim["host"]].kill()
        killed.append(victim)
        time.sleep(1)
        by_host[victim["host"]].start()
    ended = time.time()
    for daemon in daemons:
        assert daemon.stop() == 0
    assert len(killed) >= max(2, int(SECONDS // 30))

    # Every fleet slot ran once: never twice, and none lost while a daemon was alive.
    ticks = ledger(tmp_path / "tick.jsonl")
    done = ends_by_slot(ticks)
    assert all(len(runs) == 1 for runs in done.values()), "a tick slot ran twice"
    runs = shared_runs(pg_url)
    skipped = {r.scheduled_for for r in runs if r.task == "tick" and r.status == "skipped"}
    missed = [r for r in runs if r.task == "tick" and r.status == "missed"]
    assert missed == [], [r.summary for r in missed]
    first = min(done)
    whole = _seconds(first, ended - 3)
    assert len(whole) >= SECONDS - 10
    unaccounted = [s for s in whole if s not in done and _utc(s) not in skipped]
    assert unaccounted == [], "a fleet slot neither ran nor was recorded skipped"

    # The killed checks were taken over (attempt 2) and never ran to an end twice.
    slow = ledger(tmp_path / "slow.jsonl")
    assert all(len(r) == 1 for r in ends_by_slot(slow).values()), "a slow slot ended twice"
    for victim in killed:
        again = [line for line in slow if line["slot"] == victim["slot"]
                 and line["event"] == "end"]
        assert again and again[0]["attempt"] == 2, victim  # by another daemon process
        record = next(r for r in runs if r.run_id == victim["run_id"])
        assert record.status == "unknown" and record.error["type"] == "abandoned"
        assert "taken over" in record.summary

    # No process was left behind by a killed daemon.
    assert [line["pid"] for line in ticks + slow if pid_alive(line["pid"])] == []

    # Host tasks ran on every host, each slot once per host, and their records arrived once.
    for host in ("a", "b", "c"):
        here = ledger(tmp_path / f"here-{host}.jsonl")
        per_slot = ends_by_slot(here)
        assert len(per_slot) >= SECONDS - 25 and all(len(v) == 1 for v in per_slot.values())
        stored = {r.run_id: r for r in runs if r.task == "here" and r.host == host}
        assert len(stored) == len([r for r in runs if r.task == "here" and r.host == host])
        ended = {line["run_id"] for line in here if line["event"] == "end"}
        assert ended <= set(stored), "every run the ledger saw arrived in the shared store"
        # A run whose daemon was killed as it ended is recorded abandoned, not lost.
        unfinished = [r for run_id, r in stored.items() if run_id in ended and r.status != "ok"]
        assert all(r.error and r.error["type"] == "abandoned" for r in unfinished), unfinished
        assert len(unfinished) <= len(killed)

    # The fleet view, history and report cover every host.
    config = tmp_path / "a.yaml"
    view = json.loads(cli(config, "fleet", "--json").stdout)
    assert sorted(h["host_id"] for h in view["hosts"]) == ["a", "b", "c"]
    assert view["config_mismatch"] == []
    only_b = json.loads(cli(config, "history", "--host", "b", "--limit", "50", "--json").stdout)
    assert only_b and {r["host"] for r in only_b} == {"b"}
    report = json.loads(cli(config, "report", "--window", "1h", "--format", "json").stdout)
    assert report["totals"]["runs"] >= 3 * (SECONDS - 25)


def _seconds(first: str, until: float) -> list[str]:
    from datetime import datetime, timedelta

    start = datetime.fromisoformat(first)
    out = []
    moment = start
    while moment.timestamp() < until:
        out.append(moment.isoformat())
        moment += timedelta(seconds=1)
    return out


def _utc(slot: str) -> str:
    from datetime import UTC, datetime

    return datetime.fromisoformat(slot).astimezone(UTC).isoformat(timespec="microseconds")


def test_a_stopped_daemon_is_fenced_and_its_late_writes_rejected(tmp_path, pg_url, daemons):
    tasks = (f"  long: {{uses: check.mark, with: {{out: {tmp_path}/long.jsonl, sleep: 12}},"
             " schedule: every 20s, scope: fleet, retry: {attempts: 2, backoff: 0s}}\n")
    for host in ("a", "b"):
        daemons.append(FleetDaemon(fleet_config(tmp_path, pg_url, host, tasks), host,
                                   tmp_path).start())
    by_host = {d.host: d for d in daemons}
    wait_for(lambda: ledger(tmp_path / "long.jsonl"), 30, "the long run to start")
    first = ledger(tmp_path / "long.jsonl")[0]
    stopped = by_host[first["host"]]
    stopped.signal(signal.SIGSTOP)
    wait_for(lambda: any(line["attempt"] == 2 for line in ledger(tmp_path / "long.jsonl")), 15,
             "the other daemon to take the run over")
    taken = next(line for line in ledger(tmp_path / "long.jsonl") if line["attempt"] == 2)
    assert taken["host"] != first["host"] and taken["slot"] == first["slot"]
    stopped.signal(signal.SIGCONT)
    wait_for(lambda: not pid_alive(first["pid"]), 6, "the stopped daemon to kill its own run")
    wait_for(lambda: any(line["event"] == "end" for line in ledger(tmp_path / "long.jsonl")),
             20, "the taken-over run to end")
    time.sleep(1)
    ends = [line for line in ledger(tmp_path / "long.jsonl") if line["event"] == "end"]
    assert [e["run_id"] for e in ends] == [taken["run_id"]], "only the new owner's run ended"
    runs = {r.run_id: r for r in shared_runs(pg_url, "long")}
    old = runs[first["run_id"]]
    assert old.status == "unknown" and old.error["type"] == "abandoned", old
    assert runs[taken["run_id"]].status == "ok" and runs[taken["run_id"]].attempts == 2
    assert stopped.events("fleet.fenced"), "the resumed daemon says it fenced its run"


def test_host_tasks_go_on_while_postgres_is_away_and_arrive_once(
    tmp_path, pg_url, pg_database, daemons
):
    proxy = TcpProxy(("127.0.0.1", 5432))
    try:
        url = proxy.url(pg_url)
        tasks = (
            f"  ftick: {{uses: check.mark, with: {{out: {tmp_path}/ftick.jsonl}},"
            " schedule: every 1s, scope: fleet}\n"
            f"  flong: {{uses: check.mark, with: {{out: {tmp_path}/flong.jsonl, sleep: 20}},"
            " schedule: every 30s, scope: fleet, on_missed: skip}\n"
            f"  htick: {{uses: check.mark, with: {{out: {tmp_path}/htick.jsonl}},"
            " schedule: every 1s}\n"
        )
        http = "http: {listen: 127.0.0.1:0}\n"
        daemon = FleetDaemon(fleet_config(tmp_path, url, "a", tasks, http), "a", tmp_path)
        daemons.append(daemon.start())
        port = daemon.events("http.listening")[0]["address"].rsplit(":", 1)[1]
        wait_for(lambda: ledger(tmp_path / "flong.jsonl"), 40, "the long fleet run to start")
        victim = ledger(tmp_path / "flong.jsonl")[0]
        time.sleep(2)
        proxy.cut()
        cut_at = time.time()
        # The in-flight fleet run is killed within fence_after (2 s) + the kill grace (2 s).
        wait_for(lambda: not pid_alive(victim["pid"]), 8, "the fleet run to self-fence")
        fenced_after = time.time() - cut_at
        wait_for(lambda: _healthz(port)[0] == 503, 10, "/healthz to report the store")
        assert "store failing" in _healthz(port)[1]
        host_lines = len(ledger(tmp_path / "htick.jsonl"))
        fleet_lines = len(ledger(tmp_path / "ftick.jsonl"))
        time.sleep(6)
        assert len(ledger(tmp_path / "htick.jsonl")) >= host_lines + 8, "host tasks go on"
        assert len(ledger(tmp_path / "ftick.jsonl")) <= fleet_lines + 2, "fleet tasks held"
        proxy.heal()
        healed_at = time.time()
        wait_for(lambda: _healthz(port)[0] == 200, 20, "/healthz to recover")
        wait_for(lambda: [line for line in ledger(tmp_path / "ftick.jsonl")
                          if line["at"] > healed_at], 15, "fleet tasks to run again")
        time.sleep(3)
        assert daemon.stop() == 0
    finally:
        proxy.close()
    assert fenced_after < 6
    assert daemon.events("store.failing") and daemon.events("slots.not_claimed")
    runs = shared_runs(pg_url)
    # Every host run the ledger saw arrived in the shared store, once.
    done = [line["run_id"] for line in ledger(tmp_path / "htick.jsonl") if line["event"] == "end"]
    stored = [r.run_id for r in runs if r.task == "htick"]
    assert len(stored) == len(set(stored))
    assert set(done) <= set(stored)
    # The fleet slots the outage cost are recorded once, as missed.
    missed = [r for r in runs if r.task == "ftick" and r.status == "missed"]
    assert len(missed) == 1 and missed[0].data["count"] >= 3
    # The fenced run is not left "running".
    assert next(r for r in runs if r.run_id == victim["run_id"]).status != "running"


def _healthz(port: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=3) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError as exc:
        return 0, str(exc)


@pytest.mark.skipif(not shutil.which("faketime"), reason="faketime not installed (Debian: faketime)")
def test_clock_skew_neither_claims_early_nor_twice(tmp_path, pg_url, daemons):
    tasks = (f"  tick: {{uses: check.mark, with: {{out: {tmp_path}/tick.jsonl}},"
             " schedule: every 1s, scope: fleet}\n")
    for host, skew in (("ahead", "+5s"), ("behind", "-5s"), ("right", None)):
        # The wall clock is off; the monotonic clock (for timeouts and waits) is not.
        prefix = ["env", "FAKETIME_DONT_FAKE_MONOTONIC=1", "faketime", "-f", skew] if skew else []
        daemon = FleetDaemon(fleet_config(tmp_path, pg_url, host, tasks), host, tmp_path, prefix)
        daemons.append(daemon.start())
    time.sleep(25)
    for daemon in daemons:
        daemon.stop()
    done = ends_by_slot(ledger(tmp_path / "tick.jsonl"))
    assert len(done) >= 15
    assert all(len(runs) == 1 for runs in done.values()), "no slot ran twice"
    import psycopg

    with psycopg.connect(pg_url) as conn:
        early = conn.execute(
            "SELECT count(*) FROM slots WHERE host = '' AND claimed_at < scheduled_for"
        ).fetchone()[0]
        claimed = conn.execute("SELECT count(*) FROM slots WHERE host = ''").fetchone()[0]
    assert claimed >= 15 and early == 0, "judged on the database's clock"
    assert any(d.events("clock.ahead_of_store") for d in daemons if d.host == "ahead")


def test_twenty_hosts_fixing_at_once_with_five_percent_fix_one(tmp_path, pg_url):
    store = PostgresStore.open(pg_url)
    try:
        for index in range(20):
            store.heartbeat(HostInfo(f"web-{index}", "m", "0", "x", now_iso(), now_iso(), True))
    finally:
        store.close()
    fixes = tmp_path / "fixes.jsonl"
    tasks = (
        f"  disk: {{uses: check.mark, with: {{out: {tmp_path}/checks.jsonl, status: critical}},"
        " remediate: {run: [clean], verify: false}}\n"
        f"  clean: {{uses: check.mark, with: {{out: {fixes}}}}}\n"
    )
    budget = "remediation: {max_hosts: 5%}\n"
    processes = []
    for index in range(20):
        config = fleet_config(tmp_path, pg_url, f"web-{index}", tasks, budget)
        env = {**os.environ, "TOILBOX_HOST_ID": f"web-{index}"}
        processes.append(subprocess.Popen([*TOILBOX, "-c", str(config), "--log-level", "info",
                                           "run", "disk"],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                          env=env))
    errors = [p.communicate(timeout=120)[1].decode() for p in processes]
    assert [p.returncode for p in processes] == [2] * 20, errors
    assert len([x for x in ledger(fixes) if x["event"] == "end"]) == 1, "exactly one fix ran"
    assert sum("fleet budget is spent" in e for e in errors) == 19


def test_an_in_flight_fleet_remediation_is_abandoned_not_rerun(tmp_path, pg_url, daemons):
    tasks = (
        f"  fcheck: {{uses: check.mark, with: {{out: {tmp_path}/check.jsonl, status: critical}},"
        " schedule: every 30s, scope: fleet, remediate: {run: [ffix], max: 1}}\n"
        f"  ffix: {{uses: check.mark, with: {{out: {tmp_path}/fix.jsonl, sleep: 15}},"
        " scope: fleet}\n"
    )
    for host in ("a", "b"):
        daemons.append(FleetDaemon(fleet_config(tmp_path, pg_url, host, tasks), host,
                                   tmp_path).start())
    wait_for(lambda: ledger(tmp_path / "fix.jsonl"), 45, "the fix to start")
    fix = ledger(tmp_path / "fix.jsonl")[0]
    next(d for d in daemons if d.host == fix["host"]).kill()
    wait_for(lambda: _status(pg_url, fix["run_id"]) != "running", 20, "the fix to be abandoned")
    time.sleep(3)
    record = next(r for r in shared_runs(pg_url, "ffix") if r.run_id == fix["run_id"])
    assert record.error["type"] == "abandoned", record
    assert len([x for x in ledger(tmp_path / "fix.jsonl") if x["event"] == "start"]) == 1
    assert not pid_alive(fix["pid"])


def _status(url: str, run_id: str) -> str | None:
    found = [r.status for r in shared_runs(url) if r.run_id == run_id]
    return found[0] if found else None


def test_a_differing_config_is_flagged_and_a_taken_host_id_refused(tmp_path, pg_url, daemons):
    tasks = "  t: {uses: check.mark, with: {out: /dev/null}, schedule: every 1h}\n"
    daemons.append(FleetDaemon(fleet_config(tmp_path, pg_url, "a", tasks), "a", tmp_path).start())
    other = tasks + "  u: {uses: check.mark, with: {out: /dev/null}, schedule: every 1h}\n"
    config_b = fleet_config(tmp_path, pg_url, "b", other)
    daemons.append(FleetDaemon(config_b, "b", tmp_path).start())
    view = json.loads(cli(config_b, "fleet", "--json", host="b").stdout)
    assert view["hosts_alive"] == 2
    assert len(view["config_mismatch"]) == 1
    shown = cli(config_b, "fleet", host="b").stdout
    assert "DIFFERS" in shown and "2 of 2 host(s) alive" in shown
    # A second daemon claiming host id "a" (another state dir) is refused, naming the holder.
    (tmp_path / "twin").mkdir()
    twin = fleet_config(tmp_path / "twin", pg_url, "a", tasks)
    env = {**os.environ, "TOILBOX_HOST_ID": "a"}
    refused = subprocess.run([*TOILBOX, "-c", str(twin), "daemon"], capture_output=True,
                             text=True, env=env, timeout=60, check=False)
    assert refused.returncode == 3
    assert 'host id "a" is in use by another daemon' in refused.stderr
    assert "Traceback" not in refused.stderr


def test_a_host_joining_the_fleet_brings_its_history(tmp_path, pg_url):
    """A host moved from SQLite to PostgreSQL: its own runs are shipped, once each."""
    tasks = f"  t: {{uses: check.mark, with: {{out: {tmp_path}/t.jsonl}}}}\n"
    config = fleet_config(tmp_path, pg_url, "solo", tasks)
    alone = config.read_text().replace(f'store: {{url: "{pg_url}"}}\n', "")
    single = tmp_path / "single.yaml"
    single.write_text(alone)
    for _ in range(3):
        assert cli(single, "run", "t", host="solo").returncode == 0
    before = {r["run_id"] for r in json.loads(cli(single, "history", "--json").stdout)}
    assert len(before) == 3
    joined = cli(config, "run", "t", host="solo")  # ships what waits when it is done
    assert joined.returncode == 0, joined.stderr
    again = cli(config, "run", "t", host="solo")
    assert again.returncode == 0, again.stderr
    shared = [r.run_id for r in shared_runs(pg_url, "t")]
    assert len(shared) == len(set(shared)) == 5
    assert before <= set(shared)
