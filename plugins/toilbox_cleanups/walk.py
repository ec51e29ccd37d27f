"""Walking a tree relative to open directory descriptors, never following a symlink.

Every directory is opened with ``O_NOFOLLOW | O_DIRECTORY`` relative to its parent's
descriptor, and its identity (st_dev, st_ino) is recorded in a ``DirTable``.  Going back
to a directory later (to delete in it) re-opens it the same way from the root, and
checks that each step is still the directory seen during the scan.  So a directory
swapped for a symlink, or for another directory, between the scan and the delete leads
nowhere: the open fails or the identity differs, and the entry is counted, not followed.

Walks are iterative (10,000 levels are fine) and hold a bounded number of descriptors.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterable

from toilbox_cleanups.match import shown

O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
WINDOW = 32  # descriptors kept open at the deep end of the current path
CHECKPOINT = 64  # and one every this many levels, so climbing back is cheap
SAMPLES = 20


class DirChangedError(OSError):
    """A directory is no longer the one the scan saw (moved, replaced, swapped)."""


class OtherFilesystem(Exception):  # noqa: N818 -- a decision, not an error
    """A directory on another filesystem than its root's (one_filesystem: true)."""


class Problems:
    """Errors per entry: counted, with the first few kept as samples."""

    __slots__ = ("count", "samples")

    def __init__(self) -> None:
        self.count = 0
        self.samples: list[dict[str, str]] = []

    def add(self, path: str, error: BaseException | str) -> None:
        self.count += 1
        if len(self.samples) < SAMPLES:
            self.samples.append({"path": shown(path), "error": describe(error)})

    def merge(self, other: Problems) -> None:
        self.count += other.count
        self.samples.extend(other.samples[: max(0, SAMPLES - len(self.samples))])

    def to_json(self) -> dict[str, object]:
        return {"count": self.count, "samples": self.samples}


def _open_dir(name: str, dir_fd: int | None) -> int:
    """``O_NOFOLLOW | O_DIRECTORY``; a symlink fails (ENOTDIR or ELOOP) and says so."""
    try:
        return os.open(name, O_DIR, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ENOTDIR, errno.ELOOP):
            try:
                is_link = stat.S_ISLNK(os.lstat(name, dir_fd=dir_fd).st_mode)
            except OSError:
                is_link = False
            if is_link:
                raise DirChangedError(errno.ELOOP, "is a symlink now (not followed)") from None
        raise


def describe(error: BaseException | str) -> str:
    if isinstance(error, str):
        return error
    if isinstance(error, DirChangedError):
        return str(error)
    if isinstance(error, OSError) and error.errno == errno.ELOOP:
        return "is a symlink now (not followed)"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return f"{type(error).__name__}: {error}"


class DirTable:
    """Every directory seen under one root: parent, name, identity and age, by index.

    Index 0 is the root.  Children get higher indices than their parents (the walk is
    depth first), so iterating indices downwards visits children before parents.
    """

    __slots__ = ("_rel", "depth", "dev", "ino", "name", "parent", "root", "time")

    def __init__(self, root: str) -> None:
        self.root = root
        self.parent: list[int] = []
        self.name: list[str] = []
        self.dev: list[int] = []
        self.ino: list[int] = []
        self.time: list[float] = []
        self.depth: list[int] = []
        self._rel: dict[int, str] = {0: ""}

    def __len__(self) -> int:
        return len(self.parent)

    def add(self, parent: int, name: str, st: os.stat_result, time: float) -> int:
        self.parent.append(parent)
        self.name.append(name)
        self.dev.append(st.st_dev)
        self.ino.append(st.st_ino)
        self.time.append(time)
        self.depth.append(self.depth[parent] + 1 if parent >= 0 else 0)
        return len(self.parent) - 1

    def extend(self, rows: Rows, base: int) -> int:
        """Append rows made by a worker from a copy of this table ``base`` long; return
        the offset to add to the worker's indices at or above ``base``."""
        offset = len(self.parent) - base
        parents, names, devs, inos, times = rows
        self.parent.extend(p if p < base else p + offset for p in parents)
        self.name.extend(names)
        self.dev.extend(devs)
        self.ino.extend(inos)
        self.time.extend(times)
        depth = self.depth
        for p in self.parent[len(depth) :]:
            depth.append(depth[p] + 1)
        return offset

    def rows(self, base: int) -> Rows:
        return (self.parent[base:], self.name[base:], self.dev[base:], self.ino[base:],
                self.time[base:])

    def rel(self, node: int) -> str:
        """The directory's path from the root with a trailing slash ("" for the root)."""
        cached = self._rel.get(node)
        if cached is not None:
            return cached
        chain = []
        while node not in self._rel:
            chain.append(node)
            node = self.parent[node]
        text = self._rel[node]
        for child in reversed(chain):
            text = text + self.name[child] + "/"
            self._rel[child] = text
        return text

    def path(self, node: int, name: str | None = None) -> str:
        """An absolute path, for people and logs (not for opening anything)."""
        rel = self.rel(node) + (name or "")
        joined = self.root.rstrip("/") + "/" + rel.rstrip("/") if rel else self.root
        return joined if joined.isprintable() else shown(joined)


Rows = tuple[list[int], list[str], list[int], list[int], list[float]]


class Root:
    """An open root: the path as configured, its real path, its descriptor and device,
    and the table of the directories seen under it."""

    __slots__ = ("dev", "fd", "path", "real", "table")

    def __init__(self, path: str, real: str, fd: int, dev: int, table: DirTable) -> None:
        self.path = path
        self.real = real
        self.fd = fd
        self.dev = dev
        self.table = table

    def close(self) -> None:
        os.close(self.fd)


