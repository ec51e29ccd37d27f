"""cleanup.files after the scan: budget targets pick what to delete, then the deletes.

Each delete re-checks its entry first, through the directory re-opened from the root
with its identity checked: same inode on the same device, still a regular file, its
age time not moved since the plan (so not modified, or not read for ``age_by: atime``).
An entry that changed is skipped and counted; one that cannot be deleted is an error.
"""

from __future__ import annotations

import math
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field

from toilbox.units import format_size
from toilbox_cleanups import pool, report
from toilbox_cleanups.match import shown
from toilbox_cleanups.params import FilesParams
from toilbox_cleanups.walk import Cursor, Problems, Root

# (name, inode, size, age time, 512-byte blocks, ctime), as the scan found it
Candidate = tuple[str, int, int, float, int, float]
Group = tuple[int, int, list[Candidate]]  # (root index, directory node, candidates)

DELETED, SKIPPED, FAILED = 0, 1, 2
INLINE_BELOW = 2_000  # fewer deletes than this are not worth forking workers for
ITEMS_PER_WORKER = 16


@dataclass
class Plan:
    groups: list[Group]
    files: int
    size: int
    targets: list[str] = field(default_factory=list)
    unmet: list[str] = field(default_factory=list)


def select(  # noqa: PLR0912 -- one pass over two kinds of target, kept together
    roots: list[Root], groups: list[Group], matched_bytes: int, params: FilesParams
) -> Plan:
    """All candidates; or, with budget targets, the oldest until the targets are met."""
    if params.max_total_size is None and params.min_free is None:
        return Plan(groups, sum(len(g[2]) for g in groups),
                    sum(c[2] for g in groups for c in g[2]))
    targets: list[str] = []
    excess = -1
    if params.max_total_size is not None:
        excess = matched_bytes - params.max_total_size
    needs: dict[int, int] = {}
    filesystems: dict[int, tuple[Root, int, int]] = {}
    if params.min_free is not None:
        kind, amount = params.min_free
        for root in roots:
            if root.dev in filesystems:
                continue
            vfs = os.fstatvfs(root.fd)
            avail = vfs.f_bavail * vfs.f_frsize
            total = (vfs.f_blocks - vfs.f_bfree) * vfs.f_frsize + avail
            wanted = int(amount * total / 100) if kind == "percent" else int(amount)
            filesystems[root.dev] = (root, avail, total)
            needs[root.dev] = wanted - avail
    flat = sorted(
        (c[3], gi, ci) for gi, g in enumerate(groups) for ci, c in enumerate(g[2])
    )
    chosen: dict[int, list[Candidate]] = {}
    files = size = 0
    freed: dict[int, int] = dict.fromkeys(needs, 0)
    for _, gi, ci in flat:
        if excess <= 0 and not any(n > 0 for n in needs.values()):
            break
        root_index, _, cands = groups[gi]
        dev = roots[root_index].dev
        if excess <= 0 and needs.get(dev, 0) <= 0:
            continue
        cand = cands[ci]
        chosen.setdefault(gi, []).append(cand)
        files += 1
        size += cand[2]
        excess -= cand[2]
        if dev in needs:
            needs[dev] -= cand[4] * 512
            freed[dev] += cand[4] * 512
    unmet: list[str] = []
    if params.max_total_size is not None:
        after = matched_bytes - sum(c[2] for cs in chosen.values() for c in cs)
        targets.append(
            f"target max_total_size {format_size(params.max_total_size)}: "
            f"{format_size(matched_bytes)} matched now, {format_size(after)} after the plan"
        )
        if after > params.max_total_size:
            unmet.append(f"max_total_size {format_size(params.max_total_size)} not reachable: "
                         f"{format_size(after)} left after every eligible file")
    for dev, (root, avail, total) in filesystems.items():
        shown_target = _free_target(params)
        now_pct = 100 * avail / total if total else 0.0
        after_pct = 100 * (avail + freed[dev]) / total if total else 0.0
        targets.append(
            f"target min_free {shown_target} on the filesystem of {root.path}: "
            f"{now_pct:.1f}% free now ({format_size(avail)}), {after_pct:.1f}% after the plan"
        )
        if needs[dev] > 0:
            unmet.append(f"min_free {shown_target} not reachable on {root.path}: "
                         f"{after_pct:.1f}% free after every eligible file")
    kept = [(g[0], g[1], chosen[gi]) for gi, g in enumerate(groups) if gi in chosen]
    return Plan(kept, files, size, targets, unmet)


def _free_target(params: FilesParams) -> str:
    kind, amount = params.min_free or ("bytes", 0.0)
    return f"{amount:g}%" if kind == "percent" else format_size(amount)


@dataclass
class Done:
    statuses: list[bytearray]  # per plan group, one status per candidate
    problems: Problems = field(default_factory=Problems)
    skipped: Problems = field(default_factory=Problems)


