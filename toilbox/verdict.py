"""The status of a run that ended without a verdict of its own (an error, a crash).

The Monitoring Plugins guidelines: UNKNOWN is for a plugin that could not check (bad
arguments, a command that cannot be run, an internal failure), so a check that failed
to produce a result is UNKNOWN, not a claim that the service is down.  A check that timed
out is CRITICAL, as the Monitoring Plugins' own timeouts are.  A cleanup or report that
failed is CRITICAL: the work it exists to do was not done.  A run interrupted by a
shutdown says nothing about its task: UNKNOWN.
"""

from __future__ import annotations

from toilbox.result import Status


def failure_status(task_type: str, outcome: str) -> Status:
    """``task_type`` is ``check.disk``, ``cleanup.files``...; ``outcome`` an error type."""
    if outcome == "interrupted":
        return Status.UNKNOWN
    if task_type.split(".", 1)[0] == "check" and outcome != "timeout":
        return Status.UNKNOWN
    return Status.CRITICAL
