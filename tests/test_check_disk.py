"""check.disk on real filesystems, and on made-up statvfs numbers for the exact arithmetic."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

import toilbox
from tests.checks import context, metric
from toilbox import Metric, Status
from toilbox_checks import disk
from toilbox_checks.disk import Params, Threshold

MiB = 1024**2
GiB = 1024**3
NEVER = {"warning": "100%", "critical": "100%", "inodes_warning": "100%", "inodes_critical": "100%"}



def check(tmp_path: Path, **params: Any) -> toilbox.Result:
    return disk.run(context(tmp_path), Params.model_validate(params))



@pytest.fixture
def fake_fs(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """A filesystem at /data: 20 GiB in 1 MiB blocks, 42% used as df counts it, 3% of inodes."""
    fs = {"blocks": 20480, "bfree": 16280, "bavail": 5800, "files": 1000, "ffree": 970}
    real_statvfs = os.statvfs

    def statvfs(path: Any) -> os.statvfs_result:
        if os.fspath(path) != "/data":
            return real_statvfs(path)
        return os.statvfs_result(
            (4096, MiB, fs["blocks"], fs["bfree"], fs["bavail"], fs["files"], fs["ffree"],
             fs["ffree"], 0, 255)
        )

    monkeypatch.setattr(os, "statvfs", statvfs)
    return fs


# --- a real filesystem ---


def test_ok_on_a_real_filesystem(tmp_path: Path) -> None:
    result = check(tmp_path, path=str(tmp_path), **NEVER)
    assert result.status is Status.OK
    pattern = (
        rf"{re.escape(str(tmp_path))} \d+\.\d% used, [\d.]+ (B|KiB|MiB|GiB|TiB) free"
        r" of [\d.]+ (B|KiB|MiB|GiB|TiB)(; inodes \d+% used)?"
    )
    assert re.fullmatch(pattern, result.summary), result.summary
    assert result.data == {"path": str(tmp_path)}


def test_numbers_agree_with_shutil_disk_usage(tmp_path: Path) -> None:
    result = check(tmp_path, path=str(tmp_path), **NEVER)
    usage = shutil.disk_usage(tmp_path)
    slack = usage.total / 100  # other processes write between the two measurements
    assert metric(result, "size_bytes").value == usage.total
    assert metric(result, "used_bytes").value == pytest.approx(usage.used, abs=slack)
    assert metric(result, "free_bytes").value == pytest.approx(usage.free, abs=slack)
    used_pct = metric(result, "used_pct")
    expected_pct = 100 * usage.used / (usage.used + usage.free)
    assert used_pct.value == pytest.approx(expected_pct, abs=1)
    assert (used_pct.unit, used_pct.min, used_pct.max) == ("%", 0, 100)


def test_warning_when_used_reaches_the_warning_percentage(tmp_path: Path) -> None:
    result = check(tmp_path, **{**NEVER, "path": str(tmp_path), "warning": "0%"})
    assert result.status is Status.WARNING
    used_pct = metric(result, "used_pct")
    assert (used_pct.warn, used_pct.crit) == (0.0, 100.0)


def test_critical_when_used_reaches_the_critical_percentage(tmp_path: Path) -> None:
    result = check(tmp_path, **{**NEVER, "path": str(tmp_path), "warning": "0%", "critical": "0%"})
    assert result.status is Status.CRITICAL


def test_a_free_size_threshold(tmp_path: Path) -> None:
    result = check(tmp_path, **{**NEVER, "path": str(tmp_path), "warning": "1PiB", "critical": "0B"})
    assert result.status is Status.WARNING  # less than a pebibyte free
    free = metric(result, "free_bytes")
    assert (free.warn, free.crit) == (f"{1024**5}:", "0:")
    assert metric(result, "used_pct").warn is None


def test_a_file_path_measures_its_filesystem(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    assert check(tmp_path, path=str(tmp_path / "f"), **NEVER).status is Status.OK


@pytest.mark.parametrize("missing", ["does-not-exist", "file/below-a-file"])
def test_a_missing_path_fails_the_task(tmp_path: Path, missing: str) -> None:
    (tmp_path / "file").write_text("x")
    path = tmp_path / missing
    with pytest.raises(toilbox.TaskFailed, match=f"path {re.escape(str(path))} does not exist"):
        check(tmp_path, path=str(path))


# --- exact arithmetic on made-up numbers ---


def test_summary_and_metrics(tmp_path: Path, fake_fs: dict[str, int]) -> None:
    result = check(tmp_path, path="/data")
    assert result.status is Status.OK
    assert result.summary == "/data 42.0% used, 5.7 GiB free of 20.0 GiB; inodes 3% used"
    assert result.metrics == {
        "used_pct": Metric(42.0, "%", 80.0, 90.0, 0, 100),
        "used_bytes": Metric(4200 * MiB, "B", min=0, max=20 * GiB),
        "free_bytes": Metric(5800 * MiB, "B", None, None, 0, 20 * GiB),
        "size_bytes": Metric(20 * GiB, "B", min=0),
        "inodes_used_pct": Metric(3.0, "%", 80.0, 90.0, 0, 100),
    }


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"warning": "42%"}, Status.WARNING),  # reached at, not only above
        ({"warning": "42.1%"}, Status.OK),
        ({"critical": "42%"}, Status.CRITICAL),
        ({"warning": "5800MiB"}, Status.OK),  # exactly that much free is not below it
        ({"warning": "5801MiB"}, Status.WARNING),
        ({"warning": "1GiB", "critical": "6GiB"}, Status.CRITICAL),
    ],
)
def test_thresholds(
    tmp_path: Path, fake_fs: dict[str, int], params: dict[str, str], status: Status
) -> None:
    assert check(tmp_path, path="/data", **params).status is status


@pytest.mark.parametrize(
    ("ffree", "space", "expected"),
    [
        (15, {}, Status.WARNING),  # 85% of inodes used
        (5, {}, Status.CRITICAL),
        (5, {"warning": "0%"}, Status.CRITICAL),  # worst of space and inodes
        (50, {"critical": "0%"}, Status.CRITICAL),
        (50, {"warning": "0%"}, Status.WARNING),
    ],
)
def test_inodes_and_the_worst_status_wins(
    tmp_path: Path, fake_fs: dict[str, int], ffree: int, space: dict[str, str], expected: Status
) -> None:
    fake_fs.update(files=100, ffree=ffree)
    result = check(tmp_path, path="/data", **space)
    assert result.status is expected
    assert result.summary.endswith(f"; inodes {100 - ffree}% used")


def test_inode_thresholds_can_be_turned_off(tmp_path: Path, fake_fs: dict[str, int]) -> None:
    fake_fs.update(files=100, ffree=0)
    result = check(tmp_path, path="/data", inodes_warning=None, inodes_critical=None)
    assert result.status is Status.OK
    inodes = metric(result, "inodes_used_pct")
    assert (inodes.value, inodes.warn, inodes.crit) == (100.0, None, None)


def test_no_inode_table_means_no_inode_check(tmp_path: Path, fake_fs: dict[str, int]) -> None:
    fake_fs.update(files=0, ffree=0)
    result = check(tmp_path, path="/data", inodes_warning="0%", inodes_critical="0%")
    assert result.status is Status.OK
    assert result.summary == "/data 42.0% used, 5.7 GiB free of 20.0 GiB"
    assert "inodes_used_pct" not in result.metrics


def test_an_empty_filesystem(tmp_path: Path, fake_fs: dict[str, int]) -> None:
    fake_fs.update(blocks=0, bfree=0, bavail=0, files=0)
    result = check(tmp_path, path="/data")
    assert result.status is Status.OK
    assert result.summary == "/data 0.0% used, 0 B free of 0 B"


# --- params ---


def test_defaults() -> None:
    params = Params()
    assert params.path == Path("/")
    assert params.warning == Threshold(used_pct=80)
    assert params.critical == Threshold(used_pct=90)
    assert (params.inodes_warning, params.inodes_critical) == (80.0, 90.0)


def test_thresholds_parse_and_round_trip() -> None:
    # Inode thresholds left out: toilbox.units.Percent does not serialise back to "80%" yet.
    raw = {"warning": "12.5%", "critical": "10GiB", "inodes_warning": None, "inodes_critical": None}
    params = Params.model_validate(raw)
    assert params.warning == Threshold(used_pct=12.5)
    assert params.critical == Threshold(free_bytes=10 * GiB)
    assert Params.model_validate(params.model_dump()) == params
    assert Params.model_validate_json(params.model_dump_json()) == params


@pytest.mark.parametrize(
    ("raw", "got"),
    [
        ({"warning": "eighty"}, 'got "eighty"'),
        ({"critical": "80"}, 'got "80"'),  # 80% or 80 bytes free? refused, not guessed
        ({"warning": 80}, "got 80"),
        ({"warning": "120%"}, 'got "120%"'),
        ({"critical": "-5%"}, 'got "-5%"'),
        ({"warning": "10 parsecs"}, 'got "10 parsecs"'),
        ({"warning": None}, "got None"),
    ],
)
def test_bad_thresholds(raw: dict[str, Any], got: str) -> None:
    with pytest.raises(ValidationError) as info:
        Params.model_validate(raw)
    message = "expected a percentage used like 80% or a free size like 10GiB, " + got
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"inodes_warning": "10GiB"}, 'expected a percentage like 80%, got "10GiB"'),
        ({"inodes_critical": "90"}, 'expected a percentage like 80%, got "90"'),
        ({"paths": ["/"]}, "Extra inputs are not permitted"),
    ],
)
def test_bad_params(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as info:
        Params.model_validate(raw)
    assert message in str(info.value)
