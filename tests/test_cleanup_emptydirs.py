"""cleanup.empty-dirs: deepest first, never the root, only what is really empty and old."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

import toilbox
from toilbox import Status
from toilbox_cleanups import emptydirs, report
from toilbox_cleanups.params import EmptyDirsParams

OLD = time.time() - 30 * 86400
QUIET = structlog.wrap_logger(structlog.PrintLogger(),
                              wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))


def clean(tmp_path: Path, dry_run: bool = False, **params: Any) -> toilbox.Result:
    params.setdefault("roots", [str(tmp_path / "root")])
    ctx = toilbox.TaskContext(task="t", run_id="r1", attempt=1, dry_run=dry_run, log=QUIET,
                              state_dir=tmp_path / "state")
    return emptydirs.run(ctx, EmptyDirsParams.model_validate(params))


def mkdirs(root: Path, *paths: str, old: bool = True) -> None:
    for path in paths:
        (root / path).mkdir(parents=True, exist_ok=True)
    if old:  # deepest first, so that making a child does not freshen its parent afterwards
        for directory in sorted(root.rglob("*"), key=lambda p: -len(p.parts)):
            if directory.is_dir() and not directory.is_symlink():
                os.utime(directory, (OLD, OLD))
        os.utime(root, (OLD, OLD))


def dirs(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "root").mkdir()
    return tmp_path / "root"


@pytest.fixture
def before_act() -> Iterator[Any]:
    yield report.BEFORE_ACT.append
    report.BEFORE_ACT.clear()


def test_nested_empty_directories_go_deepest_first_never_the_root(tmp_path: Path, root: Path) -> None:
    mkdirs(root, "a/b/c", "a/d", "e")
    result = clean(tmp_path)
    assert dirs(root) == set()
    assert root.is_dir()
    order = result.data["paths"]
    assert order.index(f"{root}/a/b/c") < order.index(f"{root}/a/b") < order.index(f"{root}/a")
    assert result.summary == f"removed 5 empty directories under {root}, 0 errors"


def test_anything_but_a_directory_keeps_a_directory(tmp_path: Path, root: Path) -> None:
    mkdirs(root, "file/x", "link", "fifo", "gone/deeper")
    (root / "file" / "x" / "f").write_text("")
    (root / "link" / "l").symlink_to("/nonexistent")
    os.mkfifo(root / "fifo" / "p")
    mkdirs(root)
    clean(tmp_path)
    assert dirs(root) == {"file", "file/x", "file/x/f", "link", "link/l", "fifo", "fifo/p"}


def test_older_than_on_the_directory(tmp_path: Path, root: Path) -> None:
    mkdirs(root, "old/new-child", "old2")
    os.utime(root / "old" / "new-child")  # just now
    result = clean(tmp_path, older_than="7d")
    assert dirs(root) == {"old", "old/new-child"}
    assert result.data["removed"]["dirs"] == 1


def test_dry_run_and_budget(tmp_path: Path, root: Path) -> None:
    mkdirs(root, "a", "b", "c")
    dry = clean(tmp_path, dry_run=True)
    assert dirs(root) == {"a", "b", "c"}
    assert dry.summary == f"dry run: would remove 3 empty directories under {root}"
    over = clean(tmp_path, max_delete=2)
    assert over.status is Status.CRITICAL
    assert dirs(root) == {"a", "b", "c"}
    assert over.summary.startswith("plan of 3 empty directories exceeds max_delete 2")


def test_exclude_keeps_a_subtree(tmp_path: Path, root: Path) -> None:
    mkdirs(root, "keep/me", "drop/me")
    clean(tmp_path, exclude=["keep/**"])
    assert dirs(root) == {"keep", "keep/me"}


def test_a_file_appearing_after_the_plan_keeps_its_directory(
    tmp_path: Path, root: Path, before_act: Any
) -> None:
    mkdirs(root, "a/b")
    before_act(lambda: (root / "a" / "b" / "new").write_text("x"))
    result = clean(tmp_path)
    assert dirs(root) == {"a", "a/b", "a/b/new"}
    assert result.data["skipped"]["count"] == 2  # b: no longer empty; a: its child is still there
    assert result.status is Status.OK


def test_a_directory_swapped_for_a_symlink_is_not_followed(
    tmp_path: Path, root: Path, before_act: Any
) -> None:
    outside = tmp_path / "outside"
    (outside / "empty").mkdir(parents=True)
    mkdirs(root, "a/empty")

    def swap() -> None:
        (root / "a").rename(root / "a.moved")
        (root / "a").symlink_to(outside)

    before_act(swap)
    clean(tmp_path)
    assert (outside / "empty").is_dir()
