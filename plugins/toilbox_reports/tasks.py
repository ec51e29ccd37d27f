"""The standard reports' task types: the module the package's metadata declares for them.

Importing it must stay cheap: the parameter models build their schemas on first use, and
each task function imports its implementation (and jinja2, for the report) when it runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import toilbox
from toilbox_reports.params import SummaryParams

if TYPE_CHECKING:
    from toilbox.tasktypes import RegisterTaskType


def report_summary(ctx: toilbox.TaskContext, params: SummaryParams) -> toilbox.Result:
    """What happened in a window of history: attention, tasks, checks, cleanups, fixes."""
    from toilbox_reports import summary

    return summary.run(ctx, params)


@toilbox.hookimpl
def register_task_types(register: RegisterTaskType) -> None:
    register("report.summary", report_summary, params=SummaryParams)
