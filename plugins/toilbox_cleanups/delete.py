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
from array import array
from collections.abc import Iterator, Sequence

from toilbox.units import format_size
from toilbox_cleanups import pool, report
from toilbox_cleanups.match import shown
from toilbox_cleanups.params import FilesParams
from toilbox_cleanups.walk import Cursor, Problems, Root

# (root index, directory node, indices of its planned files in the Candidates)
Group = tuple[int, int, Sequence[int]]

DELETED, SKIPPED, FAILED = 0, 1, 2
INLINE_BELOW = 2_000  # fewer deletes than this are not worth forking workers for
ITEMS_PER_WORKER = 16


class Candidates:
    """The files a scan selected, as it found them, column by column.

    Columns (a list of names and arrays of numbers) are what makes a worker's share
    cheap to send and to merge: pickling an array copies its bytes, where a tuple per
    file would be rebuilt object by object in the parent.
    """

    __slots__ = ("blocks", "ctime", "ino", "names", "size", "time")

    def __init__(self) -> None:
        self.names: list[str] = []
        self.ino = array("Q")
        self.size = array("q")
        self.time = array("d")  # the age time: st_mtime, st_atime or st_ctime
        self.blocks = array("q")  # 512-byte blocks, what deleting it frees
        self.ctime = array("d")  # a new file on a reused inode number has another ctime

    def __len__(self) -> int:
        return len(self.names)

    def extend(self, other: Candidates) -> None:
        self.names.extend(other.names)
        for column in ("ino", "size", "time", "blocks", "ctime"):
            getattr(self, column).extend(getattr(other, column))

    def bytes_of(self, indices: Sequence[int]) -> int:
        if isinstance(indices, range) and indices.step == 1:
            return sum(self.size[indices.start : indices.stop])
        size = self.size
        return sum([size[i] for i in indices])


class Plan:
    __slots__ = ("cands", "files", "groups", "size", "targets", "unmet")

    def __init__(self, cands: Candidates, groups: list[Group], files: int, size: int,
                 targets: list[str] | None = None, unmet: list[str] | None = None) -> None:
        self.cands = cands
        self.groups = groups
        self.files = files
        self.size = size
        self.targets = targets or []
        self.unmet = unmet or []


def select(  # noqa: PLR0912, PLR0915 -- one pass over two kinds of target, kept together
    roots: list[Root], cands: Candidates, found: list[tuple[int, int, int]],
    matched_bytes: int, params: FilesParams,
) -> Plan:
    """All candidates; or, with budget targets, the oldest until the targets are met.

    ``found`` is the scan's (root index, directory node, count) in candidate order.
    """
    groups: list[Group] = []
    start = 0
    for root_index, node, count in found:
        groups.append((root_index, node, range(start, start + count)))
        start += count
    if params.max_total_size is None and params.min_free is None:
        return Plan(cands, groups, len(cands), sum(cands.size))
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
    owner = array("q", [gi for gi, (_, _, count) in enumerate(found) for _ in range(count)])
    chosen: dict[int, list[int]] = {}
    files = size = 0
    freed: dict[int, int] = dict.fromkeys(needs, 0)
    for ci in sorted(range(len(cands)), key=cands.time.__getitem__):
        if excess <= 0 and not any(n > 0 for n in needs.values()):
            break
        gi = owner[ci]
        dev = roots[found[gi][0]].dev
        if excess <= 0 and needs.get(dev, 0) <= 0:
            continue
        chosen.setdefault(gi, []).append(ci)
        files += 1
        size += cands.size[ci]
        excess -= cands.size[ci]
        if dev in needs:
            needs[dev] -= cands.blocks[ci] * 512
            freed[dev] += cands.blocks[ci] * 512
    unmet: list[str] = []
    if params.max_total_size is not None:
        after = matched_bytes - size
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
    kept: list[Group] = [(g[0], g[1], chosen[gi]) for gi, g in enumerate(groups) if gi in chosen]
    return Plan(cands, kept, files, size, targets, unmet)


def _free_target(params: FilesParams) -> str:
    kind, amount = params.min_free or ("bytes", 0.0)
    return f"{amount:g}%" if kind == "percent" else format_size(amount)


class Done:
    """What the deletes did: one status per planned file, problems and skips."""

    __slots__ = ("problems", "skipped", "statuses")

    def __init__(self, groups: int) -> None:
        self.statuses = [bytearray() for _ in range(groups)]  # per plan group
        self.problems = Problems()
        self.skipped = Problems()


