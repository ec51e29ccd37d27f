"""Nagios perfdata, written once: what `toilbox run` prints and what ``Metric.perfdata``
gives a plugin author are the same text.  Imports nothing of toilbox's, so the plugin
contract (result.py) can use it."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

# Units of measure the Monitoring Plugins guidelines define; others are converted to one
# of these, or left off (the value stays), so that every perfdata parser accepts them.
_UOM = {"", "s", "ms", "us", "%", "B", "KB", "MB", "GB", "TB", "c"}
_CONVERTED = {
    "d": ("s", 86400.0),
    "h": ("s", 3600.0),
    "min": ("s", 60.0),
    "ns": ("us", 0.001),
    "kB": ("KB", 1.0),
    "KiB": ("B", 1024.0),
    "MiB": ("B", 1024.0**2),
    "GiB": ("B", 1024.0**3),
    "TiB": ("B", 1024.0**4),
}
_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")
_RANGE = re.compile(rf"@?(?:(?:~|{_NUMBER.pattern})?:)?(?:{_NUMBER.pattern})?")


def perfdata(metrics: dict[str, dict[str, Any]]) -> str:
    """``'label'=value[UOM];[warn];[crit];[min];[max]`` for each metric, space-separated.

    Thresholds that are ranges (``10:``, ``@5:10``, ``~:20``) are kept as given.
    """
    return " ".join(item(label, metric) for label, metric in metrics.items())


def item(label: str, metric: dict[str, Any]) -> str:
    """One metric (``Metric.to_dict()``) as one perfdata item."""
    unit, scale = _CONVERTED.get(metric.get("unit") or "", (metric.get("unit") or "", 1.0))
    if unit not in _UOM:
        unit = ""
    fields = [
        _number(metric["value"] * scale) + unit,
        _threshold(metric.get("warn"), scale),
        _threshold(metric.get("crit"), scale),
        _number(metric["min"] * scale) if metric.get("min") is not None else "",
        _number(metric["max"] * scale) if metric.get("max") is not None else "",
    ]
    while fields[-1] == "":
        fields.pop()
    # The two characters a label may not hold, and what would end the line or the
    # perfdata under a plugin's label: a line break would start a line of its own in
    # Nagios' output, a "|" perfdata of its own.
    name = re.sub(r"['=|\x00-\x1f\x7f]", "_", str(label))
    return f"'{name}'={';'.join(fields)}"


def _number(value: float) -> str:
    """Plain decimal notation: perfdata has no exponents (``1e-06`` is ``0.000001``)."""
    return format(Decimal(repr(float(value))).normalize(), "f")


def _threshold(value: str | float | None, scale: float) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, int | float):
        return _number(value * scale)
    if not _RANGE.fullmatch(value) or value == "@":
        return ""  # not a threshold any parser would take: leave it off, not garble the line
    return _NUMBER.sub(lambda m: _number(float(m[0]) * scale), value)


