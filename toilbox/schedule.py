"""Schedule strings: parsed and checked here, turned into triggers by the daemon.

Pure functions with no scheduler import, so `toilbox run` and `validate` stay fast.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

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
        seconds = parse_duration(every[1])
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
