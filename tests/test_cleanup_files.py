"""cleanup.files on real trees: filters, targets, budgets, dry runs and the audit trail."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import structlog

import toilbox
from toilbox import Status
from toilbox_cleanups import delete, files, filescan, report
from toilbox_cleanups.params import FilesParams

DAY = 86400.0


def context(tmp_path: Path, **kwargs: Any) -> toilbox.TaskContext:
    kwargs.setdefault("log", structlog.get_logger())
    return toilbox.TaskContext(task="t", run_id="r1", attempt=1, dry_run=kwargs.pop("dry_run", False),
                               state_dir=tmp_path / "state", **kwargs)


def make(path: Path, days: float = 10, size: int = 10, now: float | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    when = (now or time.time()) - days * DAY
    os.utime(path, (when, when))
    return path


def clean(tmp_path: Path, ctx_args: dict[str, Any] | None = None, **params: Any) -> toilbox.Result:
    params.setdefault("roots", [str(tmp_path / "root")])
    return files.run(context(tmp_path, **(ctx_args or {})), FilesParams.model_validate(params))


def remaining(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir() or p.is_symlink()}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    root.mkdir()
    return root


def test_older_than_deletes_only_old_files_and_reports_them(tmp_path: Path, root: Path) -> None:
    make(root / "old.tmp")
    make(root / "a" / "b" / "old.dat", size=100)
    make(root / "new.tmp", days=1)
    result = clean(tmp_path, older_than="7d")
    assert result.status is Status.OK
    assert remaining(root) == {"new.tmp"}
    assert result.summary == f"deleted 2 files, 110 B freed under {root}, 0 errors"
    assert sorted(result.data["paths"]) == [f"{root}/a/b/old.dat", f"{root}/old.tmp"]
    assert result.data["deleted"] == {"files": 2, "bytes": 110}
    assert result.data["scanned"]["files"] == 3
    assert result.metrics["files_deleted"] == 2


def test_dry_run_changes_nothing_and_shows_the_plan(tmp_path: Path, root: Path) -> None:
    for i in range(12):
        make(root / f"d{i % 3}" / f"f{i}", size=1000 * (i % 3 + 1))
    result = clean(tmp_path, {"dry_run": True}, older_than="7d")
    assert len(remaining(root)) == 12
    assert result.status is Status.OK
    assert result.summary == (
        f"dry run: would delete 12 files (23.4 KiB) of 12 scanned under {root}")
    assert "plan: 12 files (23.4 KiB) in 3 directories" in result.details
    assert "largest directories:" in result.details
    assert f"  11.7 KiB         4 files  {root}/d2" in result.details
    assert "sample (10 paths):" in result.details
    assert len(result.data["paths"]) == 12  # the full list, for --json
    assert result.data["plan"]["largest_dirs"][0] == {"path": f"{root}/d2", "files": 4,
                                                      "bytes": 12000}


@pytest.mark.parametrize(
    ("params", "left"),
    [
        ({"include": ["*.tmp"]}, {"keep.log", "sub/keep.log", "cache/x.bin"}),
        ({"exclude": ["*.log"]}, {"keep.log", "sub/keep.log"}),
        ({"include": ["sub/*"]}, {"a.tmp", "keep.log", "cache/x.bin", "sub/deeper/b.tmp"}),
        ({"include": ["sub/**"]}, {"a.tmp", "keep.log", "cache/x.bin"}),
        ({"exclude": ["cache/**"]}, {"cache/x.bin"}),
        ({"exclude": ["/a.tmp", "sub/deeper/"]}, {"a.tmp", "sub/deeper/b.tmp"}),
    ],
)
def test_include_and_exclude_match_the_path_from_the_root(
    tmp_path: Path, root: Path, params: dict[str, Any], left: set[str]
) -> None:
    for name in ("a.tmp", "keep.log", "sub/keep.log", "sub/c.tmp", "sub/deeper/b.tmp",
                 "cache/x.bin"):
        make(root / name)
    clean(tmp_path, **params)
    assert remaining(root) == left


def test_larger_than(tmp_path: Path, root: Path) -> None:
    make(root / "big", size=2000)
    make(root / "small", size=999)
    clean(tmp_path, larger_than="1KB")
    assert remaining(root) == {"small"}


def test_keep_newest_per_directory(tmp_path: Path, root: Path) -> None:
    for d in ("a", "b"):
        for age in (8, 9, 10, 11):
            make(root / d / f"{age}d", days=age)
    make(root / "c" / "1d", days=1)
    clean(tmp_path, older_than="7d", keep_newest=2)
    assert remaining(root) == {"a/8d", "a/9d", "b/8d", "b/9d", "c/1d"}


@pytest.mark.parametrize("age_by", ["atime", "mtime"])
def test_age_by(tmp_path: Path, root: Path, age_by: str) -> None:
    path = make(root / "read-recently")
    old = time.time() - 10 * DAY
    os.utime(path, (time.time(), old))  # atime now, mtime old
    clean(tmp_path, older_than="7d", age_by=age_by)
    assert path.exists() == (age_by == "atime")


def test_max_total_size_deletes_oldest_first(tmp_path: Path, root: Path) -> None:
    for age in range(1, 11):  # ten 1000-byte files, 1 to 10 days old
        make(root / f"{age:02d}d", days=age, size=1000)
    result = clean(tmp_path, max_total_size="7500B")
    assert remaining(root) == {f"{age:02d}d" for age in range(1, 8)}
    assert result.status is Status.OK
    assert "target max_total_size 7.3 KiB: 9.8 KiB matched now, 6.8 KiB after the plan" in (
        result.details)


def test_max_total_size_combines_with_older_than(tmp_path: Path, root: Path) -> None:
    for age in range(1, 11):
        make(root / f"{age:02d}d", days=age, size=1000)
    result = clean(tmp_path, max_total_size="2000B", older_than="8d")
    assert remaining(root) == {f"{age:02d}d" for age in range(1, 8)}
    assert result.status is Status.WARNING  # only 3 files were old enough
    assert "max_total_size 2.0 KiB not reachable" in result.summary


@pytest.fixture
def small_fs(tmp_path: Path) -> Path:
    """A 1 MiB tmpfs mounted at root: free space under the test's control."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "root"
    mount.mkdir(exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
                          capture_output=True, text=True, check=False)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_min_free_deletes_oldest_until_the_filesystem_has_enough(
    tmp_path: Path, small_fs: Path
) -> None:
    for age in range(1, 9):  # 8 x 100 KiB of a 1 MiB filesystem
        make(small_fs / f"{age}d", days=age, size=100 * 1024)
    result = clean(tmp_path, min_free="50%")
    assert remaining(small_fs) == {"1d", "2d", "3d", "4d", "5d"}
    assert result.status is Status.OK
    vfs = os.statvfs(small_fs)
    assert vfs.f_bavail / vfs.f_blocks >= 0.5
    assert "target min_free 50% on the filesystem of" in result.details


