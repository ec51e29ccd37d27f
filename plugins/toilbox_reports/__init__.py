"""The standard reports, registered through the `toilbox` entry-point group.

Importing this package must stay cheap (it happens on every `toilbox` start-up): the
report's implementation, and jinja2, are imported when a report runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import toilbox
from toilbox_reports.params import SummaryParams

if TYPE_CHECKING:
    from toilbox.plugins import RegisterTaskType


def report_summary(ctx: toilbox.TaskContext, params: SummaryParams) -> toilbox.Result:
    """What happened in a window of history: attention, tasks, checks, cleanups, fixes."""
    from toilbox_reports import summary

    return summary.run(ctx, params)


@toilbox.hookimpl
def register_task_types(register: RegisterTaskType) -> None:
    register("report.summary", report_summary, params=SummaryParams)
