"""One contract, every backend: the same tests against SQLite and PostgreSQL.

Each test opens real stores (a SQLite file; a schema of its own in a real PostgreSQL),
and the races run in real processes.  A backend that drifts from the contract fails here.
"""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from toilbox.errors import AlreadyRunning, StateError
from toilbox.models import Claim, HostInfo, Lease, RunRecord, SlotWanted, now_iso, utc_iso
from toilbox.store.base import Budget, Store
from toilbox.store.sqlite import SqliteStore

DATA = Path(__file__).parent / "data" / "sqlite_schemas"
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


@dataclass
class Backend:
    kind: str
    where: str  # a state dir, or a URL
    opened: list[Store]

    def open(self) -> Store:
        if self.kind == "sqlite":
            store: Store = SqliteStore.open(Path(self.where))
        else:
            from toilbox.store.postgres import PostgresStore

            store = PostgresStore.open(self.where)
        self.opened.append(store)
        return store


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request, tmp_path) -> Iterator[Backend]:
    where = str(tmp_path / "state") if request.param == "sqlite" else request.getfixturevalue(
        "pg_url"
    )
    found = Backend(request.param, where, [])
    yield found
    for store in found.opened:
        store.close()


@pytest.fixture
def store(backend) -> Store:
    return backend.open()


def at(minutes: float) -> str:
    return utc_iso(T0 + timedelta(minutes=minutes))


def run(
    run_id: str,
    task: str = "t",
    status: str = "running",
    minute: float = 0,
    host: str = "h1",
    **changes,
) -> RunRecord:
    record = RunRecord(
        run_id=run_id,
        task=task,
        task_type="check.x",
        status=status,
        trigger="schedule",
        started_at=at(minute),
        hostname="machine",
        pid=1,
        host=host,
    )
    return replace(record, **changes)


def finished(record: RunRecord, status: str = "ok", **changes) -> RunRecord:
    values = {"finished_at": record.started_at, "attempts": 1, "duration_s": 0.5,
              "summary": f"{status} now", "metrics": {"x": {"value": 1}}, "data": {"k": [1, 2]}}
    return replace(record, status=status, **{**values, **changes})


# -- runs -----------------------------------------------------------------------------------


def test_a_run_is_written_when_it_starts_and_again_when_it_ends(store):
    started = run("r1", scheduled_for=at(0))
    store.start_run(started)
    assert store.get("r1") == started
    done = finished(started, error={"type": "exception", "message": "m"}, details="long\ntext")
    assert store.finish_run(done) is True
    assert store.get("r1") == done
    assert store.get("nope") is None


def test_a_finish_is_rejected_once_the_run_is_no_longer_running(store):
    store.start_run(run("r1"))
    assert store.mark_abandoned("r1", "abandoned: taken over") is True
    assert store.finish_run(finished(run("r1"))) is False, "a fenced owner's late write"
    kept = store.get("r1")
    assert kept.status == "unknown"
    assert kept.error == {"type": "abandoned", "message": "abandoned: taken over"}
    assert store.mark_abandoned("r1", "again") is False


def test_timestamps_are_utc_instants_whatever_offset_they_came_with(store):
    paris = datetime(2026, 11, 1, 13, 0, tzinfo=UTC).astimezone()
    store.start_run(run("r1", scheduled_for=utc_iso(paris)))
    assert store.get("r1").scheduled_for == "2026-11-01T13:00:00.000000+00:00"


def test_history_is_newest_first_and_filters_by_task_and_host(store):
    for i in range(5):
        store.record(finished(run(f"a{i}", task="a", minute=i, host="h1" if i % 2 else "h2")))
        store.record(finished(run(f"b{i}", task="b", minute=i + 0.5)))
    assert [r.run_id for r in store.history(limit=3)] == ["b4", "a4", "b3"]
    assert [r.run_id for r in store.history("a")] == ["a4", "a3", "a2", "a1", "a0"]
    assert [r.run_id for r in store.history("a", host="h1")] == ["a3", "a1"]
    assert [r.run_id for r in store.history(host="h2", limit=2)] == ["a4", "a2"]


def test_last_runs_skips_what_never_ran(store):
    store.record(finished(run("a1", task="a", minute=1)))
    store.record(finished(run("a2", task="a", minute=2), status="skipped"))
    store.record(finished(run("b1", task="b", minute=1), status="critical"))
    store.record(finished(run("c1", task="c", minute=1, host="h2")))
    last = store.last_runs(["a", "b", "c", "never"])
    assert {t: r.run_id for t, r in last.items()} == {"a": "a1", "b": "b1", "c": "c1"}
    assert set(store.last_runs(["a", "c"], host="h1")) == {"a"}
    assert store.last_success_times(["a", "b"]) == {"a": at(1)}


