"""cleanup.files: delete regular files under roots, by age, size, name and budget targets.

Plan, then act.  The scan (split across worker processes by subdirectory) lists what
the filters select; budget targets pick the oldest of those; the budget is checked
against the whole plan; only then does a second pass delete, re-checking each entry
(same inode, still a regular file, not modified since the plan) through descriptors
re-opened from the root.
"""

from __future__ import annotations

import time
from typing import Any

import toilbox
from toilbox.units import format_size
from toilbox_cleanups import delete, pool, report
from toilbox_cleanups.filescan import Scan, Spec, scan_roots
from toilbox_cleanups.params import FilesParams
from toilbox_cleanups.roots import open_roots, under
from toilbox_cleanups.walk import Problems, Root


def run(ctx: toilbox.TaskContext, params: FilesParams) -> toilbox.Result:
    """Delete regular files under roots, by age, size, name or budget target."""
    started = time.monotonic()
    spec = Spec(params, ctx.now().timestamp())
    roots, problems = open_roots(params, spec.time_of)
    workers = params.workers or min(pool.cpu_count(), 4)
    progress = report.Progress(ctx.console)
    try:
        report.pause_gc()
        scan = scan_roots(roots, spec, workers, progress)
        problems.merge(scan.problems)
        plan = delete.select(roots, scan.cands, scan.groups, scan.matched_bytes, params)
        budget = report.budget(params, plan.files, plan.size, ctx.force)
        scanned_s = time.monotonic() - started
        if ctx.dry_run or budget.blocks:
            return _planned(ctx, params, roots, scan, plan, budget, problems, scanned_s)
        report.before_act()
        done = delete.delete(roots, plan, spec.attr, spec.min_size, workers, progress)
        return _deleted(ctx, params, roots, scan, plan, budget, problems, done, scanned_s)
    finally:
        report.resume_gc()
        progress.close()
        for root in roots:
            root.close()


def _common_data(
    ctx: toilbox.TaskContext, params: FilesParams, scan: Scan, plan: delete.Plan,
    budget: report.Budget, problems: Problems, largest: list[dict[str, Any]], sample: list[str],
) -> dict[str, Any]:
    return {
        "dry_run": ctx.dry_run,
        "roots": params.roots,
        "scanned": {
            "files": scan.files,
            "dirs": scan.counts.dirs,
            "matched": scan.matched,
            "matched_bytes": scan.matched_bytes,
        },
        "ignored": {
            "symlinks": scan.symlinks,
            "special": scan.special,
            "other_filesystem": scan.counts.other_filesystem + scan.other_fs_files,
            "excluded_dirs": scan.counts.excluded_dirs,
        },
        "plan": {"files": plan.files, "bytes": plan.size, "largest_dirs": largest,
                 "sample": sample, "targets": plan.targets, "unmet": plan.unmet},
        "budget": budget.to_json(),
        "errors": problems.to_json(),
    }


def _metrics(
    plan: delete.Plan, scan: Scan, problems: Problems, deleted: int = 0, freed: int = 0,
    skipped: int = 0,
) -> dict[str, toilbox.Metric | float]:
    return {
        "files_scanned": scan.files,
        "files_planned": plan.files,
        "bytes_planned": toilbox.Metric(plan.size, "B", min=0),
        "files_deleted": deleted,
        "bytes_freed": toilbox.Metric(freed, "B", min=0),
        "skipped": skipped,
        "errors": problems.count,
    }


def _planned(
    ctx: toilbox.TaskContext, params: FilesParams, roots: list[Root], scan: Scan,
    plan: delete.Plan, budget: report.Budget, problems: Problems, scanned_s: float,
) -> toilbox.Result:
    paths, _, sizes = delete.listed_paths(roots, plan)
    largest, sample = sizes.largest(), paths[: report.SAMPLE]
    what = f"{report.count(plan.files, 'file')} ({format_size(plan.size)})"
    scanned = scan.files
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
    data = _common_data(ctx, params, scan, plan, budget, problems, largest, sample)
    data.update(report.audit(ctx, "plan", paths))
    status = report.status_of(budget.blocks, problems.count, bool(plan.unmet))
    return toilbox.Result(status, summary, _metrics(plan, scan, problems), data,
                          "\n".join(lines))


def _deleted(
    ctx: toilbox.TaskContext, params: FilesParams, roots: list[Root], scan: Scan,
    plan: delete.Plan, budget: report.Budget, problems: Problems, done: delete.Done,
    scanned_s: float,
) -> toilbox.Result:
    problems.merge(done.problems)
    paths, freed, sizes = delete.listed_paths(roots, plan, done)
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
                f"{plan.files:,} planned, from {scan.files:,} files scanned "
                f"in {scanned_s:.2f}s")
    lines = report.plan_lines(headline, budget.describe(), largest, [])
    lines[1:1] = plan.targets
    lines += report.problem_lines(problems, done.skipped.count, done.skipped.samples)
    data = _common_data(ctx, params, scan, plan, budget, problems, largest, paths[:report.SAMPLE])
    data["deleted"] = {"files": len(paths), "bytes": freed}
    data["skipped"] = done.skipped.to_json()
    data.update(report.audit(ctx, "deleted", paths))
    status = report.status_of(False, problems.count, bool(plan.unmet))
    metrics = _metrics(plan, scan, problems, len(paths), freed, done.skipped.count)
    return toilbox.Result(status, summary, metrics, data, "\n".join(lines))
