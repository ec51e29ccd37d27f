"""Task types: what a plugin registers, and the registry that finds each one by name.

A plugin may declare its task types in its package metadata, in the ``toilbox.task_types``
entry-point group: the entry point's name is the task type, its value the module whose
``register_task_types`` hook registers it.  A declared type is known (to config
validation, to ``explain_unknown``) without importing anything, and its module is
imported only when a task of that type is validated or run: ``toilbox run`` of one check
imports that check, not every plugin module installed.  A plugin without declarations
registers its types when the plugin manager is built, as it always did.

This module imports nothing of toilbox above it, so the hookspecs and the plugin manager
can both name its types without importing each other.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel

if TYPE_CHECKING:
    from toilbox.context import TaskContext
    from toilbox.result import Result

DECLARATIONS_GROUP = "toilbox.task_types"
TASK_TYPE_NAME = re.compile(r"^(check|cleanup|report)\.[a-z0-9][a-z0-9_-]*$")

TaskFunction = Callable[["TaskContext", Any], "Result"]


class RegisterTaskType(Protocol):
    """The ``register`` callback a ``register_task_types`` implementation is given."""

    def __call__(
        self,
        name: str,
        fn: TaskFunction,
        *,
        params: type[BaseModel],
        description: str | None = None,
    ) -> None:
        """Declare the task type ``name`` (``<check|cleanup|report>.<lower-case name>``).

        ``fn(ctx, params)`` does the work and returns a Result; ``params`` is a pydantic
        model that validates the task's ``with:`` when the config loads; ``description``
        (default: the first line of ``fn``'s docstring) shows in ``toilbox plugins``
        and the schema.  A bad name, a non-model ``params`` or a name already taken
        marks the plugin broken.
        """


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


@dataclass(frozen=True)
class Declaration:
    """A task type a plugin's metadata names, before its module is imported."""

    name: str
    module: str  # whose register_task_types hook registers it
    plugin: str


class Registrar:
    """The ``register`` callback for one plugin: checks each type, keeps what it declared."""

    def __init__(self, plugin: str, taken: Callable[[str], str | None]) -> None:
        self.plugin = plugin
        self.taken = taken  # the plugin that already holds a name, if any
        self.declared: list[TaskType] = []

    def __call__(
        self,
        name: str,
        fn: TaskFunction,
        *,
        params: type[BaseModel],
        description: str | None = None,
    ) -> None:
        if not TASK_TYPE_NAME.match(name):
            raise ValueError(
                f'task type name "{name}" must be <check|cleanup|report>.<lower-case name>'
            )
        if not (isinstance(params, type) and issubclass(params, BaseModel)):
            raise TypeError(f"{name}: params must be a pydantic BaseModel subclass")
        if not callable(fn):
            raise TypeError(f"{name}: fn must be callable")
        holder = self.taken(name)
        if holder is not None or any(t.name == name for t in self.declared):
            raise ValueError(f"{name} is already registered by {holder or self.plugin}")
        doc = description or (fn.__doc__ or "").strip().splitlines()[:1]
        text = doc if isinstance(doc, str) else (doc[0] if doc else "")
        self.declared.append(TaskType(name, fn, params, self.plugin, text))


class TaskTypes(MutableMapping[str, TaskType]):
    """Every known task type by name.  A declared one is loaded on its first lookup
    (``types[name]``, ``types.get(name)``); ``name in types``, ``len`` and iterating the
    names import nothing.  ``load`` is given the declaration to import and register."""

    def __init__(self, load: Callable[[Declaration], None] | None = None) -> None:
        self._types: dict[str, TaskType] = {}
        self._declared: dict[str, Declaration] = {}
        self._failed: dict[str, str] = {}  # a declared type that did not load: why
        self._load = load

    def declare(self, declaration: Declaration) -> None:
        self._declared[declaration.name] = declaration

    def holder(self, name: str) -> str | None:
        """The plugin that registered or declared ``name``; None if nobody did."""
        if name in self._types:
            return self._types[name].plugin
        declared = self._declared.get(name)
        return declared.plugin if declared else None

    def pending(self, module: str | None = None) -> list[Declaration]:
        """Declared types not loaded yet (of one module, if given)."""
        return [d for d in self._declared.values() if module is None or d.module == module]

    def is_pending(self, name: str) -> bool:
        return name in self._declared and name not in self._types

    def fail(self, name: str, reason: str) -> None:
        self._declared.pop(name, None)
        self._failed[name] = reason

    def failure(self, name: str) -> str | None:
        """Why a declared type could not be loaded, or None."""
        return self._failed.get(name)

    def load_all(self) -> None:
        """Import every declared type's module (``toilbox plugins``, ``schema``, the daemon)."""
        for name in list(self._declared):
            self.get(name)

    def __getitem__(self, name: str) -> TaskType:
        declared = self._declared.get(name)
        if name not in self._types and declared is not None and self._load is not None:
            self._load(declared)
            if name in self._declared:  # the loader neither registered it nor said why
                self.fail(name, f"{declared.module} did not register it")
        return self._types[name]

    def __setitem__(self, name: str, task_type: TaskType) -> None:
        self._declared.pop(name, None)
        self._types[name] = task_type

    def __delitem__(self, name: str) -> None:
        if name in self._types:
            del self._types[name]
        else:
            del self._declared[name]

    def __contains__(self, name: object) -> bool:
        return name in self._types or name in self._declared

    def __iter__(self) -> Iterator[str]:
        yield from list(self._types)
        yield from [name for name in self._declared if name not in self._types]

    def __len__(self) -> int:
        return len(self._types.keys() | self._declared.keys())
