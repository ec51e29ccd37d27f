"""Opening the configured roots of a run, and refusing the ones that must not be cleaned.

Each root is opened from ``/`` one component at a time (``rootpath``): a symlink on the
way that the config does not name, or a real path that is a dangerous root, ends the run
before anything is changed under any root.  A root that is missing or cannot be opened
is an error of the run, and the other roots are still cleaned.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import toilbox
from toilbox_cleanups.match import shown
from toilbox_cleanups.params import CommonParams, dangerous_reason, refused_symlink
from toilbox_cleanups.rootpath import ComponentError, SymlinkRefusedError, open_root_dir
from toilbox_cleanups.walk import DirTable, Problems, Root, describe


class RootError(Exception):
    """A root that cannot be opened: missing, not a directory, not searchable."""

    def __init__(self, message: str, why: str | None = None) -> None:
        super().__init__(message)
        self.why = why or message  # the message without the root's path, for samples


class RefusedRootError(RootError):
    """A root reached through a symlink the config does not name, or whose real path is
    dangerous: a config problem (or an attack), never retried."""


def open_root(
    path: str, params: CommonParams, time_of: Callable[[os.stat_result], float]
) -> Root:
    """Open one configured root from ``/``, one component at a time (see ``rootpath``)."""
    try:
        fd, real = open_root_dir(path, params.root_symlinks)
    except SymlinkRefusedError as exc:
        raise RefusedRootError(f"root {refused_symlink(path, exc)}") from None
    except ComponentError as exc:
        why = shown(exc.strerror or "")
        if exc.where == path:  # "root /x does not exist", "root /x is not a directory"
            raise RootError(f"root {why}", why.removeprefix(f"{path} ")) from None
        raise RootError(f"root {path}: {why}", why) from None
    except OSError as exc:
        raise RootError(f"root {path}: {describe(exc)}", describe(exc)) from None
    reason = dangerous_reason(real)
    if reason and not params.allow_dangerous_root:
        os.close(fd)
        raise RefusedRootError(
            f"root {path} is really {real}, {reason}; refused unless allow_dangerous_root: true"
        )
    st = os.fstat(fd)
    table = DirTable(path)
    table.add(-1, "", st, time_of(st))
    return Root(path, real, fd, st.st_dev, table)


def open_roots(
    params: CommonParams, time_of: Callable[[os.stat_result], float]
) -> tuple[list[Root], Problems]:
    """Open every root; a missing one is an error of the run, a refused one ends it
    before anything is changed."""
    roots: list[Root] = []
    problems = Problems()
    try:
        for path in params.roots:
            try:
                roots.append(open_root(path, params, time_of))
            except RefusedRootError as exc:
                raise toilbox.TaskFailed(str(exc)) from None
            except RootError as exc:
                problems.add(path, exc.why)
        _no_overlap(roots)
    except BaseException:
        for root in roots:
            root.close()
        raise
    return roots, problems


def _no_overlap(roots: list[Root]) -> None:
    """Roots that do not overlap as written may still do so once named symlinks are
    followed; the same tree cleaned twice in one run is refused like overlapping roots."""
    for index, root in enumerate(roots):
        mine = root.real.rstrip("/") + "/"
        for other in roots[:index]:
            theirs = other.real.rstrip("/") + "/"
            if mine.startswith(theirs) or theirs.startswith(mine):
                raise toilbox.TaskFailed(
                    f"roots {other.path} and {root.path} overlap: they are really "
                    f"{other.real} and {root.real}")


def under(roots: list[str]) -> str:
    return f"under {roots[0]}" if len(roots) == 1 else f"under {len(roots)} roots"

