"""Build the plugin manager, and the only module that calls ``pm.hook``.

Plugins come from the ``toilbox`` entry-point group (the standard plugins register
there exactly as a third-party package does) and from ``*.py`` files in the configured
``plugin_dirs``.  A plugin that fails to load is recorded as broken and skipped; it never
takes the others down.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol

import pluggy
import structlog
from pydantic import BaseModel

from toilbox import hookspecs

if TYPE_CHECKING:
    import click

    from toilbox.context import TaskContext
    from toilbox.models import Notification, RunRecord
    from toilbox.result import Result

ENTRY_POINT_GROUP = "toilbox"
TASK_TYPE_NAME = re.compile(r"^(check|cleanup|report)\.[a-z0-9][a-z0-9_-]*$")
PLUGIN_DIR_PREFIX = "toilbox_plugin_dir_"

TaskFunction = Callable[["TaskContext", Any], "Result"]
log = structlog.get_logger("toilbox.plugins")


class RegisterTaskType(Protocol):
    def __call__(
        self,
        name: str,
        fn: TaskFunction,
        *,
        params: type[BaseModel],
        description: str | None = None,
    ) -> None: ...


@dataclass(frozen=True)
class TaskType:
    name: str
    fn: TaskFunction
    params: type[BaseModel]
    plugin: str
    description: str

    @property
    def kind(self) -> str:
        return self.name.split(".", 1)[0]


@dataclass
class PluginInfo:
    name: str
    source: str  # "standard", "entry point" or "plugin dir"
    location: str
    version: str | None = None
    hooks: list[str] = field(default_factory=list)
    task_types: list[str] = field(default_factory=list)
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "source": self.source,
            "location": self.location,
            "hooks": self.hooks,
            "task_types": self.task_types,
            "status": "broken" if self.error else "ok",
            "error": self.error,
        }


@dataclass
class PluginHost:
    """The loaded plugins and the task types they declared."""

    pm: pluggy.PluginManager
    plugins: list[PluginInfo]
    task_types: dict[str, TaskType]

    def explain_unknown(self, type_name: str) -> str:
        import difflib

        message = f'unknown task type "{type_name}"'
        close = difflib.get_close_matches(type_name, self.task_types, n=1)
        if close:
            message += f' (did you mean "{close[0]}"?)'
        known = ", ".join(sorted(self.task_types)) or "none"
        broken = [f"{p.name} ({p.error})" for p in self.plugins if p.error]
        message += f" (known: {known})"
        if broken:
            message += f"; plugins that failed to load: {'; '.join(broken)}"
        return message

    def run_finished(self, run: RunRecord) -> None:
        self._call_each("run_finished", run=run)

    def notify(self, notification: Notification) -> None:
        self._call_each("notify", notification=notification)

    def register_commands(self, cli: click.Group) -> None:
        self._call_each("register_commands", cli=cli)

    def _call_each(self, hook: str, **kwargs: Any) -> None:
        """Call every implementation on its own: one that raises is logged, not fatal.

        (A plain ``pm.hook.X()`` call stops at the first implementation that raises.)
        """
        for impl in getattr(self.pm.hook, hook).get_hookimpls():
            try:
                impl.function(**{name: kwargs[name] for name in impl.argnames})
            except Exception:
                log.exception("plugin.hook_failed", hook=hook, plugin=impl.plugin_name)


_cache: dict[tuple[Path, ...], PluginHost] = {}


def load(plugin_dirs: Iterable[Path] = ()) -> PluginHost:
    """The plugin host for these plugin dirs; built once per process and reused.

    Child processes look task types up here by name, so a forked child reuses the
    parent's host and a fresh one builds its own.
    """
    key = tuple(plugin_dirs)
    if key not in _cache:
        _cache[key] = build(key)
    return _cache[key]


def build(plugin_dirs: Iterable[Path] = ()) -> PluginHost:
    pm = pluggy.PluginManager("toilbox")
    pm.add_hookspecs(hookspecs)
    infos: list[PluginInfo] = []
    for shared_info, module in _entry_point_plugins():
        info = dataclasses.replace(shared_info, hooks=[], task_types=[])
        infos.append(info)
        if module is not None:
            _register(pm, info, module)
    for directory in plugin_dirs:
        for info, module in _plugin_dir_plugins(directory):
            infos.append(info)
            if module is not None:
                _register(pm, info, module)
    _drop_misspelt_hooks(pm, infos)
    task_types = _collect_task_types(pm, infos)
    for info in infos:
        plugin = pm.get_plugin(info.name)
        if plugin is not None:
            info.hooks = sorted(impl.name for impl in pm.get_hookcallers(plugin) or [])
    return PluginHost(pm, infos, task_types)


def _register(pm: pluggy.PluginManager, info: PluginInfo, module: ModuleType) -> None:
    if pm.get_plugin(info.name) is not None or module in pm.get_plugins():
        info.error = "a plugin of the same name (or module) is already loaded"
        return
    try:
        pm.register(module, name=info.name)
    except Exception as exc:
        info.error = _describe(exc)


@functools.cache
def _entry_point_plugins() -> list[tuple[PluginInfo, ModuleType | None]]:
    """Scanned and imported once per process: every plugin host shares the modules."""
    from importlib.metadata import entry_points

    found = []
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        dist = ep.dist
        standard = dist is not None and dist.name == "toilbox"
        info = PluginInfo(
            name=ep.name if standard else f"{dist.name if dist else '?'}:{ep.name}",
            source="standard" if standard else "entry point",
            location=ep.value,
            version=dist.version if dist else None,
        )
        module = None
        try:
            module = ep.load()
        except Exception as exc:
            info.error = _describe(exc)
        found.append((info, module))
    return found


def _plugin_dir_plugins(directory: Path) -> list[tuple[PluginInfo, ModuleType | None]]:
    if not directory.is_dir():
        info = PluginInfo(name=str(directory), source="plugin dir", location=str(directory))
        info.error = "plugin directory does not exist"
        return [(info, None)]
    found: list[tuple[PluginInfo, ModuleType | None]] = []
    for path in sorted(directory.glob("*.py")):
        info = PluginInfo(name=path.stem, source="plugin dir", location=str(path))
        # A stable module name lets a child process re-import the file and pickle refer to it.
        module_name = PLUGIN_DIR_PREFIX + re.sub(r"\W", "_", path.stem)
        module = None
        try:
            spec = importlib.util.spec_from_file_location(module_name, path)
            if spec is None or spec.loader is None:
                raise ImportError(f"cannot load {path}")
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module
            spec.loader.exec_module(module)
        except Exception as exc:
            sys.modules.pop(module_name, None)
            info.error = _describe(exc)
            module = None
        found.append((info, module))
    return found


def _drop_misspelt_hooks(pm: pluggy.PluginManager, infos: list[PluginInfo]) -> None:
    """A hookimpl with no matching spec (a typo) marks its plugin broken, not the host."""
    by_name = {info.name: info for info in infos}
    while True:
        try:
            pm.check_pending()
        except pluggy.PluginValidationError as exc:
            name = pm.get_name(exc.plugin)
            if name is None:  # pragma: no cover - pluggy always names registered plugins
                raise
            pm.unregister(name=name)
            by_name[name].error = _unknown_hook(str(exc))
            continue
        return


def _collect_task_types(pm: pluggy.PluginManager, infos: list[PluginInfo]) -> dict[str, TaskType]:
    by_name = {info.name: info for info in infos}
    task_types: dict[str, TaskType] = {}
    for impl in pm.hook.register_task_types.get_hookimpls():  # registration order: first wins
        info = by_name[impl.plugin_name]
        declared: list[TaskType] = []

        def register(
            name: str,
            fn: TaskFunction,
            *,
            params: type[BaseModel],
            description: str | None = None,
            _plugin: str = impl.plugin_name,
            _declared: list[TaskType] = declared,
        ) -> None:
            if not TASK_TYPE_NAME.match(name):
                raise ValueError(
                    f'task type name "{name}" must be <check|cleanup|report>.<lower-case name>'
                )
            if not (isinstance(params, type) and issubclass(params, BaseModel)):
                raise TypeError(f"{name}: params must be a pydantic BaseModel subclass")
            if not callable(fn):
                raise TypeError(f"{name}: fn must be callable")
            if name in task_types:
                raise ValueError(f"{name} is already registered by {task_types[name].plugin}")
            doc = description or (fn.__doc__ or "").strip().splitlines()[:1]
            text = doc if isinstance(doc, str) else (doc[0] if doc else "")
            _declared.append(TaskType(name, fn, params, _plugin, text))

        try:
            impl.function(**{arg: register for arg in impl.argnames if arg == "register"})
        except Exception as exc:
            info.error = _describe(exc)
            continue
        for task_type in declared:
            task_types[task_type.name] = task_type
            info.task_types.append(task_type.name)
    return task_types


def _unknown_hook(pluggy_message: str) -> str:
    """pluggy names the plugin's module in full; say which hook, and what was meant."""
    import difflib

    found = re.search(r"unknown hook '(\w+)'", pluggy_message)
    if not found:
        return pluggy_message
    known = [name for name in dir(hookspecs) if hasattr(getattr(hookspecs, name), "toilbox_spec")]
    close = difflib.get_close_matches(found[1], known, n=1)
    hint = f' (did you mean "{close[0]}"?)' if close else f" (toilbox hooks: {', '.join(known)})"
    return f'unknown hook "{found[1]}"{hint}'


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".splitlines()[0]
