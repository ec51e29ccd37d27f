"""Helpers shared by the standard checks' tests: call a check function directly."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import structlog

import toilbox
from toilbox.result import Metric


def context(tmp_path: Path, clock: Callable[[], datetime] | None = None) -> toilbox.TaskContext:
    """A TaskContext for calling a task function in the test's own process."""
    extra = {"clock": clock} if clock else {}
    return toilbox.TaskContext(
        task="t", run_id="r1", attempt=1, dry_run=False, log=structlog.get_logger(),
        state_dir=tmp_path, **extra,
    )


def metric(result: toilbox.Result, label: str) -> Metric:
    value = result.metrics[label]
    assert isinstance(value, Metric)
    return value
