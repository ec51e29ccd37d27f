"""The plugin's side of an attempt: run the task, write one JSON answer, exit.

Everything here runs in the attempt's plugin process, forked by its reaper (``reaper``).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import json
import os
import signal
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

# Imported here, in the parent, so that no child pays for an import.
from toilbox import locks, log

if TYPE_CHECKING:
    from toilbox.models import AttemptSpec

DETAILS_LIMIT = 64 * 1024
PR_SET_PDEATHSIG = 1


def child_main(  # pragma: no cover - runs in the child
    spec: AttemptSpec, result_w: int, output_w: int, reaper: int
) -> None:
    """The plugin process's whole life: run the task, write one JSON answer, exit.

    ``reaper`` is the pid of its parent, the attempt's reaper.  Never returns.
    """
    code = 0
    # What the child inherited is never garbage to it: keep the collector from walking
    # (and so copying) the parent's whole heap on the child's first collection.
    gc.freeze()
    try:
        # The reaper takes the plugin's descendants down; if the reaper itself is killed,
        # this process goes with it.
        if prctl(PR_SET_PDEATHSIG, signal.SIGKILL) and os.getppid() != reaper:
            os._exit(1)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
        # The reaper blocks the signals it waits for; plugin code starts with none blocked.
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        locks.close_inherited()
        # Plugin logs go where toilbox logs go; plain prints are captured as output.
        terminal = os.fdopen(
            os.dup(2), "w", buffering=1, encoding="utf-8", errors="replace", closefd=True
        )
        log.redirect_to(terminal)
        os.dup2(output_w, 1)
        os.dup2(output_w, 2)
        os.close(output_w)
        answer = _run_task(spec, terminal if terminal.isatty() else None)
        payload = json.dumps(answer, allow_nan=False).encode()
    except BaseException as exc:  # the answer must always be written: it is the verdict
        payload = json.dumps({"kind": "exception", "message": _describe(exc)}).encode()
        code = 1
    try:
        with os.fdopen(result_w, "wb") as pipe:
            pipe.write(payload)
    except BaseException:
        code = 1
    with contextlib.suppress(BaseException):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


def _run_task(  # pragma: no cover - runs in the child
    spec: AttemptSpec, console: TextIO | None
) -> dict[str, Any]:
    import structlog

    from toilbox import plugins
    from toilbox.context import TaskContext
    from toilbox.errors import TaskFailed
    from toilbox.result import Result, Status
    from toilbox.store import open_history

    log.add_secrets(spec.secrets)
    structlog.contextvars.bind_contextvars(task=spec.task, run_id=spec.run_id, attempt=spec.attempt)
    task_type = plugins.load(Path(p) for p in spec.plugin_dirs).task_types[spec.task_type]
    tasks_dir = Path(spec.state_dir) / "tasks"
    tasks_dir.mkdir(mode=0o700, exist_ok=True)  # both levels private, not only the last
    state_dir = tasks_dir / spec.task
    state_dir.mkdir(mode=0o700, exist_ok=True)
    ctx = TaskContext(
        task=spec.task,
        run_id=spec.run_id,
        attempt=spec.attempt,
        dry_run=spec.dry_run,
        force=spec.force,
        log=structlog.get_logger(spec.task_type).bind(),  # bound once, not on every call
        state_dir=state_dir,
        console=console,
        scheduled_for=spec.scheduled_for,
        open_history=functools.partial(open_history, Path(spec.state_dir), spec.store_url),
        config_dir=Path(spec.config_dir) if spec.config_dir else Path.cwd(),
    )
    try:
        result = task_type.fn(ctx, spec.params)
    except TaskFailed as exc:
        return {"kind": "failed", "message": str(exc) or "the task failed"}
    except Exception as exc:
        return {"kind": "exception", "message": _describe(exc), "traceback": traceback.format_exc()}
    if not isinstance(result, Result) or not isinstance(result.status, Status):
        return {
            "kind": "bad-result",
            "message": f"{spec.task_type} returned {type(result).__name__}, not a toilbox.Result",
        }
    try:
        metrics = {k: m.to_dict() for k, m in result.normalised_metrics().items()}
        answer = {
            "kind": "ok",
            "result": {
                "status": result.status.label,
                "summary": str(result.summary).strip().splitlines()[0][:1000]
                if str(result.summary).strip()
                else "",
                "metrics": metrics,
                "data": result.data,
                "details": str(result.details or "")[:DETAILS_LIMIT],
            },
        }
        json.dumps(answer, allow_nan=False)
    except (TypeError, ValueError) as exc:
        return {"kind": "bad-result", "message": f"{spec.task_type} returned a bad Result: {exc}"}
    return answer


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


@functools.cache
def libc() -> Any:
    import ctypes

    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def prctl(option: int, value: int) -> bool:
    """Linux's prctl(2) with one argument; False where it is not available or fails."""
    import ctypes

    handle = libc()
    if handle is None or not hasattr(handle, "prctl"):
        return False  # not Linux: the guarantees that need it are documented as Linux-only
    zero = ctypes.c_ulong(0)
    return bool(handle.prctl(option, ctypes.c_ulong(value), zero, zero, zero) == 0)
