"""Schedule strings: parsed and checked here, turned into triggers by the daemon.

Pure functions with no scheduler import, so `toilbox run` and `validate` stay fast.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from toilbox.units import parse_duration

ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, {m: i for i, m in enumerate(_MONTHS, start=1)}),
    ("day of week", 0, 7, {d: i for i, d in enumerate(_DAYS)}),
)
_ITEM = re.compile(r"^(\*|[a-z0-9]+(?:-[a-z0-9]+)?)(?:/(\d+))?$")
_EVERY = re.compile(r"^every\s+(.+)$")
_EPSILON = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class Schedule:
    """A parsed schedule: either a 5-field ``cron`` expression or ``every`` N seconds."""

    text: str
    cron: str | None = None
    every_s: float | None = None


def parse(text: str) -> Schedule:
    """Parse ``*/5 * * * *``, ``@daily`` or ``every 30s``; raise ValueError saying what is wrong."""
    stripped = " ".join(text.split()).lower()
    if stripped in ALIASES:
        return Schedule(text=text, cron=ALIASES[stripped])
    if stripped.startswith("@"):
        raise ValueError(f"unknown schedule alias {text!r} (known: {', '.join(ALIASES)})")
    every = _EVERY.match(stripped)
    if every:
        try:
            seconds = parse_duration(every[1])
        except ValueError:
            raise ValueError(
                f'"every" takes a duration like 30s, 10m or 2h, got "{every[1]}"'
                ' (cron "*/5 * * * *" and "@hourly" work too)'
            ) from None
        if seconds < 1:
            raise ValueError(f"schedule {text!r} is shorter than 1s")
        return Schedule(text=text, every_s=seconds)
    fields = stripped.split(" ")
    if len(fields) != 5:
        raise ValueError(
            f'expected a cron expression of 5 fields, "@daily" or "every 10m", got "{text}"'
        )
    for value, spec in zip(fields, _FIELDS, strict=True):
        _check_field(value, *spec)
    return Schedule(text=text, cron=stripped)


def _check_field(value: str, name: str, low: int, high: int, names: dict[str, int]) -> None:
    for item in value.split(","):
        match = _ITEM.match(item)
        if not match:
            raise ValueError(f"cron {name} field {value!r}: cannot read {item!r}")
        if match[2] is not None and int(match[2]) == 0:
            raise ValueError(f"cron {name} field {value!r}: a step of 0 never fires")
        if match[1] == "*":
            continue
        for bound in match[1].split("-"):
            number = names.get(bound, int(bound) if bound.isdigit() else None)
            if number is None or not low <= number <= high:
                raise ValueError(f"cron {name} field {value!r}: {bound!r} is not in {low}-{high}")


# Interval schedules count from a fixed epoch, so a restart keeps the same fire times.
ANCHOR_EPOCH = "2000-01-03T00:00:00+00:00"  # a Monday at midnight UTC


def cron_days_of_week(field: str) -> list[int]:
    """The cron days (0 = Sunday) a day-of-week field names, as a sorted list."""
    days: set[int] = set()
    names = {d: i for i, d in enumerate(_DAYS)}
    for item in field.split(","):
        match = _ITEM.match(item)
        if match is None:  # parse() has checked the field; nothing else reaches here
            continue
        step = int(match[2] or 1)
        if match[1] == "*":
            low, high = 0, 6
        else:
            bounds = [names.get(b, int(b) if b.isdigit() else 0) for b in match[1].split("-")]
            low, high = bounds[0], bounds[-1]
            if match[2] and len(bounds) == 1:
                high = 6  # "a/n" means from a to the end, every n
        days.update(day % 7 for day in range(low, high + 1, step))  # 7 is Sunday too
    return sorted(days)


def trigger(parsed: Schedule, timezone: str) -> Any:
    """The APScheduler 3 trigger for a parsed schedule, without jitter (fire times are slots).

    Cron semantics are kept where APScheduler differs: day-of-week 0 is Sunday, and when
    both day-of-month and day-of-week are restricted a day matching either one fires.
    Cron schedules are read on the wall clock (see ``WallClockCron``) for DST.
    """
    from zoneinfo import ZoneInfo

    from apscheduler.triggers.combining import OrTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    tz = ZoneInfo(timezone)
    if parsed.every_s is not None:
        return IntervalTrigger(
            seconds=parsed.every_s, start_date=datetime.fromisoformat(ANCHOR_EPOCH), timezone=tz
        )
    minute, hour, dom, month, dow = (parsed.cron or "* * * * *").split(" ")
    day_names = ",".join(_DAYS[d] for d in cron_days_of_week(dow))
    common = {"minute": minute, "hour": hour, "month": month}
    if dom != "*" and dow != "*":
        return OrTrigger(
            [
                wall_clock_cron(tz, day=dom, **common),
                wall_clock_cron(tz, day_of_week=day_names, **common),
            ]
        )
    return wall_clock_cron(tz, day=dom, day_of_week=day_names if dow != "*" else "*", **common)


def wall_clock_cron(tz: Any, **fields: str) -> Any:
    """A cron trigger that reads its fields on the local wall clock, as cron does.

    APScheduler 3's own CronTrigger fires a 01:30 job twice on a fall-back day and then
    returns the same time forever (the scheduler loop spins).  Here fire times are found
    on the wall clock (a DST-free timeline) and then placed in real time: a wall time
    that happens twice fires once, at its first occurrence, unless the job runs every
    hour (hour "*"), which then also fires in the repeated hour; a wall time that does
    not exist (spring forward) fires once, just after the jump.
    """
    from apscheduler.triggers.base import BaseTrigger
    from apscheduler.triggers.cron import CronTrigger

    hourly = fields.get("hour") == "*"
    wall = CronTrigger(timezone=UTC, **fields)

    class WallClockCron(BaseTrigger):  # type: ignore[misc]
        def get_next_fire_time(self, previous: datetime | None, now: datetime) -> datetime | None:
            after = previous or now - _EPSILON  # strictly after previous, else at or after now
            start = after.astimezone(tz).replace(tzinfo=None)
            # Looking back two hours finds a repeated hour's second pass; with no clock
            # change near, there is none to find.
            back = 2 if hourly and not _steady(tz, start - timedelta(hours=2)) else 0
            probe = (start - timedelta(hours=back)).replace(tzinfo=UTC)
            best: datetime | None = None
            best_wall: datetime | None = None
            for _ in range(1000):
                found = wall.get_next_fire_time(None, probe)
                if found is None:
                    break
                naive = found.replace(tzinfo=None)
                if best_wall is not None and naive > best_wall + timedelta(hours=3):
                    break  # no later wall time can land earlier in real time
                for fold in (0, 1) if hourly else (0,):
                    instant = naive.replace(tzinfo=tz, fold=fold).astimezone(UTC)
                    if instant > after and (best is None or instant < best):
                        best, best_wall = instant, naive
                if best_wall is not None and _steady(tz, best_wall):
                    break  # no clock change near: no later wall time lands earlier
                probe = found + _EPSILON
            return best.astimezone(tz) if best else None

        def __str__(self) -> str:
            return f"wall-clock cron {fields} in {tz}"

    return WallClockCron()


def _steady(tz: Any, wall: datetime, hours: float = 5) -> bool:
    """No UTC offset change from ``wall`` to ``hours`` on: wall-clock order is then
    real-time order, and no wall time happens twice.  Without this, a minutely cron
    looked at hours of candidates for every fire (a thousand such tasks took seconds)."""
    end = wall + timedelta(hours=hours)
    offsets = {m.replace(tzinfo=tz, fold=f).utcoffset() for m in (wall, end) for f in (0, 1)}
    return len(offsets) == 1


def fire_times_between(trig: Any, after: datetime, until: datetime, limit: int) -> list[datetime]:
    """Fire times in (after, until], oldest first, at most ``limit`` of the newest."""
    times: list[datetime] = []
    previous = after
    while True:
        nxt = trig.get_next_fire_time(previous, previous + _EPSILON)
        if nxt is None or nxt > until:
            return times[-limit:]
        if nxt > after:
            times.append(nxt)
            if len(times) > 2 * limit:
                del times[:limit]
        previous = nxt


def interval_s(trig: Any, now: datetime) -> float:
    """Seconds between two consecutive fires after ``now`` (a cron's typical period)."""
    first = trig.get_next_fire_time(None, now)
    if first is None:
        return 0.0
    second = trig.get_next_fire_time(first, first + _EPSILON)
    return (second - first).total_seconds() if second else 0.0