def test_min_free_unreachable_is_a_warning(tmp_path: Path, small_fs: Path) -> None:
    make(small_fs / "old", size=100 * 1024)
    make(small_fs / "new", days=0, size=100 * 1024)
    result = clean(tmp_path, min_free="95%", older_than="1d")
    assert remaining(small_fs) == {"new"}
    assert result.status is Status.WARNING
    assert "min_free 95% not reachable" in result.summary


# --- budgets ---


def test_over_max_delete_nothing_is_deleted_and_the_run_is_critical(
    tmp_path: Path, root: Path
) -> None:
    for i in range(5):
        make(root / f"f{i}", size=100)
    result = clean(tmp_path, max_delete=4)
    assert len(remaining(root)) == 5
    assert result.status is Status.CRITICAL
    assert result.summary == (
        "plan of 5 files (500 B) exceeds max_delete 4: nothing deleted (--force overrides once)")
    assert result.data["budget"] == {"max_delete": 4, "max_delete_bytes": None,
                                     "exceeded": True, "forced": False}
    assert "EXCEEDED: nothing will be changed" in result.details


def test_over_max_delete_bytes(tmp_path: Path, root: Path) -> None:
    make(root / "a", size=600)
    make(root / "b", size=600)
    result = clean(tmp_path, max_delete_bytes="1KB")
    assert result.status is Status.CRITICAL
    assert "exceeds max_delete_bytes 1000 B" in result.summary
    assert len(remaining(root)) == 2


def test_force_goes_past_the_budget_once(tmp_path: Path, root: Path) -> None:
    for i in range(5):
        make(root / f"f{i}")
    result = clean(tmp_path, {"force": True}, max_delete=4)
    assert remaining(root) == set()
    assert result.status is Status.OK
    assert result.summary.endswith("(forced past max_delete 4)")
    assert result.data["budget"]["forced"] is True


def test_default_budget_is_10000_files(tmp_path: Path) -> None:
    assert FilesParams(roots=["/srv/app/tmp"]).max_delete == 10_000
    assert FilesParams(roots=["/srv/app/tmp"]).max_delete_bytes is None


