"""Build the plugin manager, and the only module that calls ``pm.hook``.

Plugins come from the ``toilbox`` entry-point group (the standard plugins register
there exactly as a third-party package does) and from ``*.py`` files in the configured
``plugin_dirs``.  A plugin that fails to load is recorded as broken and skipped; it never
takes the others down.  A plugin whose package declares its task types (the
``toilbox.task_types`` group, see ``tasktypes``) has each type's module imported only when
a task of that type is validated or run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib
import importlib.machinery
import importlib.util
import inspect
import os
import re
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pluggy
import structlog

from toilbox import hookspecs, trust
from toilbox.tasktypes import (
    DECLARATIONS_GROUP,
    TASK_TYPE_NAME,
    Declaration,
    RegisterTaskType,
    Registrar,
    TaskFunction,
    TaskType,
    TaskTypes,
)

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

    import click

    from toilbox.models import Notification, RunRecord

# Re-exported: plugins written before tasktypes existed import these from here.
__all__ = ["PluginHost", "PluginInfo", "RegisterTaskType", "TaskFunction", "TaskType", "load"]

ENTRY_POINT_GROUP = "toilbox"
PLUGIN_DIR_PREFIX = "toilbox_plugin_dir_"
# Hooks that must not raise: each implementation is called on its own terms, and one that
# raises is logged while the others still run (register_task_types is called per plugin).
ISOLATED_HOOKS = frozenset({"run_finished", "notify", "register_commands"})
NO_HOOKS = "implements no hooks"

log = structlog.get_logger("toilbox.plugins")


@dataclass
class PluginInfo:
    name: str
    source: str  # "standard", "entry point" or "plugin dir"
    location: str
    version: str | None = None
    hooks: list[str] = field(default_factory=list)
    task_types: list[str] = field(default_factory=list)
    descriptions: dict[str, str] = field(default_factory=dict)  # task type -> its first line
    error: str | None = None
    warning: str | None = None  # loaded, but probably not as meant (it implements no hooks)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "source": self.source,
            "location": self.location,
            "hooks": self.hooks,
            "task_types": self.task_types,
            "descriptions": self.descriptions,
            "status": "broken" if self.error else "ok",
            "error": self.error,
            "warning": self.warning,
        }


@dataclass
class PluginHost:
    """The loaded plugins and the task types they declared."""

    pm: pluggy.PluginManager
    plugins: list[PluginInfo]
    task_types: TaskTypes
    sources: dict[str, str] = field(default_factory=dict)  # what was loaded: see stale()
    plugin_dirs: tuple[Path, ...] = ()

    def load_all(self) -> None:
        """Import every declared task type now (for listings, and before a daemon forks)."""
        self.task_types.load_all()

    def explain_unknown(self, type_name: str) -> str:
        import difflib

        failure = self.task_types.failure(type_name)
        if failure is not None:
            return f'task type "{type_name}" could not be loaded: {failure}'
        message = f'unknown task type "{type_name}"'
        close = difflib.get_close_matches(type_name, self.task_types, n=1)
        if close:
            message += f' (did you mean "{close[0]}"?)'
        known = ", ".join(sorted(self.task_types)) or "none"
        broken = [f"{p.name} ({p.error})" for p in self.plugins if p.error]
        empty = [
            f"{p.name} ({p.warning.removeprefix(NO_HOOKS + ': ')})"
            if p.warning.startswith(NO_HOOKS + ": ")
            else p.name
            for p in self.plugins
            if p.warning
        ]
        message += f" (known: {known})"
        if broken:
            message += f"; plugins that failed to load: {'; '.join(broken)}"
        if empty:
            message += f"; plugins that implement no hooks: {', '.join(empty)}"
        return message

    def stale(self) -> list[str]:
        """Plugins on disk that this host did not load, or loaded in an older version.

        A plugin's code is imported once per process: a reload of the config does not
        load a new plugin file or package, nor a changed one.  This says which.
        """
        from importlib.metadata import entry_points

        dists = _Dists()
        installed = [dists.info(ep) for ep in entry_points(group=ENTRY_POINT_GROUP)]
        now = {info.name: info.version or "" for info in installed}
        now.update(_plugin_files(self.plugin_dirs))
        changes = []
        for source in sorted(now.keys() | self.sources.keys()):
            before, after = self.sources.get(source), now.get(source)
            if before == after:
                continue
            what = "new" if before is None else "removed" if after is None else "changed"
            changes.append(f"{source} ({what})")
        return changes

    def run_finished(self, run: RunRecord) -> None:
        self._call("run_finished", run=run)

    def notify(self, notification: Notification) -> None:
        self._call("notify", notification=notification)

    def register_commands(self, cli: click.Group) -> None:
        self._call("register_commands", cli=cli)

    def _call(self, hook: str, **kwargs: Any) -> None:
        """Call a hook as pluggy does: its order (LIFO, tryfirst, trylast) and its
        wrappers hold.  Each plain implementation logs its own exception (see
        _isolate), so the others still run; only a raising wrapper ends up here."""
        try:
            getattr(self.pm.hook, hook)(**kwargs)
        except Exception:
            log.exception("plugin.hook_failed", hook=hook, plugin="a hook wrapper")


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
    plugin_dirs = tuple(plugin_dirs)
    files = _plugin_files(plugin_dirs)  # before importing: a file edited meanwhile is stale
    pm = pluggy.PluginManager("toilbox")
    pm.add_hookspecs(hookspecs)
    infos: list[PluginInfo] = []
    by_name: dict[str, PluginInfo] = {}
    task_types = TaskTypes(lambda declaration: _load_declared(task_types, by_name, declaration))
    declaring: set[str] = set()  # plugins whose types come from their declarations
    for shared_info, module, declarations in _entry_point_plugins():
        info = dataclasses.replace(shared_info, hooks=[], task_types=[], descriptions={})
        infos.append(info)
        if declarations:
            declaring.add(info.name)
            _declare(task_types, info, declarations, module is not None)
        if module is not None:
            _register(pm, info, module)
    for directory in plugin_dirs:
        for info, module in _plugin_dir_plugins(directory):
            infos.append(info)
            if module is not None:
                _register(pm, info, module)
    by_name.update((info.name, info) for info in infos)
    _drop_misspelt_hooks(pm, infos)
    _collect_task_types(pm, infos, task_types, declaring)
    for info in infos:
        plugin = pm.get_plugin(info.name)
        if plugin is not None:
            info.hooks = sorted(impl.name for impl in pm.get_hookcallers(plugin) or [])
        if info.name in declaring and "register_task_types" not in info.hooks:
            info.hooks = sorted([*info.hooks, "register_task_types"])
        if plugin is not None and not info.hooks and info.error is None:
            info.warning = _no_hooks(plugin)
    sources = {info.name: info.version or "" for info in infos if info.source != "plugin dir"}
    return PluginHost(pm, infos, task_types, {**sources, **files}, plugin_dirs)


def _declare(
    task_types: TaskTypes, info: PluginInfo, declarations: list[Declaration], loaded: bool
) -> None:
    """Make a plugin's declared task types known, each to be loaded on first use."""
    for declaration in declarations:
        holder = task_types.holder(declaration.name)
        if not TASK_TYPE_NAME.match(declaration.name):
            info.error = info.error or (
                f'{DECLARATIONS_GROUP} declares "{declaration.name}": a task type name is'
                " <check|cleanup|report>.<lower-case name>"
            )
        elif holder is not None:
            info.error = info.error or f"{declaration.name} is already registered by {holder}"
        elif not loaded:  # the plugin's own module failed: say so for each of its types
            task_types.fail(declaration.name, f"plugin {info.name} is broken: {info.error}")
        else:
            task_types.declare(declaration)
            info.task_types.append(declaration.name)