def test_children_running_and_windows(store):
    store.record(finished(run("p", minute=1)))
    store.record(finished(run("fix", task="fix", minute=2, trigger="remediation",
                              parent_run_id="p")))
    store.start_run(run("verify", minute=3, trigger="verify", parent_run_id="p"))
    store.start_run(run("elsewhere", task="u", minute=3, host="h2"))
    store.start_run(run("fleet", task="f", minute=3, host="h2", scope="fleet"))
    assert [r.run_id for r in store.children("p")] == ["fix", "verify"]
    assert {r.run_id for r in store.running("h1")} == {"verify"}
    assert [r.run_id for r in store.running_fleet("f")] == ["fleet"]
    assert [r.run_id for r in store.runs_between(at(1.5), at(3))] == ["fix"]
    before = store.last_runs_before(at(2.5))
    assert {t: r.run_id for t, r in before.items()} == {"t": "p", "fix": "fix"}


def test_the_status_pages_reads(store):
    recent = datetime.now(UTC) - timedelta(hours=1)
    for index, status in enumerate(["ok", "critical", "ok", "warning", "skipped"]):
        started = utc_iso(recent + timedelta(minutes=index))
        record = finished(run(f"a{index}", task="a", started_at=started), status=status,
                          output="x" * 1000)
        store.record(record)
    store.record(finished(run("m", task="a", started_at=utc_iso(recent)), status="missed",
                          data={"count": 7}))
    store.start_run(run("lost", task="b", started_at=now_iso()))
    store.mark_abandoned("lost", "abandoned: gone")
    store.record(finished(run("other", task="a", host="h2", started_at=now_iso())))
    strip = store.run_strips(["a", "b", "none"], 3, host="h1")
    assert [r.run_id for r in strip["a"]] == ["a4", "a3", "a2"]
    assert strip["a"][0].status == "skipped" and strip["a"][2].summary == "ok now"
    assert [r.run_id for r in strip["b"]] == ["lost"] and strip["none"] == []
    assert strip["b"][0].error_type == "abandoned"
    assert [r.run_id for r in store.run_strips(["a"], 1)["a"]] == ["other"]
    last = store.last_with_status(["a", "b"], ["ok", "critical", "warning"], host="h1")
    assert {s: r.run_id for s, r in last["a"].items()} == {
        "ok": "a2", "critical": "a1", "warning": "a3"}
    assert "b" not in last
    since = utc_iso(recent - timedelta(minutes=1))
    assert store.notable_since(since) == {"missed": 7, "skipped": 1, "abandoned": 1}
    assert store.notable_since(since, host="h2") == {"missed": 0, "skipped": 0, "abandoned": 0}


# -- slots and leases ------------------------------------------------------------------------


def test_a_slot_is_claimed_once_per_host_and_once_for_the_fleet(store):
    assert store.claim_slot("t", at(0), "every 1m UTC", "me", "h1") is True
    assert store.claim_slot("t", at(0), "every 1m UTC", "again", "h1") is False
    assert store.claim_slot("t", at(0), "every 1m UTC", "other host", "h2") is True
    assert store.claim_slot("t", at(0), "every 1m UTC", "fleet") is True
    assert store.claim_slot("t", at(1), "every 1m UTC", "me", "h1") is True
    assert store.last_slot("t", "h1") == (at(1), "every 1m UTC")
    assert store.last_slot("t") == (at(0), "every 1m UTC")
    assert store.last_slot("other", "h1") is None
    assert store.last_slots(["t", "other"], "h1") == {"t": (at(1), "every 1m UTC")}
    assert store.last_slots(["t"]) == {"t": (at(0), "every 1m UTC")}


def lease(store: Store, task: str = "t", slot: str | None = None, attempt: int = 1) -> Lease:
    return Lease(f"task:{task}", store.owner, f"pid {os.getpid()} test", task, slot, "schedule",
                 attempt)


def test_a_fleet_slot_comes_with_the_tasks_lease(backend):
    one, two = backend.open(), backend.open()
    past = utc_iso(datetime.now(UTC) - timedelta(seconds=5))
    won = one.claim_fleet_slot("t", past, "s", lease(one, slot=past), 30)
    assert won.outcome is Claim.WON
    assert two.claim_fleet_slot("t", past, "s", lease(two, slot=past), 30).outcome is Claim.LOST
    later = utc_iso(datetime.now(UTC) - timedelta(seconds=1))
    busy = two.claim_fleet_slot("t", later, "s", lease(two, slot=later), 30)
    assert busy.outcome is Claim.BUSY
    assert busy.holder == f"pid {os.getpid()} test"
    one.release_lease("task:t", one.owner)
    again = utc_iso(datetime.now(UTC))
    assert two.claim_fleet_slot("t", again, "s", lease(two, slot=again), 30).outcome is Claim.WON
    held = two.lease("task:t")
    assert (held.owner, held.scheduled_for, held.trigger, held.attempt) == (
        two.owner, again, "schedule", 1)


