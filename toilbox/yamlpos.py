"""YAML loading that remembers where every key and value came from.

Errors then name ``file:line``.  Duplicate keys, which PyYAML silently overwrites,
are reported instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from toilbox.errors import ConfigError

try:  # the C loader is several times faster; fall back where libyaml is missing
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

Loc = tuple[str | int, ...]
_STR_TAG = "tag:yaml.org,2002:str"


def load(path: Path) -> tuple[Any, dict[Loc, int]]:
    """Return the document and a map from key path to 1-based line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: config is not UTF-8 text: {exc.reason}") from None
    try:
        # One parse: compose the node tree (it has the marks), then build data from it.
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f"{mark.line + 1}:" if mark else ""
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
        raise ConfigError(f"{path}: YAML error: {exc}") from None
    positions: dict[Loc, int] = {}
    if node is not None:
        _walk(node, (), positions, path)
    return data, positions


def _walk(node: yaml.Node, loc: Loc, positions: dict[Loc, int], path: Path) -> None:
    positions.setdefault(loc, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
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
