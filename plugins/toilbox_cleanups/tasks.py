"""The standard cleanups' task types: the module the package's metadata declares for them.

Importing it must stay cheap: the parameter models build their schemas on first use, and
each task function imports its implementation (and jinja2, for the report) when it runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import toilbox
from toilbox_cleanups.params import EmptyDirsParams, FilesParams, LogsParams

if TYPE_CHECKING:
    from toilbox.tasktypes import RegisterTaskType


def cleanup_files(ctx: toilbox.TaskContext, params: FilesParams) -> toilbox.Result:
    """Delete regular files under roots by age, size, name or budget target."""
    from toilbox_cleanups import files

    return files.run(ctx, params)


def cleanup_empty_dirs(ctx: toilbox.TaskContext, params: EmptyDirsParams) -> toilbox.Result:
    """Remove empty directories under roots, deepest first, never a root itself."""
    from toilbox_cleanups import emptydirs

    return emptydirs.run(ctx, params)


def cleanup_logs(ctx: toilbox.TaskContext, params: LogsParams) -> toilbox.Result:
    """Compress old logs atomically, delete old compressed logs, keep the newest few."""
    from toilbox_cleanups import logs

    return logs.run(ctx, params)


@toilbox.hookimpl
def register_task_types(register: RegisterTaskType) -> None:
    register("cleanup.files", cleanup_files, params=FilesParams)
    register("cleanup.empty-dirs", cleanup_empty_dirs, params=EmptyDirsParams)
    register("cleanup.logs", cleanup_logs, params=LogsParams)
