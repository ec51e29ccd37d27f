"""The one scan loop every cleanup shares: list a directory, sort its entries, stat the
files that matter.

It runs once per directory, inside ``walk.walk``'s visitor, on a descriptor the walk opened
with ``O_NOFOLLOW | O_DIRECTORY``.  Entries are sorted by their directory-entry type (no
system call), and only regular files that the cleanup selects are stat'ed, relative to
that descriptor and without following a symlink.  cleanup.files, cleanup.logs and
cleanup.empty-dirs differ only in the ``Select`` they pass and in what they do with the
``Listing`` they get back.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable

from toilbox_cleanups.walk import DirTable, Problems

Match = Callable[[str, str], bool]


class Listing:
    """One directory's entries, sorted by the shared loop in ``list_dir``."""

    __slots__ = ("files", "found", "matched", "matched_bytes", "other_fs", "special",
                 "subdirs", "symlinks")

    def __init__(self) -> None:
        self.subdirs: list[str] = []
        self.found: list[tuple[str, os.stat_result]] = []
        self.files = self.symlinks = self.special = self.other_fs = 0
        self.matched = self.matched_bytes = 0


class Select:
    """Which regular files ``list_dir`` stats and keeps, and the times it compares."""

    __slots__ = ("attr", "cutoff", "dev", "match", "min_size")

    def __init__(self, match: Match | None, dev: int | None, attr: str = "st_mtime",
                 cutoff: float = math.inf, min_size: int = -1) -> None:
        self.match = match  # match(rel_dir, name); None: every file
        self.dev = dev  # a file on another device is counted, not kept (None: any device)
        self.attr = attr  # the age time compared with cutoff
        self.cutoff = cutoff  # keep files whose age time is below this
        self.min_size = min_size  # and whose size is above this


_NOTHING = Select(None, None)


def list_dir(
    fd: int, rel: str, select: Select | None, problems: Problems, table: DirTable, node: int,
) -> Listing:
    """The one scan loop every cleanup shares: list the directory open at ``fd``.

    Entries are sorted by their ``d_type`` (no stat for that): subdirectories go to
    ``subdirs`` (to enter), regular files are counted, and symlinks and special files
    are only counted, never followed.  Without ``select`` nothing is stat'ed.  With it,
    each regular file that ``select.match(rel, name)`` takes is stat'ed relative to
    ``fd`` (never following a symlink) and counted as matched; a file on another device
    (a bind mount) is counted apart; a file older than the cutoff and larger than the
    minimum goes to ``found`` with its stat.  A stat that fails is counted in ``problems``.
    """
    out = Listing()
    subdirs, found = out.subdirs, out.found
    files = links = special = other_fs = matched = matched_bytes = 0
    rule = select or _NOTHING
    match, dev, cutoff, min_size, attr = rule.match, rule.dev, rule.cutoff, rule.min_size, rule.attr
    by_mtime = attr == "st_mtime"
    with os.scandir(fd) as entries:
        for entry in entries:
            if entry.is_file(follow_symlinks=False):
                files += 1
                if select is None:
                    continue
                name = entry.name
                if match is not None and not match(rel, name):
                    continue
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError as exc:
                    problems.add(table.path(node, name), exc)
                    continue
                if dev is not None and st.st_dev != dev:
                    other_fs += 1
                    continue
                size = st.st_size
                matched += 1
                matched_bytes += size
                if (st.st_mtime if by_mtime else getattr(st, attr)) < cutoff and size > min_size:
                    found.append((name, st))
            elif entry.is_dir(follow_symlinks=False):
                subdirs.append(entry.name)
            elif entry.is_symlink():
                links += 1
            else:
                special += 1
    out.files, out.symlinks, out.special, out.other_fs = files, links, special, other_fs
    out.matched, out.matched_bytes = matched, matched_bytes
    return out
