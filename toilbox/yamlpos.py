"""YAML loading that remembers where every key and value came from, within bounds.

Errors then name ``file:line``.  Duplicate keys, which PyYAML silently overwrites,
are reported instead.  A config is input like any other, so loading one is bounded:
the file's size, the number of values once aliases are expanded (an "alias bomb" is a
few lines), the nesting depth, and the size of integers.  Recursive aliases are refused.
Every bound is checked on the parser's event stream, before a node tree is built.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from toilbox import files
from toilbox.errors import ConfigError

try:  # the C loader is several times faster; fall back where libyaml is missing
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

Loc = tuple[str | int, ...]
_STR_TAG = "tag:yaml.org,2002:str"
_INT_TAG = "tag:yaml.org,2002:int"

MAX_BYTES = 16 << 20  # 3x a 50,000-task config with parameters
# Keys and values, counted again each time an alias repeats them: 50,000 tasks with
# parameters are about 500,000.
MAX_VALUES = 1_000_000
MAX_DEPTH = 64
MAX_INT_DIGITS = 20  # beyond 64 bits nothing in a config means anything


class _BoundedLoader(_Loader):
    """A value that cannot be built (a date with year 0, a huge integer) is an error at
    its own line, not an exception from deep inside the constructor."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except yaml.YAMLError:
            raise
        except (ValueError, OverflowError, TypeError) as exc:
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read this value: {exc}", node.start_mark
            ) from None

    def construct_bounded_int(self, node: yaml.ScalarNode) -> int:
        digits = sum(char.isalnum() for char in str(node.value))
        if digits > MAX_INT_DIGITS:
            raise yaml.constructor.ConstructorError(
                None, None, f"an integer of {digits} digits is too large", node.start_mark
            )
        value: int = self.construct_yaml_int(node)
        return value


_BoundedLoader.add_constructor(_INT_TAG, _BoundedLoader.construct_bounded_int)


def load(path: Path) -> tuple[Any, dict[Loc, int]]:
    """Return the document and a map from key path to 1-based line."""
    try:
        raw = files.read_regular(path, MAX_BYTES)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: config is not UTF-8 text: {exc.reason}") from None
    try:
        _check_bounds(text, path)
        # One parse: compose the node tree (it has the marks), then build data from it.
        loader = _BoundedLoader(text)
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f"{mark.line + 1}:" if mark else ""
        if isinstance(exc, yaml.constructor.ConstructorError):  # a value, not the syntax
            raise ConfigError(f"{path}:{line} {exc.problem or exc}") from None
        message = f"{path}:{line} YAML syntax error: {exc.problem or exc}"
        lines = text.splitlines()
        if mark and mark.line < len(lines) and "\t" in lines[mark.line][: mark.column + 1]:
            message += " (a tab: YAML indents with spaces only)"
        elif exc.context and exc.context.startswith("while parsing") and exc.context_mark:
            context = exc.context.removeprefix("while parsing ").removeprefix("while scanning ")
            context = context.removeprefix("a ").removeprefix("an ")
            message += f" (in the {context} that starts at line {exc.context_mark.line + 1})"
        raise ConfigError(message) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: YAML error: {_one_line(exc)}") from None
    positions: dict[Loc, int] = {}
    if node is not None:
        _walk(node, (), positions, path)
    return data, positions


def _check_bounds(text: str, path: Path) -> None:
    """Refuse, from the event stream alone, a document too large, deep or recursive once
    its aliases are expanded.  Each anchor's expanded size and depth is remembered, so an
    alias costs one step however much it stands for."""
    anchors: dict[str, tuple[int, int]] = {}  # anchor -> (values, levels of nesting)
    open_: list[list[Any]] = []  # collections being read: [anchor, values, deepest child]
    total = 0

    def add(values: int, levels: int, line: int) -> None:
        nonlocal total
        total += values
        if total > MAX_VALUES:
            raise ConfigError(
                f"{path}:{line}: the config holds more than {MAX_VALUES:,} values once its"
                " aliases are expanded"
            )
        if len(open_) + levels > MAX_DEPTH:
            raise ConfigError(f"{path}:{line}: values are nested more than {MAX_DEPTH} deep")
        if open_:
            open_[-1][1] += values
            open_[-1][2] = max(open_[-1][2], levels)

    loader = _Loader(text)
    try:
        while loader.check_event():
            event = loader.get_event()
            if event is None:  # pragma: no cover - check_event said there is one
                break
            line = event.start_mark.line + 1 if event.start_mark else 0
            if isinstance(event, yaml.CollectionStartEvent):
                add(1, 1, line)
                open_.append([event.anchor, 1, 0])
            elif isinstance(event, yaml.CollectionEndEvent):
                anchor, values, deepest = open_.pop()
                if open_:  # the collection itself was counted at its start
                    open_[-1][1] += values - 1
                    open_[-1][2] = max(open_[-1][2], deepest + 1)
                if anchor is not None:
                    anchors[anchor] = (values, deepest + 1)
            elif isinstance(event, yaml.ScalarEvent):
                add(1, 0, line)
                if event.anchor is not None:
                    anchors[event.anchor] = (1, 0)
            elif isinstance(event, yaml.AliasEvent):
                if any(entry[0] == event.anchor for entry in open_):
                    raise ConfigError(
                        f"{path}:{line}: YAML alias *{event.anchor} refers to a value that"
                        " contains it (a recursive alias)"
                    )
                if event.anchor in anchors:  # an unknown one is the composer's to report
                    add(*anchors[event.anchor], line)
    finally:
        loader.dispose()


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _walk(node: yaml.Node, loc: Loc, positions: dict[Loc, int], path: Path) -> None:
    positions.setdefault(loc, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                kind = "list" if isinstance(key_node, yaml.SequenceNode) else "mapping"
                raise ConfigError(
                    f"{path}:{key_node.start_mark.line + 1}: {'.'.join(map(str, loc)) or 'top'}:"
                    f" a key must be a name, not a {kind}"
                )
            key = str(key_node.value)
            if key_node.tag != _STR_TAG:
                # YAML 1.1 reads on/off/yes/no as booleans and 1 as a number: say so plainly.
                kind = key_node.tag.rsplit(":", 1)[-1]
                raise ConfigError(
                    f"{path}:{key_node.start_mark.line + 1}: {'.'.join(map(str, loc)) or 'top'}:"
                    f' key {key} is read as a {kind}; quote it ("{key}") to use it as a name'
                )
            if key in seen:
                where = ".".join(map(str, (*loc, key)))
                raise ConfigError(f"{path}:{key_node.start_mark.line + 1}: {where}: duplicate key")
            seen.add(key)
            positions[(*loc, key)] = key_node.start_mark.line + 1
            _walk(value_node, (*loc, key), positions, path)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, (*loc, index), positions, path)


def line_of(positions: dict[Loc, int], loc: Loc) -> int | None:
    """The line of ``loc``, or of its nearest ancestor present in the file."""
    for end in range(len(loc), -1, -1):
        if loc[:end] in positions:
            return positions[loc[:end]]
    return None


def located(path: Path, positions: dict[Loc, int], loc: Loc, message: str) -> str:
    """``file:line: key.path: message``, the shape of every config error."""
    line = line_of(positions, loc)
    where = f"{path}:{line}" if line else str(path)
    key = ".".join(str(part) for part in loc)
    return f"{where}: {key}: {message}" if key else f"{where}: {message}"
