"""Config value types: durations, sizes, percentages and paths, as pydantic-ready annotations.

Use them in a task type's params model; each reads a config value the way the rest of
toilbox does.  Each parser raises ValueError with the message users see after
``file:line: key:``.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, ValidationInfo, WithJsonSchema

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]i?b?|b)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1}
for _power, _letter in enumerate("kmgtp", start=1):
    _SIZE_UNITS[_letter] = _SIZE_UNITS[_letter + "b"] = 1000**_power
    _SIZE_UNITS[_letter + "i"] = _SIZE_UNITS[_letter + "ib"] = 1024**_power

# The same grammar for JSON Schema, whose patterns have no flags: case-insensitive by hand.
_SIZE_SCHEMA = r"^\s*(\d+(\.\d+)?)\s*([kKmMgGtTpP][iI]?[bB]?|[bB])?\s*$"

_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")

# Larger values only overflow clocks and databases downstream (a datetime minus a
# billion days fails); no schedule, timeout or window means more than a century.
MAX_DURATION_S = 100 * 365 * 86400.0
MAX_SIZE = 2**63 - 1  # what a file system and SQLite can count


def _got(value: Any) -> str:
    text = f'"{value}"' if isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def parse_duration(value: Any) -> float:
    """``30s``, ``10m``, ``2h``, ``7d``, ``1w``, ``250ms``; a bare number is seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        seconds: float = value
    else:
        match = _DURATION.match(value) if isinstance(value, str) else None
        if not match:
            raise ValueError(f"expected a duration like 30s, 10m, 2h or 7d, got {_got(value)}")
        seconds = float(match[1]) * _DURATION_UNITS[match[2]]
    if not seconds <= MAX_DURATION_S:  # also false for inf
        raise ValueError(f"a duration is at most 100 years ({MAX_DURATION_S / 86400:g}d), got"
                         f" {_got(value)}")
    return float(seconds)


def parse_explicit_duration(value: Any) -> float:
    """As parse_duration, but a bare number is refused: ``30`` could mean seconds or days."""
    bare = isinstance(value, int | float) and not isinstance(value, bool)
    match = _DURATION.match(value) if isinstance(value, str) else None
    if bare or (match and match[2] is None):
        number = f"{value:g}" if bare else match[1] if match else value
        raise ValueError(
            f"a duration needs a unit here ({number} could mean seconds or days):"
            f" write {number}d, {number}h, {number}m or {number}s"
        )
    return parse_duration(value)


def config_path(value: Any, info: ValidationInfo) -> Any:
    """A path from the config: ``~`` expanded, and a relative path read from the config
    file's directory (the validation context's ``config_dir``), not from wherever toilbox
    happens to be started.  Without a ``config_dir`` (a path given on the command line)
    a relative path stays relative to the current directory."""
    if not isinstance(value, str | os.PathLike):
        return value  # pydantic's own Path validation reports the wrong type
    text = os.fspath(value)
    if not text:
        raise ValueError("expected a path, got an empty string")
    if "\0" in str(text):
        raise ValueError("a path cannot contain a NUL byte")
    path = Path(text).expanduser()
    context = info.context if isinstance(info.context, dict) else {}
    base = context.get("config_dir")
    if base is not None and not path.is_absolute():
        path = Path(base) / path
    return str(path)  # a string: pydantic's Path validation takes no Path from JSON


def parse_size(value: Any) -> int:
    """``500MB`` (powers of 1000), ``2GiB`` (powers of 1024); a bare number is bytes."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        size = value
    else:
        match = _SIZE.match(value) if isinstance(value, str) else None
        if not match:
            raise ValueError(f"expected a size like 500MB or 2GiB, got {_got(value)}")
        number = float(match[1]) * _SIZE_UNITS[(match[2] or "").lower()]
        size = int(number) if math.isfinite(number) else MAX_SIZE + 1
    if size > MAX_SIZE:
        raise ValueError(f"a size is at most 8 EiB, got {_got(value)}")
    return size


def parse_percent(value: Any) -> float:
    """``80%`` or ``12.5%``, from 0 to 100."""
    match = _PERCENT.match(value) if isinstance(value, str) else None
    if not match or float(match[1]) > 100:
        raise ValueError(f"expected a percentage like 80%, got {_got(value)}")
    return float(match[1])


def format_duration(seconds: float) -> str:
    """Seconds as the config writes them: ``7d``, ``26h``, ``90s``, ``0.25s``."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def format_size(size: float) -> str:
    """Bytes for people, in powers of 1024: ``512 B``, ``1.5 MiB``, ``2.0 GiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration),
    WithJsonSchema({"type": ["string", "number"], "pattern": _DURATION.pattern}),
]
"""Seconds, written ``30s``, ``10m``, ``2h`` or ``7d`` in the config; a bare number is seconds."""

ExplicitDuration = Annotated[
    float,
    BeforeValidator(parse_explicit_duration),
    PlainSerializer(format_duration),
    WithJsonSchema({"type": "string", "pattern": r"^\s*\d+(?:\.\d+)?\s*(ms|s|m|h|d|w)\s*$"}),
]
"""Seconds, written with a unit (``30d``, ``12h``); a bare number is refused.

Use it for thresholds that are not naturally seconds (days before a certificate
expires, the age of a backup), where ``warning: 30`` would silently mean 30 seconds.
"""

ConfigPath = Annotated[Path, BeforeValidator(config_path)]
"""A ``pathlib.Path``; ``~`` is expanded and a relative path is read from the config
file's directory, as ``state_dir`` and ``plugin_dirs`` are (``ctx.config_dir``)."""

Size = Annotated[
    int,
    BeforeValidator(parse_size),
    PlainSerializer(lambda size: size, return_type=int),
    WithJsonSchema({"type": ["string", "integer"], "pattern": _SIZE_SCHEMA}),
]
"""Bytes, written ``500MB`` or ``2GiB`` in the config."""

Percent = Annotated[
    float,
    BeforeValidator(parse_percent),
    PlainSerializer(lambda pct: f"{pct:g}%", return_type=str),
    WithJsonSchema({"type": "string", "pattern": _PERCENT.pattern}),
]
"""A percentage from 0 to 100, written ``80%`` in the config."""