def test_a_fleet_slot_is_not_claimed_before_the_database_says_it_is_due(store):
    soon = utc_iso(datetime.now(UTC) + timedelta(seconds=30))
    early = store.claim_fleet_slot("t", soon, "s", lease(store, slot=soon), 30)
    assert early.outcome is Claim.EARLY
    assert 25 < early.early_s <= 30
    assert store.last_slot("t") is None, "an early claim leaves no trace"
    assert store.claim_slot("t", soon, "s", "skipped") is False, "not even to skip it"
    assert store.claim_slot("t", soon, "s", "me", "h1") is True, "a host's own slot is its own"


def test_claims_come_in_batches_with_one_answer_each(backend):
    one, two = backend.open(), backend.open()
    past = [utc_iso(datetime.now(UTC) - timedelta(seconds=s)) for s in (30, 20, 10)]
    soon = utc_iso(datetime.now(UTC) + timedelta(seconds=30))
    assert one.claim_slot("c", past[0], "s", "other")
    wanted = [
        SlotWanted("a", past[0], "s", "me", "h1"),
        SlotWanted("a", soon, "s", "me", "h1"),  # a host's own slot: claimed whenever
        SlotWanted("b", past[1], "s", "me"),
        SlotWanted("b", soon, "s", "me"),  # a fleet slot, not yet due: refused
        SlotWanted("c", past[0], "s", "me"),  # taken before
    ]
    assert one.claim_slots(wanted) == [True, True, True, False, False]
    assert one.claim_slots([]) == []
    assert one.acquire_lease(lease(one, "busy"), 30)
    claims = two.claim_fleet_slots(
        [
            ("won", past[2], "s", lease(two, "won", past[2])),
            ("busy", past[2], "s", lease(two, "busy", past[2])),
            ("c", past[0], "s", lease(two, "c", past[0])),
            ("early", soon, "s", lease(two, "early", soon)),
        ],
        30,
    )
    assert [c.outcome for c in claims] == [Claim.WON, Claim.BUSY, Claim.LOST, Claim.EARLY]
    assert claims[1].holder == f"pid {os.getpid()} test"
    assert 25 < claims[3].early_s <= 30
    assert two.lease("task:won").owner == two.owner


def test_leases_renew_expire_and_move_once(backend):
    one, two, three = backend.open(), backend.open(), backend.open()
    assert one.acquire_lease(lease(one), 0.5) is True
    assert two.acquire_lease(lease(two), 30) is False
    assert one.renew_leases(one.owner, ["task:t", "task:other"], 0.5) == ["task:t"]
    assert one.renew_leases(one.owner, [], 0.5) == [], "only the leases named"
    assert one.lease_holder("task:t") == f"pid {os.getpid()} test"
    assert two.expired_leases(0) == []
    import time

    time.sleep(0.7)
    assert one.lease_holder("task:t") is None, "an expired lease holds nothing"
    expired = two.expired_leases(0)
    assert [x.name for x in expired] == ["task:t"]
    assert two.expired_leases(60) == [], "not yet past the grace"
    results = [two.take_over(expired[0], two.owner, "two", 30),
               three.take_over(expired[0], three.owner, "three", 30)]
    winners = [r for r in results if r is not None]
    assert len(winners) == 1 and winners[0].attempt == 2
    assert one.renew_leases(one.owner, ["task:t"], 30) == [], "the old owner lost the lease"


