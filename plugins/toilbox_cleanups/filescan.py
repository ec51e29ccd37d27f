"""cleanup.files' scan: every root walked once, the subtrees split across worker processes.

The parent walks the top levels and leaves the subtrees below them as work items; the
workers take items from a shared queue (``pool``), walk them with the shared listing loop
(``walk.list_dir``), and send back the directories they saw and the files they selected,
packed column by column (``delete.Candidates``), so that little is pickled and the
parent merges arrays rather than rebuilding a tuple per file.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from typing import Any

from toilbox_cleanups import pool, report
from toilbox_cleanups.delete import Candidates
from toilbox_cleanups.listing import Select, list_dir
from toilbox_cleanups.match import Filter
from toilbox_cleanups.params import FilesParams
from toilbox_cleanups.walk import Counts, Cursor, Problems, Root, Rows, walk

SPLIT_ITEMS = 16  # aim for at least this many work items per worker


class Spec:
    """The filters, reduced to what the inner loop compares."""

    __slots__ = ("attr", "cutoff", "keep_newest", "match", "min_size", "one_filesystem",
                 "pruned")

    def __init__(self, params: FilesParams, now: float) -> None:
        flt = Filter.build(params.include, params.exclude)
        # Age time must be below cutoff (inf: no age filter); size above min_size (-1: none).
        self.cutoff = now - params.older_than if params.older_than is not None else math.inf
        self.attr = "st_" + params.age_by
        self.min_size = params.larger_than if params.larger_than is not None else -1
        self.keep_newest = params.keep_newest
        self.match = None if flt.trivial else flt.matcher()
        self.pruned = flt.pruned if flt.prune_dirs is not None else None
        self.one_filesystem = params.one_filesystem

    def time_of(self, st: os.stat_result) -> float:
        return float(getattr(st, self.attr))


class Scan:
    """What one process saw under every root.

    ``groups`` holds (root index, directory node, files selected in it), in the order of
    the selected files in ``cands``.
    """

    __slots__ = ("cands", "counts", "files", "groups", "matched", "matched_bytes",
                 "other_fs_files", "problems", "special", "symlinks")

    def __init__(self) -> None:
        self.groups: list[tuple[int, int, int]] = []
        self.cands = Candidates()
        self.files = self.matched = self.matched_bytes = 0
        self.symlinks = self.special = self.other_fs_files = 0
        self.counts = Counts()
        self.problems = Problems()

    @property
    def planned(self) -> int:
        return len(self.cands)

    def merge(self, other: Scan, offsets: list[int], bases: list[int]) -> None:
        """Add a worker's scan; its new directory nodes move by its root's offset."""
        self.groups.extend(
            (i, node if node < bases[i] else node + offsets[i], n) for i, node, n in other.groups
        )
        self.cands.extend(other.cands)
        for name in ("files", "matched", "matched_bytes", "symlinks", "special",
                     "other_fs_files"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.counts.merge(other.counts)
        self.problems.merge(other.problems)


def make_visit(
    index: int, root: Root, spec: Spec, scan: Scan
) -> Callable[[int, int], list[str]]:
    """List one directory (the shared loop) and select its files by the filters."""
    table, problems, groups, cands = root.table, scan.problems, scan.groups, scan.cands
    add_name, add_ino, add_size = cands.names.append, cands.ino.append, cands.size.append
    add_time, add_blocks, add_ctime = cands.time.append, cands.blocks.append, cands.ctime.append
    cutoff, min_size, attr, keep = spec.cutoff, spec.min_size, spec.attr, spec.keep_newest
    by_mtime = attr == "st_mtime"
    match = spec.match
    dev = root.dev if spec.one_filesystem else None

    def age(item: tuple[str, os.stat_result]) -> float:
        return float(getattr(item[1], attr))

    # With keep_newest, every matching file is listed: the newest go before the filters.
    select = (Select(match, dev, attr) if keep is not None
              else Select(match, dev, attr, cutoff, min_size))

    def visit(fd: int, node: int) -> list[str]:
        listing = list_dir(fd, table.rel(node) if match is not None else "", select,
                           problems, table, node)
        found = listing.found
        scan.files += listing.files
        scan.symlinks += listing.symlinks
        scan.special += listing.special
        scan.other_fs_files += listing.other_fs
        scan.matched += listing.matched
        scan.matched_bytes += listing.matched_bytes
        if keep is not None and found:
            found = [f for f in sorted(found, key=age, reverse=True)[keep:]
                     if age(f) < cutoff and f[1].st_size > min_size]
        if found:
            groups.append((index, node, len(found)))
            # Straight into the columns: a stat kept per file would cost more than it holds.
            for name, st in found:
                add_name(name)
                add_ino(st.st_ino)
                add_size(st.st_size)
                add_time(st.st_mtime if by_mtime else getattr(st, attr))
                add_blocks(st.st_blocks)
                add_ctime(st.st_ctime)
        return listing.subdirs

    return visit


def scan_roots(roots: list[Root], spec: Spec, workers: int, progress: report.Progress) -> Scan:
    """Scan every root: the top levels here, the subtrees in ``workers`` processes."""
    scan = Scan()
    cursors = [Cursor(root) for root in roots]
    dev = [root.dev if spec.one_filesystem else None for root in roots]

    def show(snapshot: tuple[int, int]) -> None:
        progress.update("scanning", snapshot[0], None, planned=snapshot[1])

    def here(i: int) -> Callable[[int, int], list[str]]:
        """The visitor for root ``i`` in this process, telling the progress bar."""
        visit = make_visit(i, roots[i], spec, scan)
        return _reporting(visit, scan, show) if progress.enabled else visit

    frontier: list[tuple[int, int]] = []
    for i in range(len(roots)):
        left = walk(cursors[i], [0], here(i), scan.problems, scan.counts, dev=dev[i],
                    time_of=spec.time_of, pruned=spec.pruned,
                    max_depth=1 if workers > 1 else None)
        frontier.extend((i, node) for node in left)
    # A few wide directories split well; a single deep one gets opened up a level further.
    depth = 1
    while workers > 1 and 0 < len(frontier) < workers * SPLIT_ITEMS and depth < 3:
        depth += 1
        deeper: list[tuple[int, int]] = []
        for i, node in frontier:
            left = walk(cursors[i], [node], here(i), scan.problems, scan.counts, dev=dev[i],
                        time_of=spec.time_of, pruned=spec.pruned, max_depth=depth)
            deeper.extend((i, n) for n in left)
        frontier = deeper
    if workers <= 1 or len(frontier) < 2:
        for i, node in frontier:
            walk(cursors[i], [node], here(i), scan.problems, scan.counts, dev=dev[i],
                 time_of=spec.time_of, pruned=spec.pruned)
    for cursor in cursors:
        cursor.close()
    if workers <= 1 or len(frontier) < 2:
        return scan
    items = _batches(frontier, pool.MAX_ITEMS)
    bases = [len(root.table) for root in roots]
    telling = progress.enabled

    def work(indices: Iterator[int], tell: pool.Report) -> tuple[list[Rows], Scan]:
        mine = Scan()
        cursors = [Cursor(root) for root in roots]
        visits = [make_visit(i, root, spec, mine) for i, root in enumerate(roots)]
        if telling:
            visits = [_reporting(visit, mine, tell) for visit in visits]
        for index in indices:
            for i, node in items[index]:
                walk(cursors[i], [node], visits[i], mine.problems, mine.counts, dev=dev[i],
                     time_of=spec.time_of, pruned=spec.pruned)
        return [root.table.rows(base) for root, base in zip(roots, bases, strict=True)], mine

    seen: dict[int, tuple[int, int]] = {}
    own = (scan.files, scan.planned)

    def on_progress(worker: int, snapshot: tuple[int, int]) -> None:
        seen[worker] = snapshot
        files = own[0] + sum(f for f, _ in seen.values())
        planned = own[1] + sum(p for _, p in seen.values())
        progress.update("scanning", files, None, planned=planned)

    results = pool.run(workers, len(items), work, on_progress if progress.enabled else None)
    for rows, theirs in results:
        # Every worker numbered its new directories from the same bases.
        offsets = [root.table.extend(r, base) for root, r, base in zip(roots, rows, bases,
                                                                       strict=True)]
        scan.merge(theirs, offsets, bases)
    return scan


def _reporting(
    visit: Callable[[int, int], list[str]], scan: Scan, tell: pool.Report
) -> Callable[[int, int], list[str]]:
    def visit_and_tell(fd: int, node: int) -> list[str]:
        subdirs = visit(fd, node)
        tell((scan.files, scan.planned))
        return subdirs

    return visit_and_tell


def _batches(items: list[Any], limit: int) -> list[list[Any]]:
    size = max(1, math.ceil(len(items) / limit))
    return [items[i : i + size] for i in range(0, len(items), size)]
