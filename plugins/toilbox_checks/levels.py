"""Shared by the standard checks: threshold levels and how their numbers read in a summary."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

import toilbox
from toilbox.units import format_duration


def _compiles(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"not a valid regular expression: {exc}") from exc
    return value


Regex = Annotated[str, AfterValidator(_compiles)]
"""A regular expression, checked when the config loads."""


def level(*, critical: bool, warning: bool) -> toilbox.Status:
    """The worse of the two thresholds reached, or OK."""
    if critical:
        return toilbox.Status.CRITICAL
    return toilbox.Status.WARNING if warning else toilbox.Status.OK


def at_least(value: float, threshold: float | None) -> bool:
    """A threshold is reached at its value, not only above it; None is never reached."""
    return threshold is not None and value >= threshold


def check_order(warning: float | None, critical: float | None, *, lower_is_worse: bool) -> None:
    """Refuse thresholds the wrong way round: the warning band would be empty."""
    if warning is None or critical is None:
        return
    if lower_is_worse and warning < critical:
        raise ValueError(
            f"warning ({format_duration(warning)}) is less than critical"
            f" ({format_duration(critical)}): it could never warn before critical"
        )
    if not lower_is_worse and warning > critical:
        raise ValueError(
            f"warning ({format_duration(warning)}) is more than critical"
            f" ({format_duration(critical)}): it could never warn before critical"
        )


def latency(seconds: float) -> str:
    """``0.4 ms``, ``12 ms``, ``1.53 s``."""
    if seconds < 0.01:
        return f"{seconds * 1000:.1f} ms"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    return f"{seconds:.2f} s"


def age(seconds: float) -> str:
    """``42s``, ``17m``, ``5.5h``, ``3.2d``: an age or a time left, to a useful precision."""
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 120 * 60:
        return f"{seconds / 60:.0f}m"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def endpoint(host: str, port: int) -> str:
    """``host:port``, with an IPv6 address in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
