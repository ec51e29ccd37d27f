"""A task that writes down each run it makes: the fleet tests count what really ran.

Every run appends a JSON line when it starts and another when it ends, with its slot,
host id, attempt and pid; ``sleep`` keeps it running so a test can kill its daemon.
"""

from __future__ import annotations

import json
import os
import time

from pydantic import BaseModel, ConfigDict

import toilbox


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    out: str  # "{host}" in it becomes the host id
    sleep: float = 0.0
    status: str = "ok"


def _note(path: str, event: str, ctx: toilbox.TaskContext) -> None:
    line = {
        "event": event,
        "task": ctx.task,
        "slot": ctx.scheduled_for.isoformat() if ctx.scheduled_for else None,
        "host": os.environ.get("TOILBOX_HOST_ID"),
        "attempt": ctx.attempt,
        "pid": os.getpid(),
        "run_id": ctx.run_id,
        "at": time.time(),
    }
    path = path.replace("{host}", os.environ.get("TOILBOX_HOST_ID", ""))
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (json.dumps(line) + "\n").encode())  # one write: lines never interleave
    finally:
        os.close(fd)


def mark(ctx: toilbox.TaskContext, params: Params) -> toilbox.Result:
    """Write down the run, sleep as told, write down its end."""
    _note(params.out, "start", ctx)
    if params.sleep:  # under faketime with a negative offset, sleep(0) fails with EINVAL
        time.sleep(params.sleep)
    _note(params.out, "end", ctx)
    return toilbox.Result(toilbox.Status.from_label(params.status), f"marked ({params.status})")


@toilbox.hookimpl
def register_task_types(register):
    register("check.mark", mark, params=Params)