def delete(
    roots: list[Root], plan: Plan, attr: str, min_size: int, workers: int,
    progress: report.Progress,
) -> Done:
    """Delete the plan, re-checking every entry; split across workers when it is large."""
    if workers <= 1 or plan.files < INLINE_BELOW:
        done = Done(len(plan.groups))
        _delete_groups(roots, plan, range(len(plan.groups)), attr, min_size, done,
                       lambda n: progress.update("deleting", n, plan.files), 0)
        return done
    items = _split(plan, workers * ITEMS_PER_WORKER)

    def work(indices: Iterator[int], tell: pool.Report) -> Done:
        mine = Done(len(plan.groups))
        processed = 0
        for index in indices:
            start, stop = items[index]
            processed = _delete_groups(roots, plan, range(start, stop), attr, min_size,
                                       mine, tell, processed)
        return mine

    seen: dict[int, int] = {}

    def on_progress(worker: int, processed: int) -> None:
        seen[worker] = processed
        progress.update("deleting", sum(seen.values()), plan.files)

    done = Done(len(plan.groups))
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


def _delete_groups(  # noqa: PLR0915 -- the per-file loop is inlined on purpose
    roots: list[Root], plan: Plan, indices: range, attr: str, min_size: int,
    done: Done, tell: pool.Report, processed: int,
) -> int:
    """Delete plan.groups[indices]; return ``processed`` plus the entries looked at."""
    cursors: dict[int, Cursor] = {}
    statuses, problems, skipped = done.statuses, done.problems, done.skipped
    cands = plan.cands
    names, inos, times, ctimes = cands.names, cands.ino, cands.time, cands.ctime
    lstat, unlink, is_reg = os.lstat, os.unlink, stat.S_ISREG
    by_mtime = attr == "st_mtime"
    try:
        for gi in indices:
            root_index, node, members = plan.groups[gi]
            cursor = cursors.get(root_index)
            if cursor is None:
                cursor = cursors[root_index] = Cursor(roots[root_index])
            table = cursor.table
            codes = statuses[gi] = bytearray(len(members))
            processed += len(members)
            try:
                fd = cursor.fd(node)
            except OSError as exc:
                for k in range(len(members)):
                    codes[k] = FAILED
                problems.add(table.path(node), exc)
                problems.count += len(members) - 1
                continue
            dev = table.dev[node]
            for k, ci in enumerate(members):
                name = names[ci]
                try:
                    st = lstat(name, dir_fd=fd)
                except FileNotFoundError:
                    codes[k] = SKIPPED
                    skipped.add(table.path(node, name), "vanished")
                    continue
                except OSError as exc:
                    codes[k] = FAILED
                    problems.add(table.path(node, name), exc)
                    continue
                # The same inode, unchanged since the plan: the common case, in one test.
                if (st.st_ino == inos[ci] and st.st_ctime == ctimes[ci] and st.st_dev == dev
                        and is_reg(st.st_mode) and st.st_size > min_size
                        and (st.st_mtime if by_mtime else getattr(st, attr)) <= times[ci]):
                    try:
                        unlink(name, dir_fd=fd)
                    except FileNotFoundError:
                        codes[k] = SKIPPED
                        skipped.add(table.path(node, name), "vanished")
                    except OSError as exc:
                        codes[k] = FAILED
                        problems.add(table.path(node, name), exc)
                    continue
                codes[k] = SKIPPED
                skipped.add(table.path(node, name), _why_changed(st, dev, inos[ci], times[ci],
                                                                 ctimes[ci], attr, min_size))
            tell(processed)
    finally:
        for cursor in cursors.values():
            cursor.close()
    return processed


def _why_changed(
    st: os.stat_result, dev: int, ino: int, then: float, ctime: float, attr: str, min_size: int
) -> str:
    if st.st_ino != ino or st.st_dev != dev:
        return "replaced by another file"
    if not stat.S_ISREG(st.st_mode):
        return "no longer a regular file"
    if getattr(st, attr) > then:
        return f"{attr.removeprefix('st_')} changed since the plan"
    if st.st_size <= min_size:
        return "no longer larger than larger_than"
    return "replaced or changed since the plan"  # ctime: a new file on a reused inode, chmod


def listed_paths(
    roots: list[Root], plan: Plan, done: Done | None = None
) -> tuple[list[str], int, report.DirSizes]:
    """The plan's paths (or, with ``done``, the deleted ones), their bytes, and the bytes
    per directory, made for people: one printable line each."""
    paths: list[str] = []
    total = 0
    sizes = report.DirSizes()
    names, size = plan.cands.names, plan.cands.size
    for gi, (root_index, node, planned) in enumerate(plan.groups):
        members = planned
        if done is not None:
            codes = done.statuses[gi]
            if codes.count(DELETED) != len(codes):  # not all of them: the rare case
                members = [ci for ci, code in zip(planned, codes, strict=True)
                           if code == DELETED]
        if isinstance(members, range):
            first, stop = members.start, members.stop
            mine, nbytes = names[first:stop], sum(size[first:stop])
        else:
            mine, nbytes = [names[ci] for ci in members], sum([size[ci] for ci in members])
        if not mine:
            continue
        directory = roots[root_index].table.path(node)
        prefix = directory.rstrip("/") + "/"
        if "".join(mine).isprintable():
            paths.extend([prefix + name for name in mine])
        else:
            paths.extend([prefix + shown(name) for name in mine])
        total += nbytes
        sizes.add(directory, len(mine), nbytes)
    return paths, total, sizes