@pytest.mark.parametrize("how", ["claim_fleet_slot", "claim_fleet_slots", "acquire_lease"])
def test_a_task_lease_taken_after_it_lapsed_ends_the_old_holders_run(backend, how):
    """Taking a lapsed lease by a new claim (before any sweep took it over) leaves no run
    of the old holder shown as running for ever: nobody holds it any more."""
    import time

    one, two = backend.open(), backend.open()
    past = utc_iso(datetime.now(UTC) - timedelta(seconds=10))
    assert one.claim_fleet_slot("t", past, "s", lease(one, slot=past), 0.3).outcome is Claim.WON
    one.start_run(run("old", scope="fleet", scheduled_for=past, started_at=now_iso()))
    one.start_run(run("mine", task="u", scope="fleet", started_at=now_iso()))
    one.start_run(run("here", scope="host", started_at=now_iso()))
    later = utc_iso(datetime.now(UTC) - timedelta(seconds=5))
    assert two.claim_fleet_slot("t", later, "s", lease(two, slot=later), 30).outcome is Claim.BUSY
    assert two.get("old").status == "running", "a live lease keeps its run"
    time.sleep(0.5)
    now = utc_iso(datetime.now(UTC) - timedelta(seconds=1))
    if how == "claim_fleet_slot":
        assert two.claim_fleet_slot("t", now, "s", lease(two, slot=now), 30).outcome is Claim.WON
    elif how == "claim_fleet_slots":
        claims = two.claim_fleet_slots(
            [("t", now, "s", lease(two, slot=now)), ("v", now, "s", lease(two, "v", now))], 30)
        assert [c.outcome for c in claims] == [Claim.WON, Claim.WON]
    else:
        assert two.acquire_lease(lease(two), 30) is True
    ended = two.get("old")
    assert ended.status == "unknown"
    assert ended.error["type"] == "abandoned"
    assert f"pid {os.getpid()} test stopped renewing its lease" in ended.summary
    assert one.finish_run(finished(run("old"))) is False, "the old holder's late end is refused"
    assert two.get("mine").status == "running", "another task's run is not touched"
    assert two.get("here").status == "running", "nor a host run of the same task"


def test_our_own_lapsed_lease_taken_again_leaves_our_run_to_us(backend):
    """The store was away as our run ended: its end waits to be written, and our lease
    lapsed meanwhile.  Our next claim must not write that run off: the late end lands."""
    import time

    one = backend.open()
    past = utc_iso(datetime.now(UTC) - timedelta(seconds=10))
    assert one.claim_fleet_slot("t", past, "s", lease(one, slot=past), 0.3).outcome is Claim.WON
    one.start_run(run("ours", scope="fleet", scheduled_for=past, started_at=now_iso()))
    time.sleep(0.5)
    now = utc_iso(datetime.now(UTC) - timedelta(seconds=1))
    assert one.claim_fleet_slot("t", now, "s", lease(one, slot=now), 30).outcome is Claim.WON
    assert one.get("ours").status == "running"
    assert one.finish_run(finished(run("ours"), status="critical")) is True
    assert one.get("ours").status == "critical"


def test_hosts_say_who_is_alive_and_what_they_ran(store):
    host = HostInfo("h1", "machine", "0.1.0", "abc", now_iso(), now_iso(), True)
    store.heartbeat(host)
    store.heartbeat(replace(host, host_id="h2", config_hash="def"))
    store.record(finished(run("r1", started_at=now_iso())))
    store.record(finished(run("r2", started_at=now_iso()), status="critical"))
    seen = {h.host_id: h for h in store.hosts()}
    assert set(seen) == {"h1", "h2"}
    assert seen["h1"].alive and seen["h1"].runs_day == 2 and seen["h1"].failures_day == 1
    assert seen["h2"].config_hash == "def" and seen["h2"].runs_day == 0


# -- automation ------------------------------------------------------------------------------


def test_check_state_is_kept_per_host(store):
    store.save_check_state("c", {"status": "ok"}, "h1")
    store.save_check_state("c", {"status": "critical", "circuit_open": True}, "h2")
    store.save_check_state("c", {"status": "warning"}, "h1")
    assert store.check_state("c", "h1") == {"status": "warning"}
    assert store.check_state("c", "h3") is None
    assert [(t, h) for t, h, _ in store.check_states("c")] == [("c", "h1"), ("c", "h2")]
    assert store.check_states("other") == []


def test_notifications_are_kept_once_and_without_their_secrets(store):
    assert store.add_notification("k1", "t", "problem", "r1", "title", "body") is True
    assert store.add_notification("k1", "t", "problem", "r1", "title", "body") is False
    store.set_notification_sent_to(
        "k1", ["slack://T000/B000/XXXXSECRET", "json://user:pw@hooks.example:8080/p?key=SECRET"]
    )
    [sent] = store.notifications_for(["r1", "r2"])
    assert sent["sent_to"] == ["slack://T000", "json://hooks.example"]
    assert sent["title"] == "title" and sent["kind"] == "problem"
    assert store.notifications_for([]) == []


def test_sends_are_rate_limited_per_destination(store):
    url = "json://example/hook?key=SECRET"
    assert [store.take_send_slot(url, 2, 3600) for _ in range(3)] == [True, True, False]
    assert store.take_send_slot("json://other", 2, 3600) is True


