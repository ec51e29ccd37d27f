"""cleanup.empty-dirs: remove empty directories under roots, deepest first, never a root.

A directory is planned when it holds nothing but directories that are planned too, and
is older than ``older_than`` (on its own mtime, atime or ctime).  Removal goes deepest
first with ``rmdir`` relative to the parent's descriptor, which can only ever remove an
empty directory: a file that appears meanwhile makes it fail, and it is skipped.
"""

from __future__ import annotations

import errno
import math
import os
import stat
import time
from collections.abc import Callable

import toilbox
from toilbox_cleanups import report
from toilbox_cleanups.listing import list_dir
from toilbox_cleanups.match import Filter
from toilbox_cleanups.params import EmptyDirsParams
from toilbox_cleanups.roots import open_roots, under
from toilbox_cleanups.walk import Counts, Cursor, Problems, Root, walk


def _plan_root(
    root: Root, cutoff: float, match: Callable[[str, str], bool] | None, flt: Filter,
    one_filesystem: bool, time_of: Callable[[os.stat_result], float], problems: Problems,
    counts: Counts,
) -> list[int]:
    """The removable directories of one root, children before parents."""
    table = root.table
    others: dict[int, int] = {}  # entries that are not directories, per visited directory
    subdirs: dict[int, int] = {}

    def visit(fd: int, node: int) -> list[str]:
        listing = list_dir(fd, "", None, problems, table, node)
        others[node] = listing.files + listing.symlinks + listing.special
        subdirs[node] = len(listing.subdirs)  # pruned or unopenable ones never count
        return listing.subdirs

    cursor = Cursor(root)
    try:
        walk(cursor, [0], visit, problems, counts, dev=root.dev if one_filesystem else None,
             time_of=time_of, pruned=flt.pruned if flt.prune_dirs else None)
    finally:
        cursor.close()
    removable_children = [0] * len(table)
    removable: list[int] = []
    for node in range(len(table) - 1, 0, -1):  # children have higher numbers than parents
        if node not in others:
            continue
        parent = table.parent[node]
        if (
            others[node] == 0
            and removable_children[node] == subdirs[node]
            and table.time[node] < cutoff
            and (match is None or match(table.rel(parent), table.name[node]))
        ):
            removable.append(node)
            removable_children[parent] += 1
    return removable


def run(ctx: toilbox.TaskContext, params: EmptyDirsParams) -> toilbox.Result:
    """Remove empty directories under roots, deepest first, never a root itself."""
    started = time.monotonic()
    cutoff = ctx.now().timestamp() - params.older_than if params.older_than else math.inf
    attr = "st_" + params.age_by

    def time_of(st: os.stat_result) -> float:
        return float(getattr(st, attr))

    flt = Filter.build(params.include, params.exclude)
    match = None if flt.trivial else flt.matcher()
    roots, problems = open_roots(params, time_of)
    counts = Counts()
    try:
        plans = [
            _plan_root(root, cutoff, match, flt, params.one_filesystem, time_of, problems,
                       counts)
            for root in roots
        ]
        planned = sum(len(p) for p in plans)
        budget = report.budget(params, planned, 0, ctx.force)
        paths = [roots[i].table.path(n) for i, plan in enumerate(plans) for n in plan]
        what = report.count(planned, "empty directory")
        headline = (f"plan: {what} of {counts.dirs:,} directories scanned in "
                    f"{time.monotonic() - started:.2f}s")
        data: dict[str, object] = {
            "dry_run": ctx.dry_run, "roots": params.roots,
            "scanned": {"dirs": counts.dirs},
            "ignored": {"other_filesystem": counts.other_filesystem,
                        "excluded_dirs": counts.excluded_dirs},
            "plan": {"dirs": planned, "sample": paths[: report.SAMPLE]},
            "budget": budget.to_json(),
        }
        if ctx.dry_run or budget.blocks:
            summary = (report.budget_refusal(budget, what) if budget.blocks else
                       f"dry run: would remove {what} {under(params.roots)}")
            if problems.count:
                summary += f"; {report.count(problems.count, 'error')}"
            lines = report.plan_lines(headline, budget.describe(), [], paths[: report.SAMPLE])
            lines += report.problem_lines(problems, 0, [])
            data["errors"] = problems.to_json()
            data.update(report.audit(ctx, "plan", paths))
            return toilbox.Result(
                report.status_of(budget.blocks, problems.count, False), summary,
                {"dirs_planned": planned, "dirs_removed": 0, "skipped": 0,
                 "errors": problems.count}, data, "\n".join(lines))
        report.before_act()
        skipped = Problems()
        removed = [_remove(root, plan, attr, problems, skipped)
                   for root, plan in zip(roots, plans, strict=True)]
    finally:
        for root in roots:
            root.close()
    removed_paths = [roots[i].table.path(n) for i, nodes in enumerate(removed) for n in nodes]
    report.log_paths(ctx, "cleanup.removed", removed_paths)
    summary = (f"removed {report.count(len(removed_paths), 'empty directory')} "
               f"{under(params.roots)}, {report.count(problems.count, 'error')}")
    if skipped.count:
        summary += f", {skipped.count:,} skipped (changed since the plan)"
    lines = [headline, budget.describe(), *report.problem_lines(problems, skipped.count,
                                                                 skipped.samples)]
    data.update({"removed": {"dirs": len(removed_paths)}, "errors": problems.to_json(),
                 "skipped": skipped.to_json()})
    data.update(report.audit(ctx, "removed", removed_paths))
    return toilbox.Result(
        report.status_of(False, problems.count, False), summary,
        {"dirs_planned": planned, "dirs_removed": len(removed_paths), "skipped": skipped.count,
         "errors": problems.count}, data, "\n".join(lines))


def _remove(
    root: Root, plan: list[int], attr: str, problems: Problems, skipped: Problems
) -> list[int]:
    table = root.table
    cursor = Cursor(root)
    removed: list[int] = []
    emptied: set[int] = set()  # directories we removed a child from: their times moved
    try:
        for node in plan:
            parent, name = table.parent[node], table.name[node]
            try:
                parent_fd = cursor.fd(parent)
                st = os.lstat(name, dir_fd=parent_fd)
            except FileNotFoundError:
                skipped.add(table.path(node), "vanished")
                continue
            except OSError as exc:
                problems.add(table.path(node), exc)
                continue
            reason = None
            if not stat.S_ISDIR(st.st_mode):
                reason = "no longer a directory"
            elif st.st_ino != table.ino[node] or st.st_dev != table.dev[node]:
                reason = "replaced by another directory"
            # Our own scan moved its atime; and removing its children moved the others.
            elif (attr != "st_atime" and node not in emptied
                  and getattr(st, attr) > table.time[node]):
                reason = f"{attr.removeprefix('st_')} changed since the plan"
            if reason:
                skipped.add(table.path(node), reason)
                continue
            try:
                os.rmdir(name, dir_fd=parent_fd)
            except OSError as exc:
                if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                    skipped.add(table.path(node), "no longer empty")
                elif exc.errno == errno.ENOENT:
                    skipped.add(table.path(node), "vanished")
                else:
                    problems.add(table.path(node), exc)
                continue
            removed.append(node)
            emptied.add(parent)
    finally:
        cursor.close()
    return removed