def delete(
    roots: list[Root], plan: Plan, attr: str, min_size: int, workers: int,
    progress: report.Progress,
) -> Done:
    """Delete the plan, re-checking every entry; split across workers when it is large."""
    if workers <= 1 or plan.files < INLINE_BELOW:
        done = Done([bytearray() for _ in plan.groups])
        _delete_groups(roots, plan.groups, range(len(plan.groups)), attr, min_size, done,
                       lambda n: progress.update("deleting", n, plan.files), 0)
        return done
    items = _split(plan, workers * ITEMS_PER_WORKER)

    def work(indices: Iterator[int], tell: pool.Report) -> Done:
        mine = Done([bytearray() for _ in plan.groups])
        processed = 0
        for index in indices:
            start, stop = items[index]
            processed = _delete_groups(roots, plan.groups, range(start, stop), attr, min_size,
                                       mine, tell, processed)
        return mine

    seen: dict[int, int] = {}

    def on_progress(worker: int, processed: int) -> None:
        seen[worker] = processed
        progress.update("deleting", sum(seen.values()), plan.files)

    done = Done([bytearray() for _ in plan.groups])
    for mine in pool.run(workers, len(items), work, on_progress if progress.enabled else None):
        for gi, codes in enumerate(mine.statuses):
            if codes:
                done.statuses[gi] = codes
        done.problems.merge(mine.problems)
        done.skipped.merge(mine.skipped)
    return done


def _split(plan: Plan, pieces: int) -> list[tuple[int, int]]:
    """Consecutive runs of groups with about the same number of files each."""
    per_piece = max(1, math.ceil(plan.files / min(pieces, pool.MAX_ITEMS)))
    items, start, files = [], 0, 0
    for gi, group in enumerate(plan.groups):
        files += len(group[2])
        if files >= per_piece:
            items.append((start, gi + 1))
            start, files = gi + 1, 0
    if start < len(plan.groups):
        items.append((start, len(plan.groups)))
    while len(items) > pool.MAX_ITEMS:  # pragma: no cover - per_piece keeps this rare
        items = [(a[0], b[1]) for a, b in zip(items[::2], items[1::2], strict=False)]
    return items


def _delete_groups(  # noqa: PLR0912, PLR0915 -- the per-file loop is inlined on purpose
    roots: list[Root], groups: list[Group], indices: range, attr: str, min_size: int,
    done: Done, tell: pool.Report, processed: int,
) -> int:
    """Delete groups[indices]; return ``processed`` plus the entries looked at."""
    cursors: dict[int, Cursor] = {}
    statuses, problems, skipped = done.statuses, done.problems, done.skipped
    lstat, unlink, is_reg = os.lstat, os.unlink, stat.S_ISREG
    by_mtime = attr == "st_mtime"
    try:
        for gi in indices:
            root_index, node, cands = groups[gi]
            cursor = cursors.get(root_index)
            if cursor is None:
                cursor = cursors[root_index] = Cursor(roots[root_index])
            table = cursor.table
            codes = statuses[gi] = bytearray(len(cands))
            processed += len(cands)
            try:
                fd = cursor.fd(node)
            except OSError as exc:
                for ci in range(len(cands)):
                    codes[ci] = FAILED
                problems.add(table.path(node), exc)
                problems.count += len(cands) - 1
                continue
            dev = table.dev[node]
            for ci, (name, ino, _size, then, _blocks, ctime) in enumerate(cands):
                try:
                    st = lstat(name, dir_fd=fd)
                except FileNotFoundError:
                    codes[ci] = SKIPPED
                    skipped.add(table.path(node, name), "vanished")
                    continue
                except OSError as exc:
                    codes[ci] = FAILED
                    problems.add(table.path(node, name), exc)
                    continue
                reason = None
                if st.st_ino != ino or st.st_dev != dev:
                    reason = "replaced by another file"
                elif not is_reg(st.st_mode):
                    reason = "no longer a regular file"
                elif (st.st_mtime if by_mtime else getattr(st, attr)) > then:
                    reason = f"{attr.removeprefix('st_')} changed since the plan"
                elif st.st_size <= min_size:
                    reason = "no longer larger than larger_than"
                elif st.st_ctime != ctime:  # a new file on a reused inode number, or chmod
                    reason = "replaced or changed since the plan"
                if reason is not None:
                    codes[ci] = SKIPPED
                    skipped.add(table.path(node, name), reason)
                    continue
                try:
                    unlink(name, dir_fd=fd)
                except FileNotFoundError:
                    codes[ci] = SKIPPED
                    skipped.add(table.path(node, name), "vanished")
                except OSError as exc:
                    codes[ci] = FAILED
                    problems.add(table.path(node, name), exc)
            tell(processed)
    finally:
        for cursor in cursors.values():
            cursor.close()
    return processed


def deleted_paths(
    roots: list[Root], plan: Plan, done: Done
) -> tuple[list[str], int, report.DirSizes]:
    paths: list[str] = []
    size = 0
    sizes = report.DirSizes()
    for (root_index, node, cands), codes in zip(plan.groups, done.statuses, strict=True):
        table = roots[root_index].table
        prefix = table.path(node).rstrip("/") + "/"
        dir_files = dir_bytes = 0
        for cand, code in zip(cands, codes, strict=True):
            if code == DELETED:
                paths.append(prefix + shown(cand[0]))
                dir_files += 1
                dir_bytes += cand[2]
        if dir_files:
            size += dir_bytes
            sizes.add(prefix.rstrip("/") or "/", dir_files, dir_bytes)
    return paths, size, sizes