def test_remediation_budgets(store):
    budget = Budget(per_check_max=2, per_s=3600, max_per_hour=3)
    assert store.take_remediation("c", "h1", "r1", budget) is None
    assert store.take_remediation("c", "h1", "r2", budget) is None
    assert store.take_remediation("c", "h1", "r3", budget).startswith("budget spent: 2 fix(es)")
    assert store.take_remediation("d", "h1", "r4", budget) is None
    assert "global budget of 3 fixes per hour" in store.take_remediation("e", "h1", "r5", budget)
    assert store.take_remediation("c", "h2", "r6", budget) is None, "per host"
    assert store.count_remediations(3600) == 4
    assert store.count_remediations(3600, "c") == 3
    assert store.remediated_hosts(3600) == 2


def test_the_fleet_budget_counts_distinct_hosts_of_those_seen_in_a_day(store):
    for index in range(10):
        store.heartbeat(HostInfo(f"h{index}", "m", "v", "c", now_iso(), now_iso(), True))
    by_count = Budget(10, 3600, 10, max_hosts=2)
    assert store.take_remediation("c", "h0", "r", by_count) is None
    assert store.take_remediation("c", "h1", "r", by_count) is None
    refused = store.take_remediation("c", "h2", "r", by_count)
    assert refused == ("the fleet budget is spent: 2 of 2 host(s) fixed this hour"
                       " (10 host(s) seen in the last day)")
    assert store.take_remediation("d", "h1", "r", by_count) is None, "a host already counted"
    share = Budget(10, 3600, 10, max_hosts_share=0.25)  # 25% of 10 hosts: 2
    assert store.take_remediation("x", "h3", "r", share) is not None


def test_settings(store):
    assert store.setting("k") is None
    store.set_setting("k", "v1")
    store.set_setting("k", "v2")
    assert store.setting("k") == "v2"
    store.set_setting("k", None)
    assert store.setting("k") is None


# -- locks ---------------------------------------------------------------------------------


def test_a_lock_is_held_once_and_names_its_holder(backend):
    one, two = backend.open(), backend.open()
    for scope in ("host", "fleet"):
        with one.hold("t", 'task "t"', "toilbox run", scope=scope, lease_s=60):
            refused = pytest.raises(AlreadyRunning, match=r'task "t" is already running \(.*pid')
            with refused, two.hold("t", 'task "t"', "toilbox daemon", scope=scope, lease_s=60):
                pass
            assert "toilbox run" in (two.holder("t") or "")
        assert two.holder("t") is None
        with two.hold("t", 'task "t"', "toilbox daemon", scope=scope, lease_s=60):
            pass


# -- housekeeping and errors ------------------------------------------------------------------


def test_prune_deletes_old_history_in_batches_and_keeps_what_runs(store):
    old = utc_iso(datetime.now(UTC) - timedelta(days=40))
    for index in range(25):
        store.record(finished(run(f"old{index}", started_at=old)))
    store.start_run(run("stuck", started_at=old))
    store.record(finished(run("new", started_at=now_iso())))
    store.claim_slot("t", old, "s", "me", "h1")
    cutoff = utc_iso(datetime.now(UTC) - timedelta(days=35))
    assert store.prune(cutoff, cutoff, batch=10) == 10
    while store.prune(cutoff, cutoff, batch=10):
        pass
    assert {r.run_id for r in store.history(limit=100)} == {"stuck", "new"}
    assert store.last_slot("t", "h1") is not None, "slots go by when they were claimed"
    store.prune(cutoff, utc_iso(datetime.now(UTC) + timedelta(seconds=1)))
    assert store.last_slot("t", "h1") is None
    store.compact()
    assert store.size_bytes() > 0


def test_a_store_written_by_a_newer_toilbox_is_refused(backend):
    backend.open().close()
    if backend.kind == "sqlite":
        db = sqlite3.connect(Path(backend.where) / "toilbox.db")
        db.execute("PRAGMA user_version=99")
        db.commit()
        db.close()
    else:
        import psycopg

        with psycopg.connect(backend.where, autocommit=True) as conn:
            conn.execute("UPDATE toilbox_schema SET version = 99")
    with pytest.raises(StateError, match=r"was written by a newer toilbox \(schema 99\)"):
        backend.open()


def test_an_unreachable_store_is_one_line(backend, tmp_path):
    if backend.kind == "sqlite":
        blocker = tmp_path / "file"
        blocker.write_text("")
        with pytest.raises(StateError) as refused:
            SqliteStore.open(blocker / "state")
    else:
        from toilbox.store.postgres import PostgresStore

        with pytest.raises(StateError) as refused:
            PostgresStore.open("postgresql://nobody:hunter2secret@127.0.0.1:1/none").history()
        assert "hunter2secret" not in str(refused.value)
    assert "\n" not in str(refused.value)