_loading = threading.Lock()


def _load_declared(
    task_types: TaskTypes, by_name: Mapping[str, PluginInfo], declaration: Declaration
) -> None:
    """Import a declared task type's module and call its ``register_task_types`` hook.

    What it registers is added (a name it does not hold is refused); a declared type it
    does not register, or a module that fails, marks the plugin broken.
    """
    info = by_name[declaration.plugin]
    with _loading:
        pending = task_types.pending(declaration.module)
        if not pending:  # another thread loaded it meanwhile
            return
        ours = {d.name for d in pending}

        def taken(name: str) -> str | None:
            return None if name in ours else task_types.holder(name)

        registrar = Registrar(info.name, taken)
        try:
            module = importlib.import_module(declaration.module)
            hook = getattr(module, "register_task_types", None)
            if hook is None or not hasattr(hook, "toilbox_impl"):
                raise LookupError(
                    f"{declaration.module} has no register_task_types marked @toilbox.hookimpl"
                )
            wanted = inspect.signature(hook).parameters
            hook(**{"register": registrar} if "register" in wanted else {})
        except Exception as exc:
            reason = f"{declaration.module}: {_describe(exc)}"
            info.error = info.error or reason
            for missing in pending:
                task_types.fail(missing.name, f"plugin {info.name} is broken: {reason}")
            return
        for task_type in registrar.declared:
            task_types[task_type.name] = task_type
            if task_type.name not in info.task_types:
                info.task_types.append(task_type.name)
            info.descriptions[task_type.name] = task_type.description
        for missing in (d for d in pending if task_types.is_pending(d.name)):
            reason = (
                f"{DECLARATIONS_GROUP} declares {missing.name} in {missing.module},"
                " whose register_task_types did not register it"
            )
            info.error = info.error or reason
            task_types.fail(missing.name, f"plugin {info.name} is broken: {reason}")


