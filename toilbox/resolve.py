"""Check each configured task against the plugins: its type, and its parameters.

The second step of loading a config (``config.load`` is the first): ``plugin_dirs``
decides which task types exist.  A task type a plugin declares in its metadata is
imported only here, when a task of that type is resolved; so a one-shot ``toilbox run``
resolves its own task (and the tasks its remediation runs), not every task.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from pydantic import ValidationError

from toilbox import yamlpos
from toilbox.config import LoadedConfig, Task, format_errors
from toilbox.errors import ConfigError

if TYPE_CHECKING:
    from toilbox.plugins import PluginHost


def resolve_tasks(
    loaded: LoadedConfig, host: PluginHost, only: Iterable[str] | None = None
) -> dict[str, Task]:
    """Check tasks against the plugins; report all problems at once.

    Every task's type must exist, and every remediation must name checks and tasks that
    exist: that much needs no plugin module.  Parameters are checked for every task or,
    given ``only``, for those tasks and the tasks their remediation may run, which are
    all that is returned (``toilbox validate`` and the daemon check them all).
    """
    config = loaded.config
    wanted = set(config.tasks) if only is None else _with_remediation(loaded, only)
    tasks: dict[str, Task] = {}
    problems: list[str] = []
    untyped: set[str] = set()
    for name, spec in config.tasks.items():
        loc: yamlpos.Loc = ("tasks", name)
        task_type = host.task_types.get(spec.uses) if name in wanted else None
        if spec.uses not in host.task_types or (name in wanted and task_type is None):
            problems.append(loaded.error((*loc, "uses"), host.explain_unknown(spec.uses)))
            untyped.add(name)
            continue
        if task_type is None:
            continue
        try:
            # The context lets a params field (toilbox.units.ConfigPath) read a relative
            # path from the config's directory, as state_dir and plugin_dirs are.
            params = task_type.params.model_validate(
                spec.with_, context={"config_dir": loaded.config_dir}
            )
        except ValidationError as exc:
            problems.append(format_errors(loaded.path, loaded.positions, exc, (*loc, "with")))
            continue
        # The values themselves: a dump would turn durations back into text ("0s").
        override = {k: v for k, v in spec.retry if v is not None} if spec.retry else {}
        tasks[name] = Task(
            name=name,
            type=task_type,
            params=params,
            schedule=spec.schedule,
            timeout=spec.timeout or config.defaults.timeout,
            retry=config.defaults.retry.model_copy(update=override),
            enabled=spec.enabled,
            description=spec.description,
            scope=spec.scope,
            timezone=spec.timezone or config.timezone,
            jitter=spec.jitter,
            on_missed=spec.on_missed,
            catchup_window=spec.catchup_window,
            catchup_max=spec.catchup_max,
            hard_after=spec.hard_after,
            notify=tuple(spec.notify),
            remediate=spec.remediate,
            ping=spec.ping,
        )
    problems.extend(_remediation_problems(loaded, untyped))
    if problems:
        raise ConfigError("\n".join(problems))
    return tasks


def _remediation_problems(loaded: LoadedConfig, untyped: set[str]) -> list[str]:
    """Each remediation must belong to a check and run other tasks that exist (the kind
    is the type's prefix: no plugin module is needed to tell it).  A task whose type is
    unknown has had its error."""
    problems = []
    for name, spec in loaded.config.tasks.items():
        if spec.remediate is None or name in untyped:
            continue
        loc: yamlpos.Loc = ("tasks", name, "remediate")
        kind = spec.uses.partition(".")[0]
        if kind != "check":
            problems.append(loaded.error(loc, f"only checks remediate (this task is a {kind})"))
        for index, target in enumerate(spec.remediate.run):
            if target == name:
                problems.append(loaded.error((*loc, "run", index), "a check cannot fix itself"))
            elif target not in loaded.config.tasks:
                problems.append(loaded.error((*loc, "run", index), f'no task named "{target}"'))
    return problems


def _with_remediation(loaded: LoadedConfig, names: Iterable[str]) -> set[str]:
    """These tasks and every task their remediation may run, and theirs in turn."""
    tasks = loaded.config.tasks
    wanted: set[str] = set()
    todo = [name for name in names if name in tasks]
    while todo:
        name = todo.pop()
        if name not in wanted:
            wanted.add(name)
            remediate = tasks[name].remediate
            todo.extend(t for t in (remediate.run if remediate else []) if t in tasks)
    return wanted
