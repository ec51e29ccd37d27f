"""What a task returns: a status, a one-line summary, metrics and details."""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Any


class Status(enum.IntEnum):
    """A verdict; the value is the Nagios exit code."""

    OK = 0
    WARNING = 1
    CRITICAL = 2
    UNKNOWN = 3

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def from_label(cls, label: str) -> Status:
        return cls[label.upper()]


@dataclass(frozen=True, slots=True)
class Metric:
    """One measurement, with Nagios perfdata semantics (thresholds may be ranges)."""

    value: float
    unit: str = ""
    warn: str | float | None = None
    crit: str | float | None = None
    min: float | None = None
    max: float | None = None

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


@dataclass(slots=True)
class Result:
    """A task's verdict.

    ``summary`` is one line; ``details`` is optional longer text for people (a plan, a
    list), shown under the summary by ``toilbox run``.  ``metrics`` maps a label to a
    Metric (a bare number is taken as its value); ``data`` holds JSON-serialisable
    details for history, reports and ``--json``.
    """

    status: Status
    summary: str = ""
    metrics: dict[str, Metric | float] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    details: str = ""

    def normalised_metrics(self) -> dict[str, Metric]:
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
        return out