def _register(pm: pluggy.PluginManager, info: PluginInfo, module: ModuleType) -> None:
    if pm.get_plugin(info.name) is not None or module in pm.get_plugins():
        info.error = "a plugin of the same name (or module) is already loaded"
        return
    try:
        pm.register(module, name=info.name)
    except pluggy.PluginValidationError as exc:
        info.error = _invalid_hook(str(exc))
        return
    except Exception as exc:
        info.error = _describe(exc)
        return
    _isolate(pm, module)


def _isolate(pm: pluggy.PluginManager, plugin: object) -> None:
    """Make each plain implementation of a must-not-raise hook catch and log its own error.

    pluggy's call loop stops at the first implementation that raises.  Wrapping each one
    where it is registered keeps pluggy's own order (LIFO, tryfirst, trylast) and its
    ``wrapper=True`` / ``hookwrapper=True`` implementations, and the others still run.
    """
    for caller in pm.get_hookcallers(plugin) or []:
        if caller.name not in ISOLATED_HOOKS:
            continue
        for impl in caller.get_hookimpls():
            if impl.plugin is plugin and not (impl.wrapper or impl.hookwrapper):
                impl.function = _logging_errors(  # type: ignore[misc]
                    impl.function, caller.name, impl.plugin_name
                )


def _logging_errors(fn: Callable[..., Any], hook: str, plugin: str) -> Callable[..., Any]:
    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception:
            log.exception("plugin.hook_failed", hook=hook, plugin=plugin)
            return None

    return call


def _no_hooks(plugin: object) -> str:
    """Why a loaded plugin gives nothing: usually a hook function without its marker."""
    specs = _hook_names()
    unmarked = [name for name in specs if callable(getattr(plugin, name, None))]
    if unmarked:
        return f"{NO_HOOKS}: {', '.join(unmarked)} is not marked @toilbox.hookimpl"
    return f"{NO_HOOKS} (toilbox hooks: {', '.join(specs)})"