def test_a_dry_run_over_budget_says_so(tmp_path: Path, root: Path) -> None:
    make(root / "a")
    make(root / "b")
    result = clean(tmp_path, {"dry_run": True}, max_delete=1)
    assert result.status is Status.CRITICAL
    assert "exceeds max_delete 1" in result.summary


# --- audit ---


def test_many_deleted_paths_go_to_an_artifact(
    tmp_path: Path, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(report, "INLINE_PATHS", 3)
    for i in range(5):
        make(root / f"f{i}")
    result = clean(tmp_path)
    artifact = Path(result.data["paths_file"])
    assert artifact.parent == tmp_path / "state" / "audit"
    saved = json.loads(artifact.read_text())
    assert sorted(saved["paths"]) == [f"{root}/f{i}" for i in range(5)]
    assert saved["kind"] == "deleted"
    assert result.data["paths_total"] == 5
    assert len(result.data["paths"]) == 5 if report.SAMPLE >= 5 else report.SAMPLE


def test_old_artifacts_are_pruned(tmp_path: Path, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(report, "INLINE_PATHS", 0)
    monkeypatch.setattr(report, "KEEP_ARTIFACTS", 2)
    for run in range(4):
        make(root / f"f{run}")
        ctx = toilbox.TaskContext(task="t", run_id=f"r{run}", attempt=1, dry_run=False,
                                  log=structlog.get_logger(), state_dir=tmp_path / "state")
        files.run(ctx, FilesParams(roots=[str(root)]))
        os.utime(Path(tmp_path / "state" / "audit" / f"r{run}-deleted.json"),
                 (time.time() - 100 + run, time.time() - 100 + run))
    assert sorted(p.name for p in (tmp_path / "state" / "audit").iterdir()) == [
        "r2-deleted.json", "r3-deleted.json"]


def test_paths_are_logged_at_debug(tmp_path: Path, root: Path) -> None:
    make(root / "gone")
    capture = structlog.testing.LogCapture()
    log = structlog.wrap_logger(None, processors=[capture],
                                wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    clean(tmp_path, {"log": log})
    assert {"event": "cleanup.deleted", "path": f"{root}/gone", "log_level": "debug"} in (
        capture.entries)


# --- workers ---


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_workers_agree(tmp_path: Path, root: Path, workers: int,
                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(delete, "INLINE_BELOW", 0)  # fork for the deletes too
    expected = set()
    for d in range(6):
        for i in range(7):
            # Deep enough that the scan hands subtrees to workers (it opens 2 levels itself).
            make(root / f"d{d}" / "x" / "y" / f"s{i % 2}" / f"f{i}", days=10 if i % 2 else 1)
            if i % 2 == 0:
                expected.add(f"d{d}/x/y/s0/f{i}")
    make(root / "top", days=10)
    result = clean(tmp_path, older_than="7d", workers=workers)
    assert remaining(root) == expected
    assert result.data["deleted"]["files"] == 19
    assert result.data["scanned"] == {"files": 43, "dirs": 31, "matched": 43,
                                      "matched_bytes": 430}


def test_a_crashing_worker_is_reported_and_nothing_is_deleted(
    tmp_path: Path, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for d in range(4):
        make(root / f"d{d}" / "a" / "b" / "c" / "f")
    parent = os.getpid()
    real = filescan.make_visit

    def crashing(*args: Any) -> Any:
        visit = real(*args)

        def crash(fd: int, node: int) -> list[str]:
            if os.getpid() != parent:
                os.kill(os.getpid(), signal.SIGKILL)
            return visit(fd, node)

        return crash

    monkeypatch.setattr(filescan, "make_visit", crashing)
    with pytest.raises(Exception, match=r"worker \d of 2 failed: killed by SIGKILL"):
        clean(tmp_path, workers=2)
    assert len(remaining(root)) == 4


def test_workers_stay_in_the_task_process_group(
    tmp_path: Path, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """So that a timeout, which kills the task's process group, kills them too."""
    for d in range(4):
        make(root / f"d{d}" / "a" / "b" / "c" / "f")
    seen = tmp_path / "groups"
    real = filescan.make_visit

    def recording(*args: Any) -> Any:
        visit = real(*args)

        def record(fd: int, node: int) -> list[str]:
            with seen.open("a") as out:
                out.write(f"{os.getpid()} {os.getpgid(0)}\n")
            return visit(fd, node)

        return record

    monkeypatch.setattr(filescan, "make_visit", recording)
    clean(tmp_path, workers=2)
    rows = {tuple(line.split()) for line in seen.read_text().splitlines()}
    assert {pgid for _, pgid in rows} == {str(os.getpgid(0))}
    assert len({pid for pid, _ in rows}) >= 2