# -- races, in real processes ------------------------------------------------------------------


def _in_processes(backend: Backend, count: int, work: Callable[[Store, int], list]) -> list:
    context = multiprocessing.get_context("fork")
    results = context.Queue()

    def child(index: int) -> None:
        own = backend.open()
        try:
            results.put(work(own, index))
        finally:
            own.close()

    processes = [context.Process(target=child, args=(i,)) for i in range(count)]
    for process in processes:
        process.start()
    found = [results.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(timeout=30)
        assert process.exitcode == 0
    return found


def _claim_all(store: Store, index: int) -> list:
    return [n for n in range(10_000) if store.claim_slot("race", at(n), "s", f"p{index}", "")]


@pytest.mark.slow
def test_several_processes_claim_each_of_ten_thousand_slots_exactly_once(backend):
    backend.open().close()  # the schema exists before the race starts
    won = _in_processes(backend, 3, _claim_all)
    claimed = [slot for wins in won for slot in wins]
    assert len(claimed) == 10_000
    assert sorted(claimed) == list(range(10_000))


def _claim_fleet_slots(store: Store, index: int) -> list:
    wins = []
    for n in range(200):
        slot = at(n)  # in the past: due everywhere
        claim = store.claim_fleet_slot("race", slot, "s", lease(store, "race", slot), 30)
        if claim.outcome is Claim.WON:
            wins.append(n)
            store.release_lease("task:race", store.owner)
    return wins


@pytest.mark.slow
def test_fleet_claims_from_several_processes_win_each_slot_once(backend):
    backend.open().close()
    won = _in_processes(backend, 3, _claim_fleet_slots)
    claimed = [slot for wins in won for slot in wins]
    assert sorted(claimed) == sorted(set(claimed)), "no slot won twice"


def test_twenty_hosts_asking_at_once_with_five_percent_fix_exactly_one(backend):
    setup = backend.open()
    for index in range(20):
        setup.heartbeat(HostInfo(f"h{index}", "m", "v", "c", now_iso(), now_iso(), True))
    stores = [backend.open() for _ in range(20)]
    budget = Budget(3, 3600, 10, max_hosts_share=0.05)
    gate = threading.Barrier(20)
    verdicts: list[str | None] = [None] * 20

    def ask(index: int) -> None:
        gate.wait()
        verdicts[index] = stores[index].take_remediation("disk", f"h{index}", "r", budget)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert verdicts.count(None) == 1
    assert all("fleet budget is spent: 1 of 1" in v for v in verdicts if v is not None)


# -- SQLite: every older schema migrates --------------------------------------------------------


@pytest.mark.parametrize("version", [1, 2, 3, 4, 5])
def test_every_older_sqlite_schema_is_migrated(tmp_path, version):
    state = tmp_path / "state"
    state.mkdir()
    db = sqlite3.connect(state / "toilbox.db")
    db.executescript((DATA / f"v{version}.sql").read_text())
    columns = "run_id, task, task_type, status, trigger, started_at, finished_at, scheduled_for,"
    columns += " attempts, hostname, pid"
    if version == 5:  # hosts and UTC slots already: what schema 6 adds is indexes
        db.execute(
            f"INSERT INTO runs ({columns}, host) VALUES ('old', 't', 'check.x', 'ok',"  # noqa: S608
            " 'schedule', '2026-01-01T00:00:00.000000+00:00', '2026-01-01T00:00:01.000000+00:00',"
            " '2026-01-01T00:00:00.000000+00:00', 1, 'oldhost', 1, 'oldhost')"
        )
        db.commit()
        db.close()
    else:
        _fill_old_schema(db, version, columns)
    store = SqliteStore.open(state)
    try:
        old = store.get("old")
        assert old.status == "ok" and old.details == "" and old.host == "oldhost"
        assert old.scope == "host"
        assert old.scheduled_for == "2026-01-01T00:00:00.000000+00:00", "now a UTC instant"
        import socket

        here = socket.gethostname()
        if 3 <= version < 5:
            assert store.last_slot("t", here) == ("2026-01-01T00:00:00.000000+00:00", "s")
            assert not store.claim_slot("t", "2026-01-01T00:00:00.000000+00:00", "s", "z", here)
        if 4 <= version < 5:
            assert store.check_state("t", here) == {"status": "ok"}
            assert store.notifications_for(["old"])[0]["sent_to"] == ["slack://T0"]
        raw = sqlite3.connect(state / "toilbox.db")
        assert "SECRET" not in str(raw.execute("SELECT * FROM notify_sends").fetchall())
        assert _indexes(raw) == _indexes_of_a_new_store(tmp_path), "the same indexes as new"
        raw.close()
        store.record(finished(run("new")))
        assert [r.run_id for r in store.history()] == ["new", "old"]
    finally:
        store.close()


def _fill_old_schema(db: sqlite3.Connection, version: int, columns: str) -> None:
    db.execute(
        f"INSERT INTO runs ({columns}) VALUES ('old', 't', 'check.x', 'ok', 'schedule',"  # noqa: S608
        " '2026-01-01T00:00:00.000000+00:00', '2026-01-01T00:00:01.000000+00:00',"
        " '2026-01-01T05:30:00+05:30', 1, 'oldhost', 1)"
    )
    if version >= 3:
        db.execute("INSERT INTO slots VALUES ('t', '2026-01-01T00:00:00+00:00', 's', 'x', 'y')")
    if version >= 4:
        db.execute("INSERT INTO check_states VALUES ('t', '{\"status\": \"ok\"}')")
        db.execute(
            "INSERT INTO notifications (dedupe_key, task, kind, run_id, title, body, sent_to,"
            " created_at) VALUES ('k', 't', 'problem', 'old', 'x', 'y',"
            " '[\"slack://T0/B0/SECRET\"]', '2026-01-01T00:00:00+00:00')"
        )
        db.execute("INSERT INTO notify_sends VALUES ('slack://T0/B0/SECRET', 'x')")
    db.commit()
    db.close()


def _indexes(db: sqlite3.Connection) -> dict[str, str]:
    rows = db.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql"
                      " IS NOT NULL AND tbl_name = 'runs'").fetchall()
    return {name: " ".join(sql.replace("IF NOT EXISTS ", "").split()) for name, sql in rows}