def _hook_names() -> list[str]:
    return [name for name in dir(hookspecs) if hasattr(getattr(hookspecs, name), "toilbox_spec")]


def _plugin_files(plugin_dirs: Iterable[Path]) -> dict[str, str]:
    """Each plugin file in these directories, with its modification time (read, not run)."""
    found = {}
    for directory in plugin_dirs:
        if directory.is_dir():
            for path in directory.glob("*.py"):
                with contextlib.suppress(OSError):
                    found[str(path)] = str(path.stat().st_mtime_ns)
    return found


@functools.cache
def _entry_point_plugins() -> list[tuple[PluginInfo, ModuleType | None, list[Declaration]]]:
    """Scanned and imported once per process: every plugin host shares the modules.

    Each plugin comes with the task types its package declares (none: it registers
    them when the host is built).
    """
    from importlib.metadata import entry_points

    installed = entry_points()
    plugin_eps = sorted(installed.select(group=ENTRY_POINT_GROUP), key=lambda e: e.name)
    dists = _Dists()
    declared = _declarations(plugin_eps, installed.select(group=DECLARATIONS_GROUP), dists)
    found = []
    for ep in plugin_eps:
        info = dists.info(ep)
        module = None
        try:
            module = ep.load()
        except Exception as exc:
            info.error = _describe(exc)
        found.append((info, module, declared.get(id(ep), [])))
    return found


def _declarations(
    plugin_eps: list[EntryPoint], declaration_eps: Iterable[EntryPoint], dists: _Dists
) -> dict[int, list[Declaration]]:
    """The declared task types of each plugin entry point (by ``id``).

    A declaration belongs to the plugin of its own distribution whose module is the
    declared module or a package holding it; or, failing that, to its distribution's
    only plugin.
    """
    by_dist: dict[str, list[EntryPoint]] = {}
    for ep in plugin_eps:
        by_dist.setdefault(dists.name(ep), []).append(ep)
    found: dict[int, list[Declaration]] = {}
    for declaration in declaration_eps:
        candidates = by_dist.get(dists.name(declaration), [])
        module = declaration.module
        owners = [
            ep for ep in candidates if module == ep.module or module.startswith(ep.module + ".")
        ]
        owner = max(owners, key=lambda ep: len(ep.module)) if owners else None
        if owner is None and len(candidates) == 1:
            owner = candidates[0]
        if owner is not None:
            name = dists.info(owner).name
            found.setdefault(id(owner), []).append(Declaration(declaration.name, module, name))
    return found


class _Dists:
    """Each installed distribution's name and version, read once: every read of either
    parses the distribution's whole METADATA file again."""

    def __init__(self) -> None:
        self._seen: dict[int, tuple[str, str | None]] = {}  # by id: the eps keep them alive

    def facts(self, ep: EntryPoint) -> tuple[str, str | None]:
        dist = ep.dist
        if dist is None:
            return "?", None
        if id(dist) not in self._seen:
            metadata = dist.metadata
            self._seen[id(dist)] = (metadata["Name"], metadata["Version"])
        return self._seen[id(dist)]

    def name(self, ep: EntryPoint) -> str:
        return self.facts(ep)[0]

    def info(self, ep: EntryPoint) -> PluginInfo:
        """How an installed plugin is named and described, before it is imported."""
        name, version = self.facts(ep)
        standard = name == "toilbox"
        return PluginInfo(
            name=ep.name if standard else f"{name}:{ep.name}",
            source="standard" if standard else "entry point",
            location=ep.value,
            version=version,
        )


class _SourceOnlyLoader(importlib.machinery.SourceFileLoader):
    """Compiles a plugin file from its own source, never from ``__pycache__``: a cached
    ``.pyc`` is one more file that someone could have swapped, and none is written."""

    def path_stats(self, path: str) -> Mapping[str, Any]:
        raise OSError("plugin files are compiled from source")  # skips the bytecode cache


