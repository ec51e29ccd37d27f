"""The cleanups through the real `toilbox` command: examples, dry runs, budgets, audit, progress."""

from __future__ import annotations

import json
import logging
import os
import pty
import time
from pathlib import Path
from typing import Any

import pytest
import structlog
import yaml

import toilbox
from toilbox_cleanups import delete, files, pool, report
from toilbox_cleanups.params import FilesParams

EXAMPLE = Path(__file__).parent.parent / "configs" / "examples" / "cleanups.yaml"
OLD = time.time() - 30 * 86400


def make(path: Path, when: float = OLD, size: int = 10) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    os.utime(path, (when, when))
    return path


def run_json(toilbox: Any, config: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    done = toilbox("-c", str(config), "run", *args, "--json")
    assert "Traceback" not in done.err, done.err
    return done.code, json.loads(done.out), done.err


@pytest.fixture
def example(tmp_path: Path) -> Path:
    """The shipped example, its roots moved into tmp_path."""
    config = yaml.safe_load(EXAMPLE.read_text())
    for task in config["tasks"].values():
        task["with"]["roots"] = [str(tmp_path / r.strip("/").replace("/", "_"))
                                 for r in task["with"]["roots"]]
        for root in task["with"]["roots"]:
            Path(root).mkdir(exist_ok=True)
    config["state_dir"] = str(tmp_path / "state")
    path = tmp_path / "cleanups.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_every_example_task_runs(toilbox: Any, example: Path, tmp_path: Path) -> None:
    tmp = tmp_path / "var_tmp_myapp"
    make(tmp / "old.dat")
    make(tmp / "keep" / "old.dat")
    make(tmp / "x.lock")
    (tmp / "empty" / "dir").mkdir(parents=True)
    for directory in (tmp / "empty" / "dir", tmp / "empty"):
        os.utime(directory, (OLD, OLD))
    make(tmp_path / "var_log_myapp" / "app-1.log", when=time.time() - 2 * 86400)
    for task in ("app-tmp", "upload-spool", "cache-free-space", "app-empty-dirs", "app-logs"):
        code, result, _ = run_json(toilbox, example, task)
        assert (code, result["status"]) == (0, "ok"), result
    assert sorted(p.name for p in tmp.rglob("*")) == ["keep", "old.dat", "x.lock"]
    assert (tmp_path / "var_log_myapp" / "app-1.log.gz").exists()


@pytest.fixture
def config(write_config: Any, tmp_path: Path) -> Path:
    root = tmp_path / "root"
    for i in range(3):
        make(root / "sub" / f"old{i}", size=1000)
    make(root / "new", when=time.time())
    return write_config(f"""
        tasks:
          tmp: {{uses: cleanup.files, with: {{roots: ["{root}"], older_than: 7d, max_delete: 2}}}}
          roomy: {{uses: cleanup.files, with: {{roots: ["{root}"], older_than: 7d}}}}
    """)


def test_dry_run_prints_the_plan_and_changes_nothing(toilbox: Any, config: Path,
                                                     tmp_path: Path) -> None:
    root = tmp_path / "root"
    done = toilbox("-c", str(config), "run", "roomy", "--dry-run")
    assert done.code == 0
    assert f"OK roomy: dry run: would delete 3 files (2.9 KiB) of 4 scanned under {root}" in (
        done.out)
    assert "plan: 3 files (2.9 KiB) in 1 directory" in done.out
    assert f"     2.9 KiB         3 files  {root}/sub" in done.out
    assert f"    {root}/sub/old0" in done.out
    assert len(list(root.rglob("*"))) == 5
    _, result, _ = run_json(toilbox, config, "roomy", "--dry-run")
    assert sorted(result["data"]["paths"]) == [f"{root}/sub/old{i}" for i in range(3)]


def test_over_budget_exits_critical_and_force_overrides(toilbox: Any, config: Path,
                                                         tmp_path: Path) -> None:
    root = tmp_path / "root"
    code, result, _ = run_json(toilbox, config, "tmp")
    assert code == 2
    assert result["status"] == "critical"
    assert result["summary"] == ("plan of 3 files (2.9 KiB) exceeds max_delete 2: nothing deleted"
                                 " (--force overrides once)")
    assert len(list(root.rglob("old*"))) == 3
    code, result, _ = run_json(toilbox, config, "tmp", "--force")
    assert code == 0
    assert result["summary"].endswith("(forced past max_delete 2)")
    assert list(root.rglob("old*")) == []


def test_deleted_paths_are_debug_log_lines(toilbox: Any, config: Path, tmp_path: Path) -> None:
    done = toilbox("--log-level", "debug", "-c", str(config), "run", "roomy")
    assert done.code == 0
    lines = [json.loads(line) for line in done.err.splitlines() if line.startswith("{")]
    deleted = sorted(line["path"] for line in lines if line["event"] == "cleanup.deleted")
    assert deleted == [f"{tmp_path}/root/sub/old{i}" for i in range(3)]
    assert all(line["task"] == "roomy" for line in lines if line["event"] == "cleanup.deleted")
    assert "\x1b[" not in done.err, "no progress bar without a terminal"


def test_validate_catches_a_dangerous_root_with_its_line(toilbox: Any, write_config: Any) -> None:
    config = write_config("""
        tasks:
          oops:
            uses: cleanup.files
            with: {roots: [/var], older_than: 7d}
    """)
    done = toilbox("-c", str(config), "validate")
    assert done.code == 3
    assert ":6: tasks.oops.with: roots[0]: /var is a system directory; refused unless " \
           "allow_dangerous_root: true" in done.err


def test_the_entry_point_module_stays_light(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = ("import sys, toilbox_cleanups; "
            "print(sorted(m for m in ('rich', 'gzip', 'toilbox_cleanups.files') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("workers", [1, 2])
def test_a_progress_bar_on_a_terminal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      workers: int) -> None:
    monkeypatch.setattr(report.Progress, "START_AFTER_S", 0.0)
    monkeypatch.setattr(report.Progress, "REFRESH_S", 0.0)
    monkeypatch.setattr(pool, "PROGRESS_EVERY_S", 0.0)
    monkeypatch.setattr(delete, "INLINE_BELOW", 0)
    for d in range(4):
        for i in range(20):
            make(tmp_path / "root" / f"d{d}" / "a" / "b" / f"f{i}")
    master, slave = pty.openpty()
    console = os.fdopen(slave, "w")
    quiet = structlog.wrap_logger(structlog.PrintLogger(),
                                  wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))
    ctx = toilbox.TaskContext(task="t", run_id="r", attempt=1, dry_run=False, log=quiet,
                              state_dir=tmp_path / "state", console=console)
    result = files.run(ctx, FilesParams(roots=[str(tmp_path / "root")], workers=workers))
    console.close()
    shown = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        shown += chunk
    os.close(master)
    assert result.data["deleted"]["files"] == 80
    assert b"scanning" in shown
    assert b"deleting" in shown
    assert b"\x1b[" in shown
