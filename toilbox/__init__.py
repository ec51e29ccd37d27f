"""toilbox: turn production toil into scheduled, safe, observable automation.

The public API for plugin authors::

    import toilbox

    @toilbox.hookimpl
    def register_task_types(register):
        register("check.answer", check_answer, params=AnswerParams)
"""

from __future__ import annotations

import sys as _sys

if "structlog" not in _sys.modules and "rich" not in _sys.modules:
    # structlog imports rich, when it is installed, to draw tracebacks that toilbox never
    # has it draw (log.py turns each exception into text before a renderer sees it): 40 ms
    # of every start-up.  A None in sys.modules makes `import rich` fail while structlog
    # is imported, and only then: a cleanup's progress bar still imports rich.
    _sys.modules["rich"] = None  # type: ignore[assignment]
    try:
        import structlog as _structlog  # noqa: F401
    finally:
        del _sys.modules["rich"]

from toilbox.context import TaskContext
from toilbox.errors import TaskFailed
from toilbox.hookspecs import hookimpl
from toilbox.result import Metric, Result, Status, worst

__all__ = ["Metric", "Result", "Status", "TaskContext", "TaskFailed", "hookimpl", "worst"]
__version__ = "0.1.0"