def _indexes_of_a_new_store(tmp_path: Path) -> dict[str, str]:
    SqliteStore.open(tmp_path / "new").close()
    db = sqlite3.connect(tmp_path / "new" / "toilbox.db")
    try:
        return _indexes(db)
    finally:
        db.close()


def test_a_truncated_sqlite_store_is_reported_not_replaced(tmp_path):
    state = tmp_path / "state"
    SqliteStore.open(state).close()
    (state / "toilbox.db").write_bytes(b"")
    with pytest.raises(StateError, match=r"is empty \(0 bytes\): it was truncated"):
        SqliteStore.open(state)
    assert (state / "toilbox.db").stat().st_size == 0, "left as found"


# -- a window of history, aggregated in the database ------------------------------------


def test_record_many_stores_every_record_at_once(store):
    records = [finished(run(f"m{n}", minute=n)) for n in range(50)]
    store.record_many(records)
    assert [r.run_id for r in store.history("t", limit=100)] == [f"m{n}" for n in range(49, -1, -1)]
    assert store.get("m7") == records[7]


def window_history(store) -> None:
    """Minutes 0-9 before the window [10, 20); a: a check, b: seen only before, c: on h2."""
    store.record(finished(run("a0", task="a", minute=1), status="warning"))
    store.record(finished(run("a-skip", task="a", minute=2), status="skipped"))
    statuses = ["ok", "critical", "critical", "ok", "unknown", "ok"]
    for n, status in enumerate(statuses):
        store.record(finished(run(f"a{n + 1}", task="a", minute=11 + n), status=status,
                              duration_s=float(n + 1), error={"type": "E", "message": f"m{n}"}
                              if status in ("critical", "unknown") else None))
    store.record(finished(run("a-miss", task="a", minute=18), status="missed"))
    store.record(finished(run("b0", task="b", minute=3, task_type="cleanup.x")))
    store.record(finished(run("c1", task="c", minute=12, host="h2"), status="critical"))
    store.start_run(run("c2", task="c", minute=13, host="h2"))


def test_window_tasks_counts_ranks_and_remembers_the_run_before(store):
    window_history(store)
    got = {w.task: w for w in store.window_tasks(at(10), at(20))}
    assert set(got) == {"a", "b", "c"}
    a = got["a"]
    assert a.statuses == {"ok": 3, "critical": 2, "unknown": 1, "missed": 1}
    assert list(a.statuses) == ["ok", "critical", "unknown", "missed"], "in order first seen"
    assert (a.runs, a.task_type, a.before) == (6, "check.x", "warning")
    # durations 1..6: nearest rank p50 = rank 3, p95 = rank 6
    assert (a.duration_p50, a.duration_p95) == (3.0, 6.0)
    assert a.last == ("ok", "ok now", at(16))
    b = got["b"]
    assert (b.statuses, b.runs, b.task_type, b.before) == ({}, 0, "cleanup.x", "ok")
    assert b.last == ("ok", "ok now", at(3)) and b.duration_p50 is None
    c = got["c"]
    assert (c.statuses, c.runs, c.before) == ({"critical": 1, "running": 1}, 1, None)
    assert [w.task for w in store.window_tasks(at(10), at(20), host="h2")] == ["c"]
    assert [w.task for w in store.window_tasks(at(10), at(20), tasks=["b", "x"])] == ["b"]
    assert store.window_tasks(at(30), at(40), host="h9") == []


