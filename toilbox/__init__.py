"""toilbox: turn production toil into scheduled, safe, observable automation.

The public API for plugin authors::

    import toilbox

    @toilbox.hookimpl
    def register_task_types(register):
        register("check.answer", check_answer, params=AnswerParams)
"""

from __future__ import annotations

import gc as _gc

# Imports allocate much and free nothing: no collection meanwhile (toilbox.memory).
_collecting = _gc.isenabled()
_gc.disable()
try:
    from toilbox import _structlog  # noqa: F401  (first: see its docstring)
    from toilbox.context import TaskContext
    from toilbox.errors import TaskFailed
    from toilbox.hookspecs import hookimpl
    from toilbox.result import Metric, Result, Status, worst
finally:
    if _collecting:
        _gc.enable()

__all__ = ["Metric", "Result", "Status", "TaskContext", "TaskFailed", "hookimpl", "worst"]
__version__ = "0.1.0"
