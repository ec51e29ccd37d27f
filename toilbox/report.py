"""``toilbox report``: the ``report.summary`` task type, run now in this process.

The task type comes from a plugin (the core never imports one), and runs here rather
than in a child so that its ``-`` target is this terminal.
"""

from __future__ import annotations

from pydantic import ValidationError

from toilbox.app import App
from toilbox.errors import TaskFailed, UsageError

REPORT_TYPE = "report.summary"


def report_now(
    app: App, window: str, fmt: str, output: str | None, host: str | None = None
) -> str:
    """Write the report to ``output`` (a file, ``{date}`` allowed) or stdout; return its
    one-line summary."""
    import structlog

    from toilbox.context import TaskContext
    from toilbox.runner import new_run_id

    task_type = app.plugins.task_types.get(REPORT_TYPE)
    if task_type is None:
        raise UsageError(app.plugins.explain_unknown(REPORT_TYPE))
    try:
        params = task_type.params.model_validate(
            {"window": window, "format": fmt, "to": [output or "-"], "host": host}
        )
    except ValidationError as exc:
        message = exc.errors()[0]["msg"].removeprefix("Value error, ")
        raise UsageError(f"report: {message}") from None
    (app.state_dir / "tasks").mkdir(mode=0o700, exist_ok=True)
    state_dir = app.state_dir / "tasks" / "report"
    state_dir.mkdir(mode=0o700, exist_ok=True)
    ctx = TaskContext(
        "report",
        new_run_id(),
        1,
        False,
        structlog.get_logger(REPORT_TYPE),
        state_dir,
        open_history=app.open_history,
        config_dir=app.loaded.config_dir,
    )
    try:
        return task_type.fn(ctx, params).summary
    except TaskFailed as exc:
        raise UsageError(f"report: {exc}") from None
