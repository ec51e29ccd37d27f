"""What a task returns: a status, a one-line summary, metrics and details."""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_RANGE = re.compile(rf"(@)?(?:(~|{_NUMBER})?:)?({_NUMBER})?")


class Status(enum.IntEnum):
    """A verdict; the value is the Nagios exit code (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN).

    Do not compare statuses by value to find the worse one: UNKNOWN (3) would outrank
    CRITICAL (2).  Use ``toilbox.worst(...)`` or ``Status.severity``.
    """

    OK = 0
    WARNING = 1
    CRITICAL = 2
    UNKNOWN = 3

    @property
    def label(self) -> str:
        """``"ok"``, ``"warning"``, ``"critical"`` or ``"unknown"``: as ``--json`` shows it."""
        return self.name.lower()

    @property
    def severity(self) -> int:
        """The Nagios rank, for combining verdicts: OK 0, UNKNOWN 1, WARNING 2, CRITICAL 3."""
        return _SEVERITY[self]

    @classmethod
    def from_label(cls, label: str) -> Status:
        """The status a label names: ``Status.from_label("warning")``."""
        return cls[label.upper()]


_SEVERITY = {Status.OK: 0, Status.UNKNOWN: 1, Status.WARNING: 2, Status.CRITICAL: 3}


def worst(*statuses: Status) -> Status:
    """The worst of these statuses in Nagios order: CRITICAL, WARNING, UNKNOWN, then OK.

    ``worst()`` with nothing to combine is OK.  An unreadable file (UNKNOWN) therefore
    never hides an expired certificate (CRITICAL), as ``max()`` would.
    """
    return max(statuses, key=lambda status: status.severity, default=Status.OK)


def _range_start(value: str | float | None) -> str | float | None:
    """A threshold that alerts below ``value``: the Nagios range ``value:``."""
    if value is None or isinstance(value, str):
        return value
    return f"{_number(value)}:"


@dataclass(frozen=True, slots=True)
class Metric:
    """One measurement, with Nagios perfdata semantics.

    ``warn`` and ``crit`` are Nagios ranges: a number ``N`` alerts above ``N`` (and
    below 0); ``"N:"`` alerts below ``N``; ``"~:N"`` above ``N``; ``"A:B"`` outside
    ``A..B``; ``"@A:B"`` inside it.  For a value where lower is worse (time left, free
    space) write ``Metric.below(value, warn=30, crit=7)``, which gives ``"30:"`` and
    ``"7:"``.  ``min`` and ``max`` are the value's possible range, for graphs.
    """

    value: float
    """The measurement: a finite number."""
    unit: str = ""
    """Its unit, as perfdata writes it: ``s``, ``ms``, ``B``, ``%``, ``d``, or none."""
    warn: str | float | None = None
    """The WARNING threshold, a Nagios range (see above); None for none."""
    crit: str | float | None = None
    """The CRITICAL threshold, a Nagios range; None for none."""
    min: float | None = None
    """The least value possible (0 for a count), or None."""
    max: float | None = None
    """The greatest value possible (100 for a percentage), or None."""

    @classmethod
    def below(
        cls,
        value: float,
        unit: str = "",
        *,
        warn: float | None = None,
        crit: float | None = None,
        min: float | None = None,
        max: float | None = None,
    ) -> Metric:
        """A metric that alerts when it falls below ``warn`` or ``crit`` (range ``"N:"``)."""
        return cls(value, unit, _range_start(warn), _range_start(crit), min, max)

    def perfdata(self, label: str) -> str:
        """This metric as a Nagios perfdata item, exactly as ``toilbox run`` prints it:
        the label always quoted, units converted to those the Monitoring Plugins
        guidelines define (``d`` to ``s``, ``GiB`` to ``B``) with the thresholds scaled
        alike, ranges kept: ``Metric.below(12.5, "d", warn=30).perfdata("days left")``
        is ``'days left'=1080000s;2592000:``."""
        from toilbox.perfdata import item

        return item(label, self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "unit": self.unit,
            "warn": self.warn,
            "crit": self.crit,
            "min": self.min,
            "max": self.max,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Metric:
        return cls(**raw)


def _number(value: float) -> str:
    """A number as perfdata writes it: no exponent, no trailing ``.0``."""
    number = float(value)
    return str(int(number)) if number.is_integer() else repr(number)




def describe_range(
    threshold: str | float, number: Callable[[float], str] | None = None
) -> str:
    """A Nagios range in words, for people: ``"30:"`` is ``below 30``, ``80`` is ``above 80``.

    ``number`` writes each bound (``format_size`` gives ``below 2.0 GiB``).
    """
    show = number or _number
    if not isinstance(threshold, str):
        return f"above {show(threshold)}"
    match = _RANGE.fullmatch(threshold)
    if match is None or not (match[2] or match[3]):
        return threshold
    inside, raw_start, raw_end = match[1], match[2], match[3]
    start = show(float(raw_start)) if raw_start not in (None, "~") else raw_start
    end = show(float(raw_end)) if raw_end is not None else None
    if inside:
        return f"inside {start or show(0)}..{end}" if end else f"at or above {start}"
    if start in (None, "~"):
        return f"above {end}" if end else threshold
    return f"below {start}" if end is None else f"outside {start}..{end}"


def _check_threshold(label: str, name: str, threshold: str | float | None) -> None:
    if threshold is None:
        return
    if isinstance(threshold, str):
        if not _RANGE.fullmatch(threshold) or threshold in ("", "@", ":", "@:"):
            raise TypeError(
                f"metric {label!r}: {name} {threshold!r} is not a Nagios range"
                " (like 30, 30: or 10:20; Metric.below() writes 30:)"
            )
    elif not isinstance(threshold, int | float) or isinstance(threshold, bool):
        raise TypeError(f"metric {label!r}: {name} is {type(threshold).__name__}, not a number")


@dataclass(slots=True)
class Result:
    """A task's verdict.

    ``summary`` is one line; ``details`` is optional longer text for people (a plan, a
    list), shown under the summary by ``toilbox run``.  ``metrics`` maps a label to a
    Metric (a bare number is taken as its value); ``data`` holds JSON-serialisable
    details for history, reports and ``--json``.
    """

    status: Status
    """The verdict, and ``toilbox run``'s exit code."""
    summary: str = ""
    """One line for people: what was found (only its first line is kept)."""
    metrics: dict[str, Metric | float] = field(default_factory=dict)
    """Measurements by label: a Metric, or a bare number taken as its value."""
    data: dict[str, Any] = field(default_factory=dict)
    """JSON-serialisable details for history, reports and ``--json``."""
    details: str = ""
    """Longer text for people (a plan, a list), shown under the summary."""

    def normalised_metrics(self) -> dict[str, Metric]:
        """Every metric as a Metric; TypeError for one that is not a finite number or
        whose thresholds are not Nagios ranges (the run then ends as a bad result)."""
        out: dict[str, Metric] = {}
        for label, metric in self.metrics.items():
            if isinstance(metric, Metric):
                out[str(label)] = metric
            elif isinstance(metric, int | float) and not isinstance(metric, bool):
                out[str(label)] = Metric(float(metric))
            else:
                kind = type(metric).__name__
                raise TypeError(f"metric {label!r} is {kind}, not a Metric or number")
            if not math.isfinite(out[str(label)].value):
                raise TypeError(f"metric {label!r} is not a finite number")
            _check_threshold(str(label), "warn", out[str(label)].warn)
            _check_threshold(str(label), "crit", out[str(label)].crit)
        return out