class Cursor:
    """The descriptor of any directory in a table, opened down from the root as needed.

    It keeps the current path open (a window at the deep end and a checkpoint every
    ``CHECKPOINT`` levels), so moving between neighbouring directories costs one open.
    Each open is checked against the identity recorded in the table.
    """

    def __init__(self, root: Root) -> None:
        self.table = root.table
        self.ids = [0]
        self.fds = [root.fd]
        self.pos = {0: 0}
        self.window = 0  # open descriptors that are not checkpoints (nor the root)
        self.low = 1  # no open non-checkpoint descriptor below this index

    def close(self) -> None:
        self._truncate(1)

    def fd(self, node: int) -> int:
        ids, fds = self.ids, self.fds
        if ids[-1] == node and fds[-1] >= 0:
            return fds[-1]
        chain = []
        parent = self.table.parent
        while True:
            index = self.pos.get(node)
            if index is not None and fds[index] >= 0:
                break
            chain.append(node)
            node = parent[node]
        self._truncate(index + 1)
        for child in reversed(chain):
            self._push(child)
        return fds[-1]

    def enter(
        self, parent: int, name: str, dev: int | None, time_of: Callable[[os.stat_result], float]
    ) -> tuple[int, int]:
        """Open a new subdirectory of ``parent`` and record it; return (node, fd)."""
        parent_fd = self.fd(parent)
        fd = _open_dir(name, parent_fd)
        try:
            st = os.fstat(fd)
        except OSError:
            os.close(fd)
            raise
        if dev is not None and st.st_dev != dev:
            os.close(fd)
            raise OtherFilesystem(name)
        node = self.table.add(parent, name, st, time_of(st))
        self._append(node, fd)
        return node, fd

    def _push(self, node: int) -> None:
        table = self.table
        fd = _open_dir(table.name[node], self.fds[-1])
        st = os.fstat(fd)
        if st.st_ino != table.ino[node] or st.st_dev != table.dev[node]:
            os.close(fd)
            raise DirChangedError(errno.ESTALE, "was replaced by another directory since the scan")
        self._append(node, fd)

    def _append(self, node: int, fd: int) -> None:
        self.ids.append(node)
        self.fds.append(fd)
        index = len(self.ids) - 1
        self.pos[node] = index
        if index % CHECKPOINT:
            self.window += 1
            if self.window > WINDOW:
                self._evict()

    def _evict(self) -> None:
        fds = self.fds
        index = self.low
        while fds[index] < 0 or index % CHECKPOINT == 0:
            index += 1
        os.close(fds[index])
        fds[index] = -1
        self.window -= 1
        self.low = index + 1

    def _truncate(self, keep: int) -> None:
        ids, fds = self.ids, self.fds
        for index in range(len(ids) - 1, keep - 1, -1):
            if index == 0:
                break
            if fds[index] >= 0:
                os.close(fds[index])
                if index % CHECKPOINT:
                    self.window -= 1
            del self.pos[ids[index]]
        del ids[max(keep, 1) :]
        del fds[max(keep, 1) :]
        self.low = min(self.low, max(keep, 1))


class Counts:
    """What a walk saw besides what its visitor counts."""

    __slots__ = ("dirs", "excluded_dirs", "other_filesystem")

    def __init__(self) -> None:
        self.dirs = 0
        self.other_filesystem = 0
        self.excluded_dirs = 0

    def merge(self, other: Counts) -> None:
        self.dirs += other.dirs
        self.other_filesystem += other.other_filesystem
        self.excluded_dirs += other.excluded_dirs


Visit = Callable[[int, int], list[str]]


def walk(
    cursor: Cursor,
    starts: Iterable[int],
    visit: Visit,
    problems: Problems,
    counts: Counts,
    *,
    dev: int | None,
    time_of: Callable[[os.stat_result], float],
    pruned: Callable[[str], bool] | None = None,
    max_depth: int | None = None,
) -> list[int]:
    """Depth first from each start node; ``visit(fd, node)`` lists the directory and
    returns the names of its subdirectories to enter.  Returns the nodes it did not
    enter because they are at ``max_depth`` (those are entered, but not visited)."""
    table = cursor.table
    left: list[int] = []
    stack: list[tuple[int, str]] = []
    for start in starts:
        try:
            fd = cursor.fd(start)
        except OSError as exc:
            problems.add(table.path(start), exc)
            continue
        _visit(cursor, start, fd, visit, problems, counts, stack, pruned)
        while stack:
            parent, name = stack.pop()
            try:
                node, fd = cursor.enter(parent, name, dev, time_of)
            except OtherFilesystem:
                counts.other_filesystem += 1
                continue
            except OSError as exc:
                problems.add(table.path(parent, name), exc)
                continue
            if max_depth is not None and table.depth[node] >= max_depth:
                left.append(node)
                continue
            _visit(cursor, node, fd, visit, problems, counts, stack, pruned)
    return left


def _visit(
    cursor: Cursor,
    node: int,
    fd: int,
    visit: Visit,
    problems: Problems,
    counts: Counts,
    stack: list[tuple[int, str]],
    pruned: Callable[[str], bool] | None,
) -> None:
    counts.dirs += 1
    try:
        subdirs = visit(fd, node)
    except OSError as exc:
        problems.add(cursor.table.path(node), exc)
        return
    if pruned is not None:
        rel = cursor.table.rel(node)
        kept = [name for name in subdirs if not pruned(rel + name)]
        counts.excluded_dirs += len(subdirs) - len(kept)
        subdirs = kept
    # Reversed, so the stack pops them in directory order.
    stack.extend((node, name) for name in reversed(subdirs))
