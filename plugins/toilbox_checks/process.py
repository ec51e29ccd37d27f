"""check.process: how many processes match a name, a command line or a pidfile, and their RSS."""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

import toilbox
from toilbox.units import ConfigPath, Size, format_size
from toilbox_checks.levels import Regex, at_least, level

if TYPE_CHECKING:
    import psutil

    from toilbox.tasktypes import RegisterTaskType

PIDS_KEPT = 50
"""At most this many matched pids are kept in the run's data."""


class Params(BaseModel):
    # Built on first use: start-up pays only for the task types a config uses.
    model_config = ConfigDict(extra="forbid", defer_build=True)

    name: str | None = Field(default=None, description="process name, as ps -e shows it")
    cmdline: Regex | None = Field(default=None, description="regex searched in the command line")
    pidfile: ConfigPath | None = Field(default=None, description="file holding the pid")
    min: int = Field(default=1, ge=0, description="fewer matching processes is CRITICAL")
    max: int | None = Field(default=None, ge=0, description="more matching processes is CRITICAL")
    rss_warning: Size | None = Field(default=None, description="total RSS that warns")
    rss_critical: Size | None = Field(default=None, description="total RSS that is critical")

    @model_validator(mode="after")
    def _consistent(self) -> Params:
        if self.name is None and self.cmdline is None and self.pidfile is None:
            raise ValueError("set name, cmdline or pidfile (several must all match)")
        if self.max is not None and self.max < self.min:
            raise ValueError(f"max ({self.max}) is less than min ({self.min})")
        warning, critical = self.rss_warning, self.rss_critical
        if warning is not None and critical is not None and warning > critical:
            raise ValueError(
                f"rss_warning ({format_size(warning)}) is more than rss_critical"
                f" ({format_size(critical)}): it could never warn before critical"
            )
        return self


def run(ctx: toilbox.TaskContext, params: Params) -> toilbox.Result:
    """Count the processes that match, and add up their resident memory."""
    import psutil

    what = _described(params)
    problems = []
    unreadable = False  # a pidfile that cannot say whether the process runs
    if params.pidfile is not None:
        pid, problem, missing = _read_pidfile(params.pidfile)
        if problem:
            problems.append(problem)
            unreadable = not missing
        candidates = [] if pid is None else _pid_process(pid)
        what += f" (pid {pid})" if pid is not None else ""
    else:
        candidates = list(psutil.process_iter())

    matched = [proc for proc in candidates if _matches(proc, params)]
    rss = 0
    for proc in matched:
        # Gone since, or not ours to read: it still counted as running.
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            rss += proc.memory_info().rss
    count = len(matched)

    status = level(
        critical=at_least(rss, params.rss_critical), warning=at_least(rss, params.rss_warning)
    )
    if status is not toilbox.Status.OK:
        limit = params.rss_critical if status is toilbox.Status.CRITICAL else params.rss_warning
        problems.append(f"RSS over the {status.label} threshold of {format_size(limit or 0)}")
    if count < params.min:
        problems.append(f"expected at least {params.min}")
    if params.max is not None and count > params.max:
        problems.append(f"expected at most {params.max}")
    if unreadable or count < params.min or (params.max is not None and count > params.max):
        status = toilbox.Status.CRITICAL

    noun = "process" if count == 1 else "processes"
    summary = f"{count} {noun} {what}" + (f", RSS {format_size(rss)}" if count else "")
    metrics: dict[str, toilbox.Metric | float] = {
        # A Nagios range: outside min:max is critical.
        "count": toilbox.Metric(count, "", None, f"{params.min}:{_or_empty(params.max)}", 0),
        "rss_bytes": toilbox.Metric(rss, "B", params.rss_warning, params.rss_critical, 0),
    }
    pids = sorted(proc.pid for proc in matched)
    ctx.log.debug("process.counted", count=count, rss=rss, pids=pids[:PIDS_KEPT])
    data: dict[str, Any] = {"pids": pids[:PIDS_KEPT], "count": count, "rss_bytes": rss}
    return toilbox.Result(status, "; ".join([summary, *problems]), metrics, data)



def preload() -> None:
    """Run once by the daemon's zygote: psutil (7 ms of imports), for the checks to inherit."""
    import psutil  # noqa: F401


run.preload = preload  # type: ignore[attr-defined]

def _described(params: Params) -> str:
    parts = []
    if params.name is not None:
        parts.append(f"named {params.name}")
    if params.cmdline is not None:
        parts.append(f"with a command line matching {params.cmdline!r}")
    if params.pidfile is not None:
        parts.append(f"from {params.pidfile}")
    return " and ".join(parts)


def _read_pidfile(path: Path) -> tuple[int | None, str | None, bool]:
    """The pid in a pidfile, or why there is none, and whether that is because it is missing.

    A missing pidfile means no process (as a daemon removes its pidfile when it stops);
    one that cannot be read, or holds no pid, is a problem in itself.
    """
    try:
        text = path.read_text(errors="replace").strip()
    except FileNotFoundError:
        return None, f"{path} does not exist", True
    except OSError as exc:
        return None, f"cannot read {path}: {exc.strerror or exc}", False
    first = text.split(maxsplit=1)[0] if text else ""
    if not first.isdigit() or int(first) <= 0:
        return None, f"{path} holds no pid: {text[:40]!r}", False
    return int(first), None, False


def _pid_process(pid: int) -> list[psutil.Process]:
    import psutil

    try:
        return [psutil.Process(pid)]
    except psutil.NoSuchProcess:
        return []


def _matches(proc: psutil.Process, params: Params) -> bool:
    """A live process (not us, not a zombie) whose name and command line match."""
    import psutil

    if proc.pid == os.getpid():
        return False
    try:
        return (
            proc.status() != psutil.STATUS_ZOMBIE
            and (params.name is None or proc.name() == params.name)
            and (
                params.cmdline is None
                or re.search(params.cmdline, " ".join(proc.cmdline())) is not None
            )
        )
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False  # gone, or another user's process we may not read: not shown to match


def _or_empty(value: int | None) -> str:
    return "" if value is None else str(value)


@toilbox.hookimpl
def register_task_types(register: RegisterTaskType) -> None:
    register("check.process", run, params=Params)
