"""The plugin contract: every hook toilbox calls, and when.

A plugin is a module (or object) with functions decorated ``@toilbox.hookimpl`` whose
names match the specs below.  Implementations may take any subset of the arguments.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import click

    from toilbox.models import Notification, RunRecord
    from toilbox.tasktypes import RegisterTaskType

hookspec = pluggy.HookspecMarker("toilbox")
hookimpl = pluggy.HookimplMarker("toilbox")


@hookspec
def register_task_types(register: RegisterTaskType) -> None:
    """Declare task types; called once when the plugin manager is built.

    Call ``register(name, fn, params=Model)`` once per type.  ``name`` is
    ``"<kind>.<name>"`` with kind ``check``, ``cleanup`` or ``report``; ``params`` is a
    pydantic model that validates the task's ``with:`` block when the config loads;
    ``fn(ctx: TaskContext, params: Model) -> Result`` does the work in a child process.
    """


@hookspec
def run_finished(run: RunRecord) -> None:
    """Called in the toilbox process after every run ends (after retries), whatever its status.

    ``run`` is the stored record, as ``toilbox history --json`` shows it.  It must not
    raise: an implementation that raises is logged and the other ones still run.
    """


@hookspec
def notify(notification: Notification) -> None:
    """Deliver a notification; called in the toilbox process once per HARD state change.

    ``notification`` has ``task``, ``kind`` (problem, recovery, flapping, settled, fixed,
    circuit_open), ``status``, ``title``, ``body``, ``run_id``, ``chain`` (for fixes: the
    runs and messages so far) and ``destinations``: the configured URLs still within
    their rate limit.  toilbox already deduplicated it.  It must not raise.
    """


@hookspec
def register_commands(cli: click.Group) -> Any:
    """Add subcommands to the ``toilbox`` command group; called when the CLI starts."""
