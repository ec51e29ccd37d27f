"""Nagios plugin output: split text from perfdata, and parse perfdata into Metrics.

Pure functions, no I/O: plugin output is untrusted text, so nothing here raises on it.
Reference: https://nagios-plugins.org/doc/guidelines.html#AEN200
"""

from __future__ import annotations

import math
import re
from typing import NamedTuple

from toilbox import Metric

_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
# The unit is whatever follows the number; it may not start like more number.
_VALUE = re.compile(rf"({_NUMBER})([^\d.+\-][^;]*)?")
_PLAIN_NUMBER = re.compile(_NUMBER)
_RANGE = re.compile(rf"@?(?:(?:~|{_NUMBER})?:)?(?:{_NUMBER})?")
# A label is quoted (spaces and '=' allowed, '' escapes a quote) or a bare word.
_ITEM = re.compile(r"'((?:[^']|'')*)'=(\S*)|([^'=\s][^=\s]*)=(\S*)")
_MAX_FIELDS = 5  # value[UOM];warn;crit;min;max


class PluginOutput(NamedTuple):
    summary: str
    long_text: str
    perfdata: str


def split_output(stdout: str) -> PluginOutput:
    """Split output by the plugin API: ``TEXT|PERF`` then long text, and after the
    first ``|`` in the following lines, more perfdata (which may span lines)."""
    first, _, rest = stdout.partition("\n")
    summary, _, perf = first.partition("|")
    long_text, _, more = rest.partition("|")
    return PluginOutput(summary.strip(), long_text.strip(), f"{perf} {more}".strip())


def parse_perfdata(text: str) -> tuple[dict[str, Metric], list[str]]:
    """Parse space-separated ``'label'=value[UOM];[warn];[crit];[min];[max]`` items.

    Returns the metrics and one message per malformed item (skipped).  A value of
    ``U`` (unknown) is skipped without an error.
    """
    metrics: dict[str, Metric] = {}
    errors: list[str] = []
    pos = 0
    while (start := _skip_space(text, pos)) < len(text):
        match = _ITEM.match(text, start)
        if match is None:
            pos = _token_end(text, start)
            errors.append(f"{text[start:pos]!r}: not a 'label'=value item")
            continue
        pos = match.end()
        quoted, quoted_raw, bare, bare_raw = match.groups()
        label = quoted.replace("''", "'") if quoted is not None else bare
        try:
            metric = _metric(quoted_raw if quoted is not None else bare_raw)
        except ValueError as exc:
            errors.append(f"{match[0]!r}: {exc}")
            continue
        if not label:
            errors.append(f"{match[0]!r}: empty label")
        elif metric is not None:
            metrics[label] = metric
    return metrics, errors


def _metric(raw: str) -> Metric | None:
    fields = raw.split(";")
    if len(fields) > _MAX_FIELDS:
        raise ValueError(f"more than {_MAX_FIELDS} ';'-separated fields")
    value, warn, crit, low, high = fields + [""] * (_MAX_FIELDS - len(fields))
    if value == "U":
        return None
    match = _VALUE.fullmatch(value)
    if match is None:
        raise ValueError(f"value {value!r} is not a number")
    return Metric(
        value=_finite(match[1], "value"),
        unit=match[2] or "",
        warn=_threshold(warn, "warn"),
        crit=_threshold(crit, "crit"),
        min=_finite(low, "min") if low else None,
        max=_finite(high, "max") if high else None,
    )


def _threshold(raw: str, name: str) -> str | float | None:
    """A plain number becomes a float; a range (``10:``, ``~:20``, ``@5:10``) stays as text."""
    if not raw:
        return None
    if _PLAIN_NUMBER.fullmatch(raw):
        return _finite(raw, name)
    if raw != "@" and _RANGE.fullmatch(raw):
        return raw
    raise ValueError(f"{name} {raw!r} is not a number or range")


def _finite(raw: str, name: str) -> float:
    # float() accepts "nan" and "inf", and "1e999" overflows: none is a usable metric.
    if not _PLAIN_NUMBER.fullmatch(raw) or not math.isfinite(number := float(raw)):
        raise ValueError(f"{name} {raw!r} is not a finite number")
    return number


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos].isspace():
        pos += 1
    return pos


def _token_end(text: str, pos: int) -> int:
    while pos < len(text) and not text[pos].isspace():
        pos += 1
    return pos
