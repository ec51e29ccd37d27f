"""Globs on paths relative to a root, and paths made safe to print.

A pattern without ``/`` matches a file name at any depth (``*.tmp``).  A pattern with
``/`` matches the whole relative path from the root (``cache/*.bin``, ``/top.log``).
``*`` and ``?`` stop at ``/``; ``**`` crosses it, so ``**/`` is any number of
directories and ``build/**`` is everything under ``build``.  ``[abc]`` is a class.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass


def _translate(pattern: str) -> str:
    out = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[":
            end = pattern.find("]", i + 2 if pattern[i + 1 : i + 2] in ("!", "]") else i + 1)
            if end < 0:
                raise ValueError(f'glob "{pattern}": unclosed "["')
            body = pattern[i + 1 : end]
            if body.startswith("!"):
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = end + 1
        else:
            out.append(re.escape(c))
            i += 1
    return "".join(out)


def compile_globs(patterns: Sequence[str]) -> tuple[re.Pattern[str] | None, re.Pattern[str] | None]:
    """One regex for name-only patterns and one for path patterns (None when there are none)."""
    names, paths = [], []
    for pattern in patterns:
        if not pattern or pattern.strip() != pattern:
            raise ValueError(f'glob "{pattern}" is empty or has surrounding spaces')
        try:
            if "/" in pattern:
                paths.append(_translate(pattern.lstrip("/")))
            else:
                names.append(_translate(pattern))
        except IndexError as exc:
            raise ValueError(f'glob "{pattern}" is malformed') from exc
    try:
        return (
            re.compile("(?s:" + "|".join(names) + r")\Z") if names else None,
            re.compile("(?s:" + "|".join(paths) + r")\Z") if paths else None,
        )
    except re.error as exc:
        raise ValueError(f"glob {list(patterns)} is malformed: {exc}") from exc


@dataclass(frozen=True)
class Filter:
    """include/exclude on (relative directory, name); ``prune`` tells a directory to skip."""

    include_names: re.Pattern[str] | None
    include_paths: re.Pattern[str] | None
    exclude_names: re.Pattern[str] | None
    exclude_paths: re.Pattern[str] | None
    prune_dirs: re.Pattern[str] | None

    @classmethod
    def build(cls, include: Sequence[str], exclude: Sequence[str]) -> Filter:
        inc_names, inc_paths = compile_globs(include)
        exc_names, exc_paths = compile_globs(exclude)
        # "cache/**" and "cache/" exclude a whole subtree: do not even walk into it.
        subtrees = [p.removesuffix("**").rstrip("/") for p in exclude if p.endswith(("/**", "/"))]
        prune = compile_globs(["/" + s for s in subtrees if s])[1]  # anchored, as they have "/"
        return cls(inc_names, inc_paths, exc_names, exc_paths, prune)

    @property
    def trivial(self) -> bool:
        return not (self.include_names or self.include_paths or self.exclude_names
                    or self.exclude_paths)

    def matcher(self) -> Callable[[str, str], bool]:
        """``match(rel_dir, name)``: rel_dir is "" at the root, else "a/b/"."""
        inc_n = self.include_names.match if self.include_names else None
        inc_p = self.include_paths.match if self.include_paths else None
        exc_n = self.exclude_names.match if self.exclude_names else None
        exc_p = self.exclude_paths.match if self.exclude_paths else None
        any_include = inc_n is not None or inc_p is not None

        def match(rel_dir: str, name: str) -> bool:
            if any_include and not (
                (inc_n is not None and inc_n(name)) or (inc_p is not None and inc_p(rel_dir + name))
            ):
                return False
            if exc_n is not None and exc_n(name):
                return False
            return not (exc_p is not None and exc_p(rel_dir + name))

        return match

    def pruned(self, rel_dir: str) -> bool:
        """``rel_dir`` like "a/b" (no trailing slash)."""
        return self.prune_dirs is not None and self.prune_dirs.match(rel_dir) is not None


def shown(text: str) -> str:
    """A name or path as people and JSON can take it: invalid UTF-8 and control characters
    come out as backslash escapes (``\\xff``, ``\\n``); everything else is unchanged."""
    if text.isprintable():
        return text
    decoded = os.fsencode(text).decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in decoded)
