"""`report -o PATH` (and report.summary's file targets) replace only a regular file or create
a new one: never through a device, a fifo or a symlink, never over a directory, never a
missing directory made unasked, and nothing left behind when a write fails.

Real `toilbox` processes; a device node, a fifo and a full file system made for the test.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest


@pytest.fixture
def config(write_config, toilbox):
    path = write_config("tasks:\n  a: {uses: check.faults}\n")
    assert toilbox("-c", str(path), "run", "a").code == 0  # a history to report on
    return path


def _leftovers(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if p.name.endswith(".tmp")]


def test_a_new_file_is_created_and_a_regular_file_replaced(toilbox, config, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    target = out / "report.md"
    made = toilbox("-c", str(config), "report", "-o", str(target))
    assert made.code == 0, made.err
    assert target.read_text().startswith("# toilbox report")
    target.write_text("old")
    target.chmod(0o640)
    inode = target.stat().st_ino
    replaced = toilbox("-c", str(config), "report", "-o", str(target), "--format", "json")
    assert replaced.code == 0
    assert target.read_text().startswith("{")
    assert target.stat().st_ino != inode, "replaced by a rename, never rewritten in place"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640, "the permissions it replaced are kept"
    assert _leftovers(out) == []


def _device(path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("only root can make a device node")
    os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # our own /dev/null


@pytest.mark.parametrize(
    ("make", "kind"),
    [
        (_device, "a character device"),
        (lambda p: os.mkfifo(p), "a fifo"),
        (lambda p: p.mkdir(), "a directory"),
        (lambda p: p.symlink_to(p.parent / "elsewhere.md"), "a symlink"),
    ],
    ids=["device", "fifo", "directory", "symlink"],
)
def test_anything_but_a_regular_file_is_refused(toilbox, config, tmp_path, make, kind):
    out = tmp_path / "out"
    out.mkdir()
    (out / "elsewhere.md").write_text("not to be touched")
    target = out / "report.md"
    make(target)
    before = target.lstat()
    result = toilbox("-c", str(config), "report", "-o", str(target), timeout=30)
    assert result.code == 3
    assert result.err == (f"toilbox: error: report: cannot write {target}: it is {kind}: only a"
                          " regular file is replaced\n")
    after = target.lstat()
    assert (after.st_ino, after.st_mode) == (before.st_ino, before.st_mode), "left as it was"
    assert (out / "elsewhere.md").read_text() == "not to be touched"
    assert _leftovers(out) == []


def test_a_missing_directory_is_not_created(toilbox, config, tmp_path):
    target = tmp_path / "no" / "such" / "report.md"
    result = toilbox("-c", str(config), "report", "-o", str(target))
    assert result.code == 3
    assert result.err == (f"toilbox: error: report: cannot write {target}: directory"
                          f" {target.parent} does not exist (it is not created)\n")
    assert not (tmp_path / "no").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to mount a tiny tmpfs")
def test_a_failed_write_leaves_the_old_file_and_no_temporary(toilbox, config, tmp_path):
    full = tmp_path / "full"
    full.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(full)],
                      check=False, capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        (full / "report.md").write_text("the old report")
        (full / "filler").write_bytes(b"x" * 8192)
        result = toilbox("-c", str(config), "report", "-o", str(full / "report.md"),
                         "--format", "html")
        assert result.code == 3
        assert result.err.startswith(f"toilbox: error: report: cannot write {full}/report.md: ")
        assert "No space left on device" in result.err
        assert (full / "report.md").read_text() == "the old report"
        assert sorted(p.name for p in full.iterdir()) == ["filler", "report.md"]
    finally:
        subprocess.run(["umount", str(full)], check=False)


def test_the_scheduled_task_refuses_a_fifo_without_hanging(toilbox, write_config, tmp_path):
    fifo = tmp_path / "report.md"
    os.mkfifo(fifo)
    config = write_config(f"tasks:\n  a: {{uses: check.faults}}\n"
                          f"  daily: {{uses: report.summary, with: {{to: ['{fifo}']}}}}\n")
    assert toilbox("-c", str(config), "run", "a").code == 0
    result = toilbox("-c", str(config), "run", "daily", timeout=30)
    assert result.code == 2
    assert f"CRITICAL daily: cannot write {fifo}: it is a fifo: only a regular file is replaced" \
        in result.out
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
