"""A plugin that misbehaves on request: the runner's fault tests drive it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict

import toilbox


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mode: str = "ok"
    status: str = "ok"
    summary: str = "all good"
    marker: str | None = None
    fail_times: int = 0
    state_file: str | None = None
    # Processes to start, before acting, that try to outlive the attempt (see _escape).
    escapes: list[str] = []


def _escape(kind: str) -> int:
    """Start a `sleep 1000` that leaves the task's process group; its pid.

    ``setsid``: a child in a session of its own.  ``double-fork``: the daemon's way (fork,
    setsid, fork, the middle one exits), so it is re-parented away from the task.
    ``ignore-term``: the same, and it ignores SIGTERM.
    """
    if kind == "setsid":
        return subprocess.Popen(["sleep", "1000"], start_new_session=True).pid
    read, write = os.pipe()
    middle = os.fork()
    if middle == 0:
        try:
            os.setsid()
            grandchild = os.fork()
            if grandchild == 0:
                if kind == "ignore-term":
                    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # kept across exec
                os.execvp("sleep", ["sleep", "1000"])  # noqa: S606 -- fixed argv
            os.write(write, str(grandchild).encode())
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(middle, 0)
    with os.fdopen(read) as pipe:
        return int(pipe.read())


def act(ctx: toilbox.TaskContext, params: Params) -> toilbox.Result:
    """Behave as told by ``mode``."""
    if params.marker:
        # Each attempt appends its pid, so tests can count attempts and find processes.
        with Path(params.marker).open("a") as marker:
            marker.write(f"{os.getpid()}\n")
    ctx.log.info("faults.acting", mode=params.mode, secret_echo=params.summary)
    if params.escapes and params.marker:
        # One file per attempt, written whole: "kind pid" per line.
        escaped = "".join(f"{kind} {_escape(kind)}\n" for kind in params.escapes)
        target = f"{params.marker}.escaped.{os.getpid()}"
        Path(f"{target}.tmp").write_text(escaped)
        Path(f"{target}.tmp").rename(target)
    if params.mode == "hang":
        child = subprocess.Popen(["sleep", "1000"])
        if params.marker:
            Path(params.marker + ".child").write_text(str(child.pid))
        time.sleep(1000)
    elif params.mode == "exit":
        os._exit(7)
    elif params.mode == "segfault":
        os.kill(os.getpid(), signal.SIGSEGV)
    elif params.mode == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif params.mode == "raise":
        raise RuntimeError("boom")
    elif params.mode == "flaky":
        attempts = len(Path(params.marker or "").read_text().splitlines()) if params.marker else 1
        if attempts <= params.fail_times:
            raise ConnectionError(f"transient failure {attempts}")
    elif params.mode == "fail":
        raise toilbox.TaskFailed("cannot work: misconfigured")
    elif params.mode == "garbage":
        return {"status": "ok"}  # type: ignore[return-value]
    elif params.mode == "unserialisable":
        return toilbox.Result(toilbox.Status.OK, "x", data={"when": object()})
    elif params.mode == "read_state" and params.state_file:
        # A service whose health the test controls: the file holds its status.
        status = Path(params.state_file).read_text().strip()
        return toilbox.Result(toilbox.Status.from_label(status), f"service is {status}")
    elif params.mode == "write_state" and params.state_file:
        # A fix: sets the service's status (to `status`), and succeeds.
        Path(params.state_file).write_text(params.summary)
        return toilbox.Result(toilbox.Status.OK, f"set the service to {params.summary}")
    elif params.mode == "flood":
        chunk = "x" * 1023 + "\n"
        for _ in range(100 * 1024):  # 100 MiB through stdout
            sys.stdout.write(chunk)
        sys.stdout.write("the last line\n")
        sys.stdout.flush()
    return toilbox.Result(
        toilbox.Status.from_label(params.status),
        params.summary,
        metrics={"answer": toilbox.Metric(42, unit="s", warn=50, crit=60)},
        data={"dry_run": ctx.dry_run, "attempt": ctx.attempt, "state_dir": str(ctx.state_dir)},
    )


@toilbox.hookimpl
def register_task_types(register):  # type: ignore[no-untyped-def]
    register("check.faults", act, params=Params)