def test_window_failures_are_the_newest_few(store):
    window_history(store)
    failures = store.window_failures(at(10), at(20), ["a", "b", "c"], 2)
    assert {t: [r.run_id for r in runs] for t, runs in failures.items()} == {
        "a": ["a5", "a3"], "c": ["c1"]}
    assert failures["a"][0].error == {"type": "E", "message": "m4"}
    assert failures["a"][0].output == "" and failures["a"][0].metrics == {}, "no heavy columns"
    assert store.window_failures(at(10), at(20), ["a", "c"], 5, host="h2").keys() == {"c"}


def test_window_changes_are_the_runs_that_changed_the_status(store):
    window_history(store)
    changes = store.window_changes(at(10), at(20), ["a"])
    assert changes == {"a": [(at(11), "ok"), (at(12), "critical"), (at(14), "ok"),
                             (at(15), "unknown"), (at(16), "ok")]}
    assert store.window_changes(at(10), at(20), ["a"], host="h2") == {}


def test_window_points_thin_a_busy_task_to_the_worst_of_each_slice(store):
    window_history(store)
    every = store.window_points(at(10), at(20), ["a", "c"])
    assert [p.at for p in every["a"]] == [at(11 + n) for n in range(6)]
    assert every["a"][1] == (at(12), "critical", 2.0, "schedule")
    assert [p.at for p in every["c"]] == [at(12)]
    # two slices of five minutes: [10, 15) holds a1-a4, [15, 20) a5 and a6
    thinned = store.window_points(at(10), at(20), ["a"], most=2)
    assert [(p.at, p.status) for p in thinned["a"]] == [(at(13), "critical"), (at(15), "unknown")]


def test_window_freed_sums_each_day(store):
    day = T0.replace(hour=0)
    for n, (metrics, data) in enumerate([
        ({"files_deleted": {"value": 3}, "bytes_freed": {"value": 300}}, {}),
        ({}, {"deleted": {"files": 2, "bytes": 20}}),
    ]):
        store.record(finished(run(f"f{n}", task="clean", started_at=utc_iso(day + timedelta(
            hours=1 + n)), task_type="cleanup.x"), metrics=metrics, data=data))
    store.record(finished(run("next", task="clean", started_at=utc_iso(day + timedelta(
        days=1)), task_type="cleanup.x"), metrics={}, data={"deleted": {"files": 1, "bytes": 5}}))
    store.record(finished(run("dry", task="clean", started_at=utc_iso(day + timedelta(
        hours=3)), task_type="cleanup.x"), data={"deleted": {"files": 9, "bytes": 9}},
        dry_run=True))
    store.record(finished(run("not-a-cleanup", task="clean", started_at=utc_iso(
        day + timedelta(hours=4))), data={"deleted": {"files": 7, "bytes": 7}}))
    freed = store.window_freed(utc_iso(day), utc_iso(day + timedelta(days=2)), ["clean"])
    first = day.date().isoformat()
    second = (day + timedelta(days=1)).date().isoformat()
    assert freed == {"clean": [(first, 5, 320), (second, 1, 5)]}


def test_window_followups_are_fixes_verifies_and_their_parents(store):
    store.record(finished(run("old", minute=1), status="critical"))
    store.record(finished(run("p", minute=11), status="critical"))
    store.record(finished(run("fix", task="fix", minute=12, trigger="remediation",
                              parent_run_id="p")))
    store.record(finished(run("verify", minute=13, trigger="verify", parent_run_id="p")))
    store.record(finished(run("late-fix", task="fix", minute=14, trigger="remediation",
                              parent_run_id="old")))
    store.record(finished(run("other", minute=15)))
    got = store.window_followups(at(10), at(20))
    assert [r.run_id for r in got] == ["p", "fix", "verify", "late-fix"]
    assert [r.run_id for r in store.window_followups(at(10), at(20), tasks=["fix"])] == [
        "fix", "late-fix"]
    assert store.window_followups(at(10), at(20), host="h2") == []
