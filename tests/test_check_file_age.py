"""check.file-age on real files whose modification times the test sets with os.utime."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog
from pydantic import ValidationError

import toilbox
from tests import checks
from tests.checks import metric
from toilbox import Metric, Status
from toilbox_checks import file_age
from toilbox_checks.file_age import Params

HOUR = 3600
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def context(tmp_path: Path) -> toilbox.TaskContext:
    return checks.context(tmp_path, clock=lambda: NOW)


def check(tmp_path: Path, **params: Any) -> toilbox.Result:
    return file_age.run(context(tmp_path), Params.model_validate(params))


def aged(path: Path, hours: float, content: bytes = b"backup data") -> Path:
    """A file last modified `hours` before NOW."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    mtime = (NOW - timedelta(hours=hours)).timestamp()
    os.utime(path, (mtime, mtime))
    return path



def test_the_newest_file_counts(tmp_path: Path) -> None:
    aged(tmp_path / "db-1.tar.gz", 50)
    newest = aged(tmp_path / "db-2.tar.gz", 2)
    aged(tmp_path / "db-3.tar.gz", 26)
    aged(tmp_path / "notes.txt", 0)  # newer, but not matching
    result = check(tmp_path, path=f"{tmp_path}/*.tar.gz", warning="25h", critical="49h")
    assert result.status is Status.OK
    assert result.summary == f"{newest} (newest of 3) is 2.0h old, 11 B"
    assert result.metrics == {
        "age": Metric(2 * HOUR, "s", 25 * HOUR, 49 * HOUR, 0),
        "size_bytes": Metric(11, "B", None, "1:", 0),
        "files": Metric(3, "", min=0),
    }
    assert result.data == {
        "path": f"{tmp_path}/*.tar.gz",
        "newest": str(newest),
        "modified": (NOW - timedelta(hours=2)).isoformat(),
        "files": 3,
    }


@pytest.mark.parametrize(
    ("hours", "status", "words"),
    [
        (24.9, Status.OK, ""),
        (25, Status.WARNING, "; older than the warning threshold of 25h"),  # reached at, not after
        (30, Status.WARNING, "; older than the warning threshold of 25h"),
        (49, Status.CRITICAL, "; older than the critical threshold of 49h"),
        (24 * 10, Status.CRITICAL, "; older than the critical threshold of 49h"),
    ],
)
def test_age_thresholds(tmp_path: Path, hours: float, status: Status, words: str) -> None:
    aged(tmp_path / "heartbeat", hours)
    result = check(tmp_path, path=f"{tmp_path}/heartbeat", warning="25h", critical="49h")
    assert result.status is status
    assert result.summary.endswith(words)
    assert metric(result, "age").value == pytest.approx(hours * HOUR)


def test_ages_read_well(tmp_path: Path) -> None:
    beat = tmp_path / "beat"
    for hours, shown in [(10 / HOUR, "10s"), (0.5, "30m"), (5.5, "5.5h"), (24 * 3.25, "3.2d")]:
        aged(beat, hours)
        assert f" is {shown} old, " in check(tmp_path, path=str(beat), critical="30d").summary


def test_only_one_threshold(tmp_path: Path) -> None:
    aged(tmp_path / "beat", 100)
    assert check(tmp_path, path=f"{tmp_path}/beat", critical="200h").status is Status.OK
    assert check(tmp_path, path=f"{tmp_path}/beat", warning="1h").status is Status.WARNING


def test_an_empty_newest_file_is_critical(tmp_path: Path) -> None:
    aged(tmp_path / "old.sql", 30)
    empty = aged(tmp_path / "new.sql", 1, content=b"")
    result = check(tmp_path, path=f"{tmp_path}/*.sql", warning="1d", critical="2d")
    assert result.status is Status.CRITICAL
    assert result.summary == f"{empty} (newest of 2) is 60m old, 0 B; it is empty"


def test_empty_and_old(tmp_path: Path) -> None:
    aged(tmp_path / "x.sql", 30, content=b"")
    result = check(tmp_path, path=f"{tmp_path}/x.sql", warning="1d")
    assert result.status is Status.CRITICAL
    assert result.summary.endswith("; older than the warning threshold of 1d; it is empty")


