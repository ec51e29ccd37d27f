"""cleanup.logs: compress, delete, keep; and compression that a crash cannot lose."""

from __future__ import annotations

import gzip
import logging
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog

import toilbox
from toilbox import Status
from toilbox_cleanups import logs
from toilbox_cleanups.params import LogsParams

DAY = 86400.0
QUIET = structlog.wrap_logger(structlog.PrintLogger(),
                              wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))


def run(tmp_path: Path, dry_run: bool = False, later: float = 0, **params: Any) -> toilbox.Result:
    params.setdefault("roots", [str(tmp_path / "logs")])
    now = datetime.now(UTC) + timedelta(seconds=later)
    ctx = toilbox.TaskContext(task="t", run_id="r1", attempt=1, dry_run=dry_run, log=QUIET,
                              state_dir=tmp_path / "state", clock=lambda: now)
    return logs.run(ctx, LogsParams.model_validate(params))


def log(path: Path, days: float, lines: int = 500) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(b"%d GET /index.html 200\n" % i for i in range(lines)))
    os.chmod(path, 0o640)
    when = time.time() - days * DAY
    os.utime(path, (when, when))
    return path


def names(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir()}


@pytest.fixture
def logdir(tmp_path: Path) -> Path:
    for day in range(6):
        log(tmp_path / "logs" / f"app-{day}.log", days=day * 4 + 0.5)
    log(tmp_path / "logs" / "other.txt", days=30)
    return tmp_path / "logs"


def test_compresses_old_logs_keeping_content_times_and_mode(tmp_path: Path, logdir: Path) -> None:
    original = (logdir / "app-2.log").read_bytes()
    mtime = (logdir / "app-2.log").stat().st_mtime
    result = run(tmp_path, compress_after="3d")
    assert names(logdir) == {"app-0.log", "app-1.log.gz", "app-2.log.gz", "app-3.log.gz",
                             "app-4.log.gz", "app-5.log.gz", "other.txt"}
    packed = logdir / "app-2.log.gz"
    assert gzip.decompress(packed.read_bytes()) == original
    assert packed.stat().st_mtime == pytest.approx(mtime, abs=1e-6)
    assert packed.stat().st_mode & 0o777 == 0o640
    assert result.status is Status.OK
    assert result.data["compressed"]["files"] == 5
    assert result.summary.startswith("compressed 5 files (")


def test_deletes_old_compressed_logs_but_keeps_the_newest(tmp_path: Path, logdir: Path) -> None:
    run(tmp_path, compress_after="1d")
    result = run(tmp_path, delete_after="10d", keep=5)
    # app-3,4,5 are older than 10 days; keep 5 of 6 logs, so only app-5 goes.
    assert names(logdir) == {"app-0.log", "app-1.log.gz", "app-2.log.gz", "app-3.log.gz",
                             "app-4.log.gz", "other.txt"}
    assert result.data["deleted_paths"] == [f"{logdir}/app-5.log.gz"]
    run(tmp_path, delete_after="10d", keep=0)
    assert names(logdir) == {"app-0.log", "app-1.log.gz", "app-2.log.gz", "other.txt"}


def test_plain_logs_are_never_deleted(tmp_path: Path, logdir: Path) -> None:
    run(tmp_path, delete_after="1d", keep=0)
    assert len(names(logdir)) == 7


def test_dry_run_and_budget(tmp_path: Path, logdir: Path) -> None:
    before = names(logdir)
    dry = run(tmp_path, dry_run=True, compress_after="3d")
    assert names(logdir) == before
    assert dry.summary.startswith("dry run: would compress 5 files and delete 0 compressed")
    assert "compress (sample of 5):" in dry.details
    run(tmp_path, compress_after="1d")
    over = run(tmp_path, delete_after="1d", keep=0, max_delete=3)
    assert over.status is Status.CRITICAL
    assert len(names(logdir)) == 7


def test_needs_something_to_do() -> None:
    with pytest.raises(ValueError, match="set compress_after, delete_after or both"):
        LogsParams(roots=["/srv/app/logs"])


def crash_at(step: str, tmp_path: Path) -> int:
    """Run a compression in a child that dies (as by SIGKILL or power loss) at ``step``."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        logs.STEPS.append(lambda name: os._exit(9) if name == step else None)
        try:
            run(tmp_path, compress_after="1d")
        finally:
            os._exit(0)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


@pytest.mark.parametrize("step", ["written", "linked"])
def test_a_crash_leaves_the_original_or_both_and_the_next_run_finishes(
    tmp_path: Path, step: str
) -> None:
    path = log(tmp_path / "logs" / "app.log", days=5)
    content = path.read_bytes()
    assert crash_at(step, tmp_path) == 9
    assert path.read_bytes() == content, "the original must survive a crash"
    if step == "linked":
        assert gzip.decompress((tmp_path / "logs" / "app.log.gz").read_bytes()) == content
    result = run(tmp_path, compress_after="1d", later=2 * 3600)  # temporaries are stale by then
    assert names(tmp_path / "logs") == {"app.log.gz"}
    assert gzip.decompress((tmp_path / "logs" / "app.log.gz").read_bytes()) == content
    assert result.status is Status.OK


def test_an_existing_different_gz_is_never_overwritten(tmp_path: Path) -> None:
    log(tmp_path / "logs" / "app.log", days=5)
    (tmp_path / "logs" / "app.log.gz").write_bytes(gzip.compress(b"something else"))
    result = run(tmp_path, compress_after="1d")
    assert (tmp_path / "logs" / "app.log").exists()
    assert gzip.decompress((tmp_path / "logs" / "app.log.gz").read_bytes()) == b"something else"
    assert result.status is Status.WARNING
    assert result.data["errors"]["samples"][0]["error"].endswith("app.log.gz already exists")


def test_a_log_written_to_during_compression_is_kept(tmp_path: Path) -> None:
    path = log(tmp_path / "logs" / "app.log", days=5)

    def append(step: str) -> None:
        if step == "written":
            with path.open("ab") as out:
                out.write(b"one more line\n")

    logs.STEPS.append(append)
    try:
        result = run(tmp_path, compress_after="1d")
    finally:
        logs.STEPS.clear()
    assert names(tmp_path / "logs") == {"app.log"}
    assert path.read_bytes().endswith(b"one more line\n")
    assert result.data["skipped"]["count"] == 1
