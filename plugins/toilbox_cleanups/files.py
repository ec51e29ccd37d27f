"""cleanup.files: delete regular files under roots, by age, size, name and budget targets.

Plan, then act.  The scan (split across worker processes by subdirectory) lists what
the filters select; budget targets pick the oldest of those; the budget is checked
against the whole plan; only then does a second pass delete, re-checking each entry
(same inode, still a regular file, not modified since the plan) through descriptors
re-opened from the root.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import toilbox
from toilbox.units import format_size
from toilbox_cleanups import delete, pool, report
from toilbox_cleanups.delete import Candidate, Group
from toilbox_cleanups.match import Filter, shown
from toilbox_cleanups.params import CommonParams, FilesParams
from toilbox_cleanups.walk import (
    Counts,
    Cursor,
    Problems,
    RefusedRootError,
    Root,
    RootError,
    Rows,
    open_root,
    walk,
)

SPLIT_ITEMS = 16  # aim for at least this many work items per worker


@dataclass(frozen=True)
class Spec:
    """The filters, reduced to what the inner loop compares."""

    cutoff: float  # age time must be below this (inf: no age filter)
    attr: str  # st_mtime, st_atime or st_ctime
    min_size: int  # size must be above this (-1: no size filter)
    keep_newest: int | None
    match: Callable[[str, str], bool] | None
    pruned: Callable[[str], bool] | None
    one_filesystem: bool

    @classmethod
    def build(cls, params: FilesParams, now: float) -> Spec:
        flt = Filter.build(params.include, params.exclude)
        return cls(
            cutoff=now - params.older_than if params.older_than is not None else math.inf,
            attr="st_" + params.age_by,
            min_size=params.larger_than if params.larger_than is not None else -1,
            keep_newest=params.keep_newest,
            match=None if flt.trivial else flt.matcher(),
            pruned=flt.pruned if flt.prune_dirs is not None else None,
            one_filesystem=params.one_filesystem,
        )

    def time_of(self, st: os.stat_result) -> float:
        return float(getattr(st, self.attr))


@dataclass
class Scan:
    """What one process saw under one root."""

    groups: list[tuple[int, list[Candidate]]] = field(default_factory=list)
    files: int = 0
    matched: int = 0
    matched_bytes: int = 0
    symlinks: int = 0
    special: int = 0
    other_fs_files: int = 0
    planned: int = 0
    counts: Counts = field(default_factory=Counts)
    problems: Problems = field(default_factory=Problems)

    def merge(self, other: Scan, offset: int, base: int) -> None:
        self.groups.extend(
            (node if node < base else node + offset, cands) for node, cands in other.groups
        )
        for name in ("files", "matched", "matched_bytes", "symlinks", "special",
                     "other_fs_files", "planned"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.counts.merge(other.counts)
        self.problems.merge(other.problems)


def make_visit(root: Root, spec: Spec, scan: Scan) -> Callable[[int, int], list[str]]:
    """The inner loop: one directory, every entry, as few Python operations as it takes."""
    table, problems, groups = root.table, scan.problems, scan.groups
    cutoff, min_size, attr = spec.cutoff, spec.min_size, spec.attr
    by_mtime = attr == "st_mtime"
    match, keep, dev = spec.match, spec.keep_newest, root.dev
    one_fs = spec.one_filesystem
    scandir = os.scandir

    def visit(fd: int, node: int) -> list[str]:
        subdirs: list[str] = []
        cands: list[Candidate] = []
        files = matched = matched_bytes = links = special = other_fs = 0
        rel = table.rel(node) if match is not None else ""
        with scandir(fd) as entries:
            for entry in entries:
                if entry.is_file(follow_symlinks=False):
                    files += 1
                    name = entry.name
                    if match is not None and not match(rel, name):
                        continue
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except OSError as exc:
                        problems.add(table.path(node, name), exc)
                        continue
                    if st.st_dev != dev and one_fs:
                        other_fs += 1
                        continue
                    size = st.st_size
                    matched += 1
                    matched_bytes += size
                    t = st.st_mtime if by_mtime else getattr(st, attr)
                    if keep is not None or (t < cutoff and size > min_size):
                        cands.append((name, st.st_ino, size, t, st.st_blocks, st.st_ctime))
                elif entry.is_dir(follow_symlinks=False):
                    subdirs.append(entry.name)
                elif entry.is_symlink():
                    links += 1
                else:
                    special += 1
        if keep is not None and cands:
            cands.sort(key=lambda c: c[3], reverse=True)
            cands = [c for c in cands[keep:] if c[3] < cutoff and c[2] > min_size]
        if cands:
            groups.append((node, cands))
            scan.planned += len(cands)
        scan.files += files
        scan.matched += matched
        scan.matched_bytes += matched_bytes
        scan.symlinks += links
        scan.special += special
        scan.other_fs_files += other_fs
        return subdirs

    return visit


def scan_roots(
    roots: list[Root], spec: Spec, workers: int, progress: report.Progress
) -> list[Scan]:
    """Scan every root: the top levels here, the subtrees in ``workers`` processes."""
    scans = [Scan() for _ in roots]
    cursors = [Cursor(root) for root in roots]

    def dev(root: Root) -> int | None:
        return root.dev if spec.one_filesystem else None

    frontier: list[tuple[int, int]] = []

    def show(snapshot: tuple[int, int]) -> None:
        progress.update("scanning", snapshot[0], None, planned=snapshot[1])

    def here(i: int) -> Callable[[int, int], list[str]]:
        """The visitor for root ``i`` in this process, telling the progress bar."""
        visit = make_visit(roots[i], spec, scans[i])
        return _reporting(visit, scans, show) if progress.enabled else visit

    for i, root in enumerate(roots):
        left = walk(cursors[i], [0], here(i), scans[i].problems,
                    scans[i].counts, dev=dev(root), time_of=spec.time_of, pruned=spec.pruned,
                    max_depth=1 if workers > 1 else None)
        frontier.extend((i, node) for node in left)
    # A few wide directories split well; a single deep one gets opened up a level further.
    depth = 1
    while workers > 1 and 0 < len(frontier) < workers * SPLIT_ITEMS and depth < 3:
        depth += 1
        deeper: list[tuple[int, int]] = []
        for i, node in frontier:
            left = walk(cursors[i], [node], here(i), scans[i].problems, scans[i].counts,
                        dev=dev(roots[i]), time_of=spec.time_of, pruned=spec.pruned,
                        max_depth=depth)
            deeper.extend((i, n) for n in left)
        frontier = deeper
    for cursor in cursors:
        cursor.close()
    if not frontier:
        return scans
    if workers <= 1 or len(frontier) < 2:
        for i, node in frontier:
            cursor = Cursor(roots[i])
            walk(cursor, [node], here(i), scans[i].problems,
                 scans[i].counts, dev=dev(roots[i]), time_of=spec.time_of, pruned=spec.pruned)
            cursor.close()
        return scans
    items = _batches(frontier, pool.MAX_ITEMS)
    bases = [len(root.table) for root in roots]

    telling = progress.enabled

    def work(indices: Iterator[int], tell: pool.Report) -> list[tuple[Rows, Scan]]:
        mine = [Scan() for _ in roots]
        cursors = [Cursor(root) for root in roots]
        visits = [make_visit(root, spec, scan) for root, scan in zip(roots, mine, strict=True)]
        if telling:
            visits = [_reporting(visit, mine, tell) for visit in visits]
        for index in indices:
            for i, node in items[index]:
                walk(cursors[i], [node], visits[i], mine[i].problems, mine[i].counts,
                     dev=dev(roots[i]), time_of=spec.time_of, pruned=spec.pruned)
        return [(root.table.rows(base), scan) for root, base, scan in zip(roots, bases, mine,
                                                                          strict=True)]

    seen: dict[int, tuple[int, int]] = {}
    own = (sum(s.files for s in scans), sum(s.planned for s in scans))

    def on_progress(worker: int, snapshot: tuple[int, int]) -> None:
        seen[worker] = snapshot
        files = own[0] + sum(f for f, _ in seen.values())
        planned = own[1] + sum(p for _, p in seen.values())
        progress.update("scanning", files, None, planned=planned)

    results = pool.run(workers, len(items), work,
                       on_progress if progress.enabled else None)
    for result in results:
        for i, (rows, scan) in enumerate(result):
            # Every worker numbered its new directories from the same base.
            offset = roots[i].table.extend(rows, bases[i])
            scans[i].merge(scan, offset, bases[i])
    return scans


def _reporting(
    visit: Callable[[int, int], list[str]], scans: list[Scan], tell: pool.Report
) -> Callable[[int, int], list[str]]:
    def visit_and_tell(fd: int, node: int) -> list[str]:
        subdirs = visit(fd, node)
        tell((sum(s.files for s in scans), sum(s.planned for s in scans)))
        return subdirs

    return visit_and_tell


def _batches(items: list[Any], limit: int) -> list[list[Any]]:
    size = max(1, math.ceil(len(items) / limit))
    return [items[i : i + size] for i in range(0, len(items), size)]


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
                roots.append(open_root(path, params.allow_dangerous_root, params.root_symlinks,
                                       time_of))
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


def run(ctx: toilbox.TaskContext, params: FilesParams) -> toilbox.Result:
    """Delete regular files under roots, by age, size, name or budget target."""
    started = time.monotonic()
    spec = Spec.build(params, ctx.now().timestamp())
    roots, problems = open_roots(params, spec.time_of)
    workers = params.workers or min(pool.cpu_count(), 4)
    progress = report.Progress(ctx.console)
    try:
        report.pause_gc()
        scans = scan_roots(roots, spec, workers, progress)
        for scan in scans:
            problems.merge(scan.problems)
        groups: list[Group] = [
            (i, node, cands) for i, scan in enumerate(scans) for node, cands in scan.groups
        ]
        plan = delete.select(roots, groups, sum(s.matched_bytes for s in scans), params)
        budget = report.budget(params, plan.files, plan.size, ctx.force)
        scanned_s = time.monotonic() - started
        if ctx.dry_run or budget.blocks:
            return _planned(ctx, params, roots, scans, plan, budget, problems, scanned_s)
        report.before_act()
        done = delete.delete(roots, plan, spec.attr, spec.min_size, workers, progress)
        return _deleted(ctx, params, roots, scans, plan, budget, problems, done, scanned_s)
    finally:
        report.resume_gc()
        progress.close()
        for root in roots:
            root.close()


def _planned_paths(roots: list[Root], plan: delete.Plan) -> tuple[list[str], report.DirSizes]:
    paths: list[str] = []
    sizes = report.DirSizes()
    for root_index, node, cands in plan.groups:
        prefix = roots[root_index].table.path(node).rstrip("/") + "/"
        paths.extend(prefix + shown(c[0]) for c in cands)
        sizes.add(prefix.rstrip("/") or "/", len(cands), sum(c[2] for c in cands))
    return paths, sizes


def _common_data(
    ctx: toilbox.TaskContext, params: FilesParams, scans: list[Scan], plan: delete.Plan,
    budget: report.Budget, problems: Problems, largest: list[dict[str, Any]], sample: list[str],
) -> dict[str, Any]:
    return {
        "dry_run": ctx.dry_run,
        "roots": params.roots,
        "scanned": {
            "files": sum(s.files for s in scans),
            "dirs": sum(s.counts.dirs for s in scans),
            "matched": sum(s.matched for s in scans),
            "matched_bytes": sum(s.matched_bytes for s in scans),
        },
        "ignored": {
            "symlinks": sum(s.symlinks for s in scans),
            "special": sum(s.special for s in scans),
            "other_filesystem": sum(s.counts.other_filesystem + s.other_fs_files for s in scans),
            "excluded_dirs": sum(s.counts.excluded_dirs for s in scans),
        },
        "plan": {"files": plan.files, "bytes": plan.size, "largest_dirs": largest,
                 "sample": sample, "targets": plan.targets, "unmet": plan.unmet},
        "budget": budget.to_json(),
        "errors": problems.to_json(),
    }


def _metrics(
    plan: delete.Plan, scans: list[Scan], problems: Problems, deleted: int = 0, freed: int = 0,
    skipped: int = 0,
) -> dict[str, toilbox.Metric | float]:
    return {
        "files_scanned": sum(s.files for s in scans),
        "files_planned": plan.files,
        "bytes_planned": toilbox.Metric(plan.size, "B", min=0),
        "files_deleted": deleted,
        "bytes_freed": toilbox.Metric(freed, "B", min=0),
        "skipped": skipped,
        "errors": problems.count,
    }


def _planned(
    ctx: toilbox.TaskContext, params: FilesParams, roots: list[Root], scans: list[Scan],
    plan: delete.Plan, budget: report.Budget, problems: Problems, scanned_s: float,
) -> toilbox.Result:
    paths, sizes = _planned_paths(roots, plan)
    largest, sample = sizes.largest(), paths[: report.SAMPLE]
    what = f"{report.count(plan.files, 'file')} ({format_size(plan.size)})"
    scanned = sum(s.files for s in scans)
    if budget.blocks:
        summary = report.budget_refusal(budget, what)
    else:
        summary = f"dry run: would delete {what} of {scanned:,} scanned {under(params.roots)}"
    if problems.count:
        summary += f"; {report.count(problems.count, 'error')}"
    headline = (f"plan: {what} in {report.count(len(sizes.sizes), 'directory')}, "
                f"of {scanned:,} files scanned in {scanned_s:.2f}s")
    lines = report.plan_lines(headline, budget.describe(), largest, sample)
    lines[1:1] = plan.targets
    lines += report.problem_lines(problems, 0, [])
    data = _common_data(ctx, params, scans, plan, budget, problems, largest, sample)
    data.update(report.audit(ctx, "plan", paths))
    status = report.status_of(budget.blocks, problems.count, bool(plan.unmet))
    return toilbox.Result(status, summary, _metrics(plan, scans, problems), data,
                          "\n".join(lines))


def _deleted(
    ctx: toilbox.TaskContext, params: FilesParams, roots: list[Root], scans: list[Scan],
    plan: delete.Plan, budget: report.Budget, problems: Problems, done: delete.Done,
    scanned_s: float,
) -> toilbox.Result:
    problems.merge(done.problems)
    paths, freed, sizes = delete.deleted_paths(roots, plan, done)
    report.log_paths(ctx, "cleanup.deleted", paths)
    summary = (f"deleted {report.count(len(paths), 'file')}, {format_size(freed)} freed "
               f"{under(params.roots)}, {report.count(problems.count, 'error')}")
    if done.skipped.count:
        summary += f", {done.skipped.count:,} skipped (changed since the plan)"
    if budget.forced and budget.breaches:
        summary += f" (forced past {' and '.join(budget.breaches)})"
    if plan.unmet:
        summary += "; " + "; ".join(plan.unmet)
    largest = sizes.largest()
    headline = (f"deleted {report.count(len(paths), 'file')} ({format_size(freed)}) of "
                f"{plan.files:,} planned, from {sum(s.files for s in scans):,} files scanned "
                f"in {scanned_s:.2f}s")
    lines = report.plan_lines(headline, budget.describe(), largest, [])
    lines[1:1] = plan.targets
    lines += report.problem_lines(problems, done.skipped.count, done.skipped.samples)
    data = _common_data(ctx, params, scans, plan, budget, problems, largest, paths[:report.SAMPLE])
    data["deleted"] = {"files": len(paths), "bytes": freed}
    data["skipped"] = done.skipped.to_json()
    data.update(report.audit(ctx, "deleted", paths))
    status = report.status_of(False, problems.count, bool(plan.unmet))
    metrics = _metrics(plan, scans, problems, len(paths), freed, done.skipped.count)
    return toilbox.Result(status, summary, metrics, data, "\n".join(lines))
