"""docs/plugin-reference.md, generated from the code: signatures from inspect, text from
docstrings (attribute docstrings, the string under a field, read with ast).

    python -m tests.reference_doc        # rewrite docs/plugin-reference.md

tests/test_docs.py fails when the file and the code differ, so the reference cannot drift.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import toilbox
from toilbox import harness, loopback, plugins, testing, units
from toilbox.context import TaskContext
from toilbox.store.base import ReadOnlyHistory

DOC = Path(__file__).parents[1] / "docs" / "plugin-reference.md"

# Each fixture, and the object whose call (and methods) a test uses.
FIXTURES: dict[str, tuple[Any, ...]] = {
    "toilbox_run": (harness.Harness.run,),
    "toilbox_cli": (testing.CliFixture, "run", "config"),
    "toilbox_files": (testing.FilesFixture,),
    "toilbox_clock": (harness.Clock, "freeze", "step", "tick", "now", "timestamp", "frozen"),
    "toilbox_http": (testing.HttpFixture,),
    "toilbox_log": (harness.LogCapture, "events", "named", "logger"),
    "toilbox_context": (testing.ContextFixture,),
    "toilbox_contract": (testing.ContractFixture,),
    "toilbox_harness": (harness.Harness, "config", "cli"),
}
UNITS = ("Duration", "ExplicitDuration", "Size", "Percent", "ConfigPath")
UNIT_FUNCTIONS = (
    "parse_duration",
    "parse_explicit_duration",
    "parse_size",
    "parse_percent",
    "format_duration",
    "format_size",
    "config_path",
)


def doc(obj: Any) -> str:
    return inspect.cleandoc(inspect.getdoc(obj) or "")


def signature(fn: Callable[..., Any], name: str, *, drop_first: bool = False) -> str:
    """``name(a: int, b: str = 'x', *, c=None) -> T``: annotations as written in the code."""
    sig = inspect.signature(fn)
    parts, star = [], False
    params = list(sig.parameters.values())[1 if drop_first else 0 :]
    for param in params:
        if param.kind is param.KEYWORD_ONLY and not star:
            parts.append("*")
            star = True
        text = param.name
        if param.kind is param.VAR_POSITIONAL:
            text, star = "*" + text, True
        elif param.kind is param.VAR_KEYWORD:
            text = "**" + text
        if param.annotation is not param.empty:
            text += f": {param.annotation}"
        if param.default is not param.empty:
            spaced = param.annotation is not param.empty  # as PEP 8 writes defaults
            text += f" = {param.default!r}" if spaced else f"={param.default!r}"
        parts.append(text)
    returns = f" -> {sig.return_annotation}" if sig.return_annotation is not sig.empty else ""
    return f"{name}({', '.join(parts)}){returns}"


def attribute_docs(owner: Any) -> dict[str, str]:
    """The string under each annotated name of a class or module (PEP 257 attribute docs)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(owner)))
    body = tree.body if inspect.ismodule(owner) else tree.body[0].body  # type: ignore[attr-defined]
    if inspect.isclass(owner):
        body = [*body, *(n for f in body if isinstance(f, ast.FunctionDef) for n in f.body)]
    found = {}
    for node, after in zip(body, [*body[1:], None], strict=True):
        target = None
        if isinstance(node, ast.AnnAssign):
            target = node.target
        elif isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
        name = getattr(target, "attr", None) or getattr(target, "id", None)
        if (
            name
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            found[name] = inspect.cleandoc(after.value.value)
    return found


def one_line(text: str) -> str:
    return " ".join(text.split())


def cell(text: str) -> str:
    """Text for a markdown table cell: a ``|`` (even in code) would end the cell."""
    return one_line(text).replace("|", "\\|")


def default_text(field: dataclasses.Field[Any]) -> str | None:
    if field.default is not dataclasses.MISSING:
        value = field.default
        return getattr(value, "__name__", None) or repr(value)
    if field.default_factory is not dataclasses.MISSING:
        factory = field.default_factory
        return {"dict": "{}", "list": "[]"}.get(factory.__name__, f"{factory.__qualname__}()")
    return None


def constructor(cls: type) -> str:
    """``Result(status, summary='', metrics={}, ...)``: positional order and defaults."""
    parts = []
    for field in dataclasses.fields(cls):
        default = default_text(field)
        parts.append(field.name if default is None else f"{field.name}={default}")
    return f"{cls.__name__}({', '.join(parts)})"


def fields_table(cls: type) -> Iterator[str]:
    docs = attribute_docs(cls)
    yield "| field | type | default | meaning |"
    yield "| --- | --- | --- | --- |"
    for field in dataclasses.fields(cls):
        if field.name not in docs:
            raise AssertionError(f"{cls.__name__}.{field.name} has no docstring")
        default = default_text(field)
        shown = "required" if default is None else f"`{cell(default)}`"
        kind = cell(str(field.type))
        yield f"| `{field.name}` | `{kind}` | {shown} | {cell(docs[field.name])} |"


def member(owner: type, name: str, prefix: str) -> Iterator[str]:
    """A method, property or attribute of ``owner`` as a bullet."""
    attr = inspect.getattr_static(owner, name, None)
    if isinstance(attr, property):
        yield f"- `{prefix}.{name}`: {one_line(doc(attr))}"
    elif isinstance(attr, classmethod | staticmethod):
        fn = attr.__func__
        shown = signature(fn, f"{owner.__name__}.{name}", drop_first=isinstance(attr, classmethod))
        yield f"- `{shown}`: {one_line(doc(fn))}"
    elif callable(attr):
        yield f"- `{signature(attr, prefix + '.' + name, drop_first=True)}`: {one_line(doc(attr))}"
    else:
        text = attribute_docs(owner).get(name)
        if text is None:
            raise AssertionError(f"{owner.__name__}.{name} has no docstring")
        yield f"- `{prefix}.{name}`: {one_line(text)}"


def section_api() -> Iterator[str]:
    yield "## `import toilbox`"
    yield ""
    for cls in (toilbox.Result, toilbox.Metric):
        yield f"### `toilbox.{cls.__name__}`"
        yield ""
        yield f"`{constructor(cls)}`"
        yield ""
        yield doc(cls)
        yield ""
        yield from fields_table(cls)
        yield ""
        public = [n for n in vars(cls) if not n.startswith("_") and n not in ("to_dict", "from_dict")]
        for name in public:
            if name in {f.name for f in dataclasses.fields(cls)}:
                continue
            yield from member(cls, name, cls.__name__.lower())
        yield ""
    yield "### `toilbox.Status`"
    yield ""
    yield doc(toilbox.Status)
    yield ""
    yield "| member | value (exit code) | `.label` | `.severity` |"
    yield "| --- | --- | --- | --- |"
    for status in toilbox.Status:
        yield f"| `Status.{status.name}` | {status.value} | `{status.label}` | {status.severity} |"
    yield ""
    for name in ("label", "severity", "from_label"):
        yield from member(toilbox.Status, name, "status")
    yield ""
    yield f"### `toilbox.{signature(toilbox.worst, 'worst')}`"
    yield ""
    yield doc(toilbox.worst)
    yield ""
    yield "### `toilbox.TaskContext`"
    yield ""
    yield doc(TaskContext)
    yield ""
    yield from fields_table(TaskContext)
    yield ""
    yield from member(TaskContext, "now", "ctx")
    yield from member(TaskContext, "history", "ctx")
    yield ""
    yield f"`ctx.history()` gives a `ReadOnlyHistory`: {one_line(doc(ReadOnlyHistory))}"
    yield ""
    for name in ("get", "history", "runs_between", "last_runs_before", "children"):
        yield f"- `{signature(getattr(ReadOnlyHistory, name), 'h.' + name, drop_first=True)}`"
    yield ""
    yield (
        "A window of history, aggregated in the database (`[since, until)` by start;"
        " `tasks`: only these, None for all; `host`: only its runs, None for every host)."
        " Prefer these to `runs_between` over a long window: they read counts and a few"
        " rows, not every run. Their types are in `toilbox.store.window`."
    )
    yield ""
    for name in ("window_tasks", "window_failures", "window_changes", "window_points",
                 "window_freed", "window_followups"):
        method = getattr(ReadOnlyHistory, name)
        yield (f"- `{signature(method, 'h.' + name, drop_first=True)}`:"
               f" {one_line(doc(method))}")
    yield ""
    yield "### `toilbox.TaskFailed`"
    yield ""
    yield doc(toilbox.TaskFailed)
    yield ""
    yield "### `toilbox.hookimpl`"
    yield ""
    yield (
        'pluggy\'s `HookimplMarker("toilbox")`: mark each hook function `@toilbox.hookimpl`.'
        " Options: `tryfirst=True` / `trylast=True` (run before or after the other"
        " implementations), `wrapper=True` (a generator around them: `result = yield`),"
        " `hookwrapper=True` (pluggy's older wrapper style). The hooks and their arguments"
        " are in [writing-plugins.md](writing-plugins.md#the-contract)."
    )
    yield ""
    yield f"### `{signature(plugins.RegisterTaskType.__call__, 'register', drop_first=True)}`"
    yield ""
    yield doc(plugins.RegisterTaskType.__call__)
    yield ""


def section_units() -> Iterator[str]:
    yield "## `toilbox.units`"
    yield ""
    yield doc(units)
    yield ""
    yield "| type | Python value | in the config |"
    yield "| --- | --- | --- |"
    docs = attribute_docs(units)
    for name in UNITS:
        python_type = getattr(units, name).__origin__.__name__
        yield f"| `{name}` | `{python_type}` | {cell(docs[name])} |"
    yield ""
    for name in UNIT_FUNCTIONS:
        fn = getattr(units, name)
        yield f"- `{signature(fn, name)}`: {one_line(doc(fn))}"
    yield ""


def section_fixtures() -> Iterator[str]:
    yield "## Fixtures (`toilbox.testing`)"
    yield ""
    yield (
        "Installing toilbox installs a pytest plugin (the `pytest11` entry point"
        " `toilbox.testing`): these fixtures are there in every test, without an import."
    )
    yield ""
    for fixture, (target, *members) in FIXTURES.items():
        yield f"### `{fixture}`"
        yield ""
        if inspect.isfunction(target):
            yield f"`{signature(target, fixture, drop_first=True)}`"
            yield ""
            yield doc(target)
        else:
            yield doc(target)
            call = inspect.getattr_static(target, "__call__", None)
            if call is not None and "__call__" in vars(target):
                yield ""
                yield f"`{signature(call, fixture, drop_first=True)}`"
                yield ""
                yield doc(call)
            if members:
                yield ""
                for name in members:
                    yield from member(target, name, fixture)
        yield ""
    yield "### What they return"
    yield ""
    for cls in (harness.TaskRun, harness.CliRun, loopback.Response):
        yield f"#### `{cls.__name__}`"
        yield ""
        yield doc(cls)
        yield ""
        yield from fields_table(cls)
        extras = [n for n in vars(cls) if not n.startswith("_")]
        extras = [n for n in extras if n not in {f.name for f in dataclasses.fields(cls)}]
        if extras:
            yield ""
            for name in extras:
                yield from member(cls, name, cls.__name__.lower())
        yield ""
    yield "#### `LoopbackServer`"
    yield ""
    yield doc(loopback.LoopbackServer)
    yield ""
    for name in ("port", "base_url", "url", "script", "requests", "close"):
        yield from member(loopback.LoopbackServer, name, "server")
    yield ""


def render() -> str:
    lines = [
        "# Plugin reference",
        "",
        "Everything a plugin touches: the `toilbox` API, `toilbox.units` and the pytest"
        " fixtures. This file is generated from the code's signatures and docstrings"
        " (`python -m tests.reference_doc`), and toilbox's tests fail when the two differ."
        " The guide, with worked examples, is [writing-plugins.md](writing-plugins.md).",
        "",
        *section_api(),
        *section_units(),
        *section_fixtures(),
    ]
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    DOC.write_text(render())
    sys.stdout.write(f"wrote {DOC}\n")
