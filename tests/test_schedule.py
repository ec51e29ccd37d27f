"""Schedules, triggers, DST and catch-up, with an injected clock (no waiting)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from toilbox import schedule
from toilbox.daemon import Daemon
from toilbox.dispatch import jitter_delay, slot_key
from toilbox.models import utc_iso


def fires(text: str, tz: str, start: datetime, end: datetime) -> list[datetime]:
    trig = schedule.trigger(schedule.parse(text), tz)
    return schedule.fire_times_between(trig, start, end, limit=1000)


@pytest.mark.parametrize(
    ("field", "days"),
    [("*", [0, 1, 2, 3, 4, 5, 6]), ("0", [0]), ("7", [0]), ("1-5", [1, 2, 3, 4, 5]),
     ("*/2", [0, 2, 4, 6]), ("sat,sun", [0, 6]), ("5-7", [0, 5, 6]), ("mon-fri/2", [1, 3, 5])],
)
def test_cron_day_of_week_keeps_cron_numbering(field, days):
    assert schedule.cron_days_of_week(field) == days


def test_sunday_is_day_zero_as_in_cron():
    tuesday = datetime(2026, 11, 24, 12, tzinfo=UTC)
    sundays = fires("0 6 * * 0", "UTC", tuesday, tuesday + timedelta(days=14))
    assert [f.weekday() for f in sundays] == [6, 6]


def test_day_of_month_or_day_of_week_as_in_cron():
    start = datetime(2026, 11, 1, tzinfo=UTC)
    got = fires("0 0 13 * 5", "UTC", start, datetime(2026, 12, 1, tzinfo=UTC))
    # Fridays in November 2026 (6, 13, 20, 27) plus the 13th, which is one of them.
    assert [f.day for f in got] == [6, 13, 20, 27]


def test_interval_fire_times_are_anchored_across_restarts():
    trig = schedule.trigger(schedule.parse("every 7m"), "UTC")
    first = trig.get_next_fire_time(None, datetime(2026, 11, 24, 10, 0, 1, tzinfo=UTC))
    after_restart = trig.get_next_fire_time(None, datetime(2026, 11, 24, 10, 3, 0, tzinfo=UTC))
    assert first == after_restart


def test_fall_back_day_runs_a_0130_job_once():
    # America/New_York, 2026-11-01: 01:00-02:00 happens twice.
    tz = ZoneInfo("America/New_York")
    start = datetime(2026, 11, 1, 0, 0, tzinfo=tz)
    got = fires("30 1 * * *", "America/New_York", start, start + timedelta(hours=23))
    assert len(got) == 1
    assert got[0].astimezone(tz).hour == 1


def test_spring_forward_day_still_runs_a_0230_job_once():
    # America/New_York, 2026-03-08: 02:00-03:00 does not exist.
    tz = ZoneInfo("America/New_York")
    start = datetime(2026, 3, 8, 0, 0, tzinfo=tz)
    got = fires("30 2 * * *", "America/New_York", start, start + timedelta(hours=23))
    assert len(got) == 1, got
    assert got[0].astimezone(tz).date().day == 8


def test_ordinary_days_run_once_each_in_local_time():
    tz = ZoneInfo("Europe/Paris")
    start = datetime(2026, 3, 27, 0, 0, tzinfo=tz)  # across Paris's spring-forward on the 29th
    got = fires("30 2 * * *", "Europe/Paris", start, start + timedelta(days=5))
    assert [f.astimezone(tz).day for f in got] == [27, 28, 29, 30, 31]


def test_jitter_is_bounded_and_stable_per_slot(write_config):
    from toilbox.app import load_app

    app = load_app(str(write_config("tasks:\n  a: {uses: check.faults, schedule: every 1m, jitter: 30s}\n")))
    task = app.tasks["a"]
    slot = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
    delays = {jitter_delay(task, slot + timedelta(minutes=i)) for i in range(50)}
    assert all(0 <= d < 30 for d in delays)
    assert len(delays) > 40
    assert jitter_delay(task, slot) == jitter_delay(task, slot)


class Dispatched(list):
    def __call__(self, app, task, slots, trigger, *rest):
        self.append((task.name, [utc_iso(s) for s in slots], trigger))


@pytest.fixture
def catchup_daemon(write_config):
    def make(on_missed: str, extra: str = "") -> Daemon:
        config = write_config(
            f"tasks:\n  a: {{uses: check.faults, schedule: every 1m, on_missed: {on_missed}"
            f"{extra}}}\n"
        )
        daemon = Daemon(str(config))
        daemon.pool = ThreadPoolExecutor(1)
        daemon._run = Dispatched()  # type: ignore[method-assign]
        return daemon

    return make


T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


def claim(daemon: Daemon, when: datetime) -> None:
    task = daemon.app.tasks["a"]
    assert daemon.app.store().claim_slot(
        "a", utc_iso(when), slot_key(task), "test", daemon.app.host_id
    )


def records(daemon: Daemon, status: str) -> list:
    return [r for r in daemon.app.store().history("a", 100) if r.status == status]


def test_catch_up_run_once_coalesces_missed_slots(catchup_daemon):
    daemon = catchup_daemon("run_once", ", catchup_window: 10m")
    claim(daemon, T0)
    daemon.catch_up(T0 + timedelta(minutes=5, seconds=30))
    daemon.pool.shutdown(wait=True)
    assert daemon._run == [("a", [utc_iso(T0 + timedelta(minutes=5))], "catch-up")]
    missed = records(daemon, "missed")
    assert len(missed) == 1
    assert missed[0].data["count"] == 4
    assert "missed 4 slot(s)" in missed[0].summary


def test_catch_up_skip_runs_nothing_and_records_it(catchup_daemon):
    daemon = catchup_daemon("skip")
    claim(daemon, T0)
    daemon.catch_up(T0 + timedelta(minutes=3, seconds=1))
    assert daemon._run == []
    assert records(daemon, "missed")[0].data["count"] == 3
    daemon.catch_up(T0 + timedelta(minutes=3, seconds=2))
    assert len(records(daemon, "missed")) == 1, "a second start does not count them again"


def test_catch_up_run_all_is_capped(catchup_daemon):
    daemon = catchup_daemon("run_all", ", catchup_window: 1h, catchup_max: 3")
    claim(daemon, T0)
    daemon.catch_up(T0 + timedelta(minutes=5, seconds=1))
    daemon.pool.shutdown(wait=True)
    assert daemon._run == [("a", [utc_iso(T0 + timedelta(minutes=m)) for m in (3, 4, 5)],
                            "catch-up")]
    assert records(daemon, "missed")[0].data["count"] == 2


def test_catch_up_window_defaults_to_one_interval(catchup_daemon):
    daemon = catchup_daemon("run_once")
    claim(daemon, T0)
    daemon.catch_up(T0 + timedelta(minutes=30, seconds=30))  # the newest slot is 30 s old
    daemon.pool.shutdown(wait=True)
    assert daemon._run == [("a", [utc_iso(T0 + timedelta(minutes=30))], "catch-up")]
    assert records(daemon, "missed")[0].data["count"] == 29


def test_a_schedule_edit_never_fires_a_run(catchup_daemon, write_config):
    daemon = catchup_daemon("run_once")
    store = daemon.app.store()
    # the old schedule
    assert store.claim_slot("a", utc_iso(T0), "every 5m UTC", "test", daemon.app.host_id)
    daemon.catch_up(T0 + timedelta(hours=1))
    assert daemon._run == []
    assert records(daemon, "missed") == []


def test_a_fire_while_running_is_skipped_and_recorded(catchup_daemon):
    daemon = catchup_daemon("run_once")
    daemon.running["a"] = object()  # type: ignore[assignment]
    daemon.fire("a", [T0])
    assert daemon._run == []
    skipped = records(daemon, "skipped")
    assert skipped[0].summary == "skipped: still running"
    assert skipped[0].scheduled_for == utc_iso(T0)
    daemon.running.clear()
    daemon.fire("a", [T0])
    assert daemon._run == [], "a slot runs once: the skipped slot stays claimed"


def test_late_fires_follow_on_missed(catchup_daemon):
    daemon = catchup_daemon("run_once")
    daemon.clock = lambda: T0 + timedelta(minutes=2, seconds=1)
    daemon.fire("a", [T0, T0 + timedelta(minutes=1), T0 + timedelta(minutes=2)])
    daemon.pool.shutdown(wait=True)
    assert daemon._run == [("a", [utc_iso(T0 + timedelta(minutes=2))], "schedule")]
    assert records(daemon, "missed")[0].data["count"] == 2