def _plugin_dir_plugins(directory: Path) -> list[tuple[PluginInfo, ModuleType | None]]:
    if not directory.is_dir():
        info = PluginInfo(name=str(directory), source="plugin dir", location=str(directory))
        info.error = "plugin directory does not exist"
        return [(info, None)]
    as_root = os.geteuid() == 0
    # As root, what is found here runs as root: nobody else may be able to change it.
    # The files are then read from the directory judged, not through a symlink again.
    real = trust.require(directory, "to load plugins as root from") if as_root else directory
    found: list[tuple[PluginInfo, ModuleType | None]] = []
    for path in sorted(real.glob("*.py")):
        shown = directory / path.name
        info = PluginInfo(name=path.stem, source="plugin dir", location=str(shown))
        # A stable module name lets a child process re-import the file and pickle refer to it.
        module_name = PLUGIN_DIR_PREFIX + re.sub(r"\W", "_", path.stem)
        module = None
        source = trust.require(path, "to load a plugin as root from") if as_root else path
        if not source.is_file():  # a fifo would hang the import, a directory cannot be one
            info.error = f"{shown} is not a regular file"
            found.append((info, None))
            continue
        try:
            loader = _SourceOnlyLoader(module_name, str(source))
            spec = importlib.util.spec_from_file_location(module_name, source, loader=loader)
            if spec is None or spec.loader is None:
                raise ImportError(f"cannot load {shown}")
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module
            spec.loader.exec_module(module)
        except (Exception, SystemExit) as exc:  # a script's sys.exit() must not end toilbox
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


def _collect_task_types(
    pm: pluggy.PluginManager, infos: list[PluginInfo], task_types: TaskTypes, declaring: set[str]
) -> None:
    """Call the register_task_types hook of each plugin that does not declare its types."""
    by_name = {info.name: info for info in infos}
    for impl in pm.hook.register_task_types.get_hookimpls():  # registration order: first wins
        info = by_name[impl.plugin_name]
        if impl.plugin_name in declaring:  # its declared modules register, when needed
            continue
        if impl.wrapper or impl.hookwrapper:
            info.error = "register_task_types cannot be a wrapper: call register() in it"
            continue
        registrar = Registrar(impl.plugin_name, task_types.holder)
        try:
            impl.function(**{arg: registrar for arg in impl.argnames if arg == "register"})
        except Exception as exc:
            info.error = _describe(exc)
            continue
        for task_type in registrar.declared:
            task_types[task_type.name] = task_type
            info.task_types.append(task_type.name)
            info.descriptions[task_type.name] = task_type.description


def _unknown_hook(pluggy_message: str) -> str:
    """pluggy names the plugin's module in full; say which hook, and what was meant."""
    import difflib

    found = re.search(r"unknown hook '(\w+)'", pluggy_message)
    if not found:
        return pluggy_message
    known = _hook_names()
    close = difflib.get_close_matches(found[1], known, n=1)
    hint = f' (did you mean "{close[0]}"?)' if close else f" (toilbox hooks: {', '.join(known)})"
    return f'unknown hook "{found[1]}"{hint}'


def _invalid_hook(pluggy_message: str) -> str:
    """pluggy's whole message on one line: which argument is not in the hook's spec."""
    hook = re.search(r"for hook '(\w+)'", pluggy_message)
    extra = re.search(r"Argument\(s\) \{(.*)\} are declared", pluggy_message)
    definition = re.search(r"hookimpl definition: (.*)", pluggy_message)
    if hook and extra and definition:
        spec = getattr(hookspecs, hook[1])
        wanted = ", ".join(inspect.signature(spec).parameters)
        names = ", ".join(sorted(name.strip(" '") for name in extra[1].split(",")))
        return f"hook {definition[1]}: {hook[1]} has no argument {names} (its arguments: {wanted})"
    lines = [line.strip() for line in pluggy_message.splitlines() if line.strip()]
    return "PluginValidationError: " + "; ".join(lines)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".splitlines()[0]