def test_no_match_is_critical(tmp_path: Path) -> None:
    aged(tmp_path / "other.txt", 1)
    result = check(tmp_path, path=f"{tmp_path}/*.tar.gz", warning="1d")
    assert result.status is Status.CRITICAL
    assert result.summary == f"no file matches {tmp_path}/*.tar.gz"
    assert result.metrics == {"files": Metric(0, "", min=0)}


def test_a_missing_directory_is_no_match(tmp_path: Path) -> None:
    result = check(tmp_path, path=f"{tmp_path}/nope/*.tar.gz", warning="1d")
    assert result.status is Status.CRITICAL
    assert result.summary.startswith("no file matches ")


def test_directories_do_not_count(tmp_path: Path) -> None:
    file = aged(tmp_path / "backup-1", 10)
    (tmp_path / "backup-2").mkdir()  # newer, but a directory
    result = check(tmp_path, path=f"{tmp_path}/backup-*", warning="1d")
    assert result.data["newest"] == str(file)
    assert result.data["files"] == 1


def test_a_symlink_counts_as_its_target_and_a_dangling_one_not_at_all(tmp_path: Path) -> None:
    target = aged(tmp_path / "real" / "db.tar.gz", 3)
    (tmp_path / "latest.tar.gz").symlink_to(target)
    (tmp_path / "broken.tar.gz").symlink_to(tmp_path / "gone")
    result = check(tmp_path, path=f"{tmp_path}/*.tar.gz", warning="1d")
    assert result.status is Status.OK
    assert result.data["newest"] == str(tmp_path / "latest.tar.gz")
    assert result.data["files"] == 1


def test_recursive_globs(tmp_path: Path) -> None:
    aged(tmp_path / "a" / "x.log", 5)
    deep = aged(tmp_path / "b" / "c" / "y.log", 1)
    result = check(tmp_path, path=f"{tmp_path}/**/*.log", warning="1d")
    assert result.data["newest"] == str(deep)
    assert result.data["files"] == 2


def test_a_file_from_the_future_is_brand_new(tmp_path: Path) -> None:
    aged(tmp_path / "skewed", -2)
    result = check(tmp_path, path=f"{tmp_path}/skewed", warning="1h")
    assert result.status is Status.OK
    assert metric(result, "age").value == 0


def test_the_real_clock_by_default(tmp_path: Path) -> None:
    (tmp_path / "now").write_text("x")
    ctx = toilbox.TaskContext(
        task="t", run_id="r1", attempt=1, dry_run=False, log=structlog.get_logger(),
        state_dir=tmp_path,
    )
    result = file_age.run(ctx, Params(path=f"{tmp_path}/now", warning="1m"))
    assert result.status is Status.OK
    assert metric(result, "age").value < 60
    assert time.time() - (tmp_path / "now").stat().st_mtime < 60


def test_home_is_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    aged(tmp_path / "beat", 1)
    result = check(tmp_path, path="~/beat", warning="1d")
    assert result.status is Status.OK
    assert result.data["newest"] == str(tmp_path / "beat")


# --- params ---


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"warning": "1d"}, "Field required"),
        ({"path": "/b/*", "warning": "26"}, "a duration needs a unit here (26 could mean seconds or days): write 26d, 26h, 26m or 26s"),
        ({"path": "/b/*", "critical": 2}, "a duration needs a unit here (2 could mean seconds or days)"),
        ({"path": "/b/*"}, "set warning, critical or both"),
        ({"path": "/b/*", "warning": "2d", "critical": "1d"}, "warning (2d) is more than critical (1d)"),
        ({"path": "/b/*", "warning": "yesterday"}, 'expected a duration like 30s, 10m, 2h or 7d, got "yesterday"'),
        ({"path": "/b/*", "warning": "1d", "min_size": "1MB"}, "Extra inputs are not permitted"),
    ],
)
def test_bad_params(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as info:
        Params.model_validate(raw)
    assert message in str(info.value)
