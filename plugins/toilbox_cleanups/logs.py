"""cleanup.logs: retention for applications that do not rotate their own logs.

Per directory, the log files are those matching ``include`` (and ``X.gz`` where ``X``
matches).  Plain ones older than ``compress_after`` are gzipped; compressed ones older
than ``delete_after`` are deleted, except that the ``keep`` newest log files of each
directory are never deleted.

Compression is crash-safe: the ``.gz`` is written under a temporary name, fsynced,
linked into place (never over an existing file) and the directory fsynced, and only
then is the original unlinked.  A crash leaves the original, or both; never neither.
The next run finds both, checks the ``.gz`` holds exactly the original, and finishes.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import itertools
import math
import os
import stat
import time
from collections.abc import Callable

import toilbox
from toilbox.units import format_size
from toilbox_cleanups import report
from toilbox_cleanups.listing import Select, list_dir
from toilbox_cleanups.match import Filter, shown
from toilbox_cleanups.params import LogsParams
from toilbox_cleanups.roots import open_roots, under
from toilbox_cleanups.walk import Counts, Cursor, Problems, Root, walk

TMP_PREFIX = ".toilbox-gz-"
STALE_TMP_S = 3600.0
CHUNK = 1 << 20
# Test seam: called with "written" (the .gz is on disk under its temporary name) and
# "linked" (the .gz is in place, the original not yet unlinked).
STEPS: list[Callable[[str], None]] = []
_counter = itertools.count()

# (root index, directory node, name, inode, size, mtime, ctime)
Entry = tuple[int, int, str, int, int, float, float]


class LogPlan:
    __slots__ = ("compress", "delete", "logs", "stale")

    def __init__(self) -> None:
        self.compress: list[Entry] = []
        self.delete: list[Entry] = []
        self.stale: list[Entry] = []  # our own temporaries, left by a crash
        self.logs = 0


def _step(name: str) -> None:
    for hook in STEPS:
        hook(name)


def _plan_root(
    index: int, root: Root, params: LogsParams, now: float, plan: LogPlan, problems: Problems,
    counts: Counts,
) -> None:
    flt = Filter.build(params.include, params.exclude)
    match = flt.matcher()
    table = root.table
    compress_cutoff = now - params.compress_after if params.compress_after is not None else None
    delete_cutoff = now - params.delete_after if params.delete_after is not None else -math.inf

    def is_log(rel: str, name: str) -> bool:
        """A log, a compressed log, or one of our own temporaries."""
        return ((name.startswith(TMP_PREFIX) and name.endswith(".tmp"))
                or (name.endswith(".gz") and match(rel, name[:-3])) or match(rel, name))

    def visit(fd: int, node: int) -> list[str]:
        listing = list_dir(fd, table.rel(node), select, problems, table, node)
        logs: list[tuple[float, bool, Entry]] = []
        for name, st in listing.found:
            item = (index, node, name, st.st_ino, st.st_size, st.st_mtime, st.st_ctime)
            if name.startswith(TMP_PREFIX) and name.endswith(".tmp"):
                if st.st_mtime < now - STALE_TMP_S:
                    plan.stale.append(item)
            else:
                logs.append((st.st_mtime, name.endswith(".gz"), item))
        logs.sort(key=lambda log: log[0], reverse=True)
        plan.logs += len(logs)
        for rank, (mtime, compressed, item) in enumerate(logs):
            if not compressed:
                if compress_cutoff is not None and mtime < compress_cutoff:
                    plan.compress.append(item)
            elif rank >= params.keep and mtime < delete_cutoff:
                plan.delete.append(item)
        return listing.subdirs

    select = Select(is_log, root.dev if params.one_filesystem else None)
    cursor = Cursor(root)
    try:
        walk(cursor, [0], visit, problems, counts,
             dev=root.dev if params.one_filesystem else None,
             time_of=lambda st: float(st.st_mtime),
             pruned=flt.pruned if flt.prune_dirs else None)
    finally:
        cursor.close()


def _paths(roots: list[Root], entries: list[Entry]) -> list[str]:
    return [roots[e[0]].table.path(e[1], e[2]) for e in entries]


def run(ctx: toilbox.TaskContext, params: LogsParams) -> toilbox.Result:
    """Compress old logs atomically, delete old compressed logs, keep the newest few."""
    started = time.monotonic()
    now = ctx.now().timestamp()
    roots, problems = open_roots(params, lambda st: float(st.st_mtime))
    counts = Counts()
    plan = LogPlan()
    try:
        for index, root in enumerate(roots):
            _plan_root(index, root, params, now, plan, problems, counts)
        delete_bytes = sum(e[4] for e in plan.delete)
        budget = report.budget(params, len(plan.delete), delete_bytes, ctx.force)
        compress_bytes = sum(e[4] for e in plan.compress)
        to_compress, to_delete = _paths(roots, plan.compress), _paths(roots, plan.delete)
        headline = (
            f"plan: compress {report.count(len(plan.compress), 'file')} "
            f"({format_size(compress_bytes)}), delete "
            f"{report.count(len(plan.delete), 'compressed file')} ({format_size(delete_bytes)}),"
            f" of {report.count(plan.logs, 'log file')} in "
            f"{report.count(counts.dirs, 'directory')}, "
            f"scanned in {time.monotonic() - started:.2f}s"
        )
        data: dict[str, object] = {
            "dry_run": ctx.dry_run, "roots": params.roots,
            "scanned": {"dirs": counts.dirs, "logs": plan.logs},
            "plan": {
                "compress": {"files": len(plan.compress), "bytes": compress_bytes,
                             "sample": to_compress[: report.SAMPLE]},
                "delete": {"files": len(plan.delete), "bytes": delete_bytes,
                           "sample": to_delete[: report.SAMPLE]},
            },
            "budget": budget.to_json(),
        }
        if ctx.dry_run or budget.blocks:
            what = (f"{report.count(len(plan.delete), 'compressed file')} "
                    f"({format_size(delete_bytes)})")
            summary = (report.budget_refusal(budget, what) if budget.blocks else
                       f"dry run: would compress {report.count(len(plan.compress), 'file')} "
                       f"and delete {what} {under(params.roots)}")
            lines = [headline, budget.describe()]
            for title, paths in (("compress", to_compress), ("delete", to_delete)):
                if paths:
                    lines.append(f"{title} (sample of {min(len(paths), report.SAMPLE)}):")
                    lines.extend(f"  {p}" for p in paths[: report.SAMPLE])
            lines += report.problem_lines(problems, 0, [])
            data["errors"] = problems.to_json()
            data.update(report.audit(ctx, "plan-compress", to_compress, "compress_paths"))
            data.update(report.audit(ctx, "plan-delete", to_delete, "delete_paths"))
            return toilbox.Result(
                report.status_of(budget.blocks, problems.count, False), summary,
                {"files_to_compress": len(plan.compress), "files_to_delete": len(plan.delete),
                 "errors": problems.count}, data, "\n".join(lines))
        report.before_act()
        act = _Act(roots, params.compress_level)
        try:
            act.compress_all(plan.compress)
            act.delete_all(plan.delete + plan.stale)
        finally:
            act.close()
    finally:
        for root in roots:
            root.close()
    problems.merge(act.problems)
    compressed = _paths(roots, act.compressed)
    deleted = _paths(roots, act.deleted)
    report.log_paths(ctx, "cleanup.compressed", compressed)
    report.log_paths(ctx, "cleanup.deleted", deleted)
    summary = (
        f"compressed {report.count(len(compressed), 'file')} "
        f"({format_size(act.bytes_in)} to {format_size(act.bytes_out)}), deleted "
        f"{report.count(len(deleted), 'file')} ({format_size(act.freed)}) "
        f"{under(params.roots)}, {report.count(problems.count, 'error')}"
    )
    if act.skipped.count:
        summary += f", {act.skipped.count:,} skipped (changed since the plan)"
    lines = [headline, budget.describe(),
             *report.problem_lines(problems, act.skipped.count, act.skipped.samples)]
    data.update({
        "compressed": {"files": len(compressed), "bytes_in": act.bytes_in,
                       "bytes_out": act.bytes_out},
        "deleted": {"files": len(deleted), "bytes": act.freed},
        "errors": problems.to_json(), "skipped": act.skipped.to_json(),
    })
    data.update(report.audit(ctx, "compressed", compressed, "compressed_paths"))
    data.update(report.audit(ctx, "deleted", deleted, "deleted_paths"))
    metrics: dict[str, toilbox.Metric | float] = {
        "files_compressed": len(compressed),
        "bytes_saved": toilbox.Metric(max(0, act.bytes_in - act.bytes_out), "B", min=0),
        "files_deleted": len(deleted),
        "bytes_freed": toilbox.Metric(act.freed, "B", min=0),
        "skipped": act.skipped.count,
        "errors": problems.count,
    }
    return toilbox.Result(report.status_of(False, problems.count, False), summary, metrics,
                          data, "\n".join(lines))


class _Act:
    def __init__(self, roots: list[Root], level: int) -> None:
        self.roots = roots
        self.level = level
        self.cursors = [Cursor(root) for root in roots]
        self.problems = Problems()
        self.skipped = Problems()
        self.compressed: list[Entry] = []
        self.deleted: list[Entry] = []
        self.bytes_in = self.bytes_out = self.freed = 0

    def close(self) -> None:
        for cursor in self.cursors:
            cursor.close()

    def _dir(self, entry: Entry) -> int:
        return self.cursors[entry[0]].fd(entry[1])

    def _path(self, entry: Entry) -> str:
        return self.roots[entry[0]].table.path(entry[1], entry[2])

    def compress_all(self, entries: list[Entry]) -> None:
        for entry in entries:
            try:
                outcome = compress(self._dir(entry), entry[2], entry[3], entry[5], self.level)
            except FileNotFoundError:
                self.skipped.add(self._path(entry), "vanished")
                continue
            except _ChangedError as exc:
                self.skipped.add(self._path(entry), exc.strerror or "changed")
                continue
            except OSError as exc:
                self.problems.add(self._path(entry), exc)
                continue
            if isinstance(outcome, str):
                self.skipped.add(self._path(entry), outcome)
                continue
            self.compressed.append(entry)
            self.bytes_in += outcome[0]
            self.bytes_out += outcome[1]

    def delete_all(self, entries: list[Entry]) -> None:
        for entry in entries:
            try:
                dir_fd = self._dir(entry)
                st = os.lstat(entry[2], dir_fd=dir_fd)
                if st.st_ino != entry[3] or not stat.S_ISREG(st.st_mode):
                    self.skipped.add(self._path(entry), "replaced since the plan")
                    continue
                if st.st_mtime > entry[5]:
                    self.skipped.add(self._path(entry), "mtime changed since the plan")
                    continue
                if st.st_ctime != entry[6]:  # a new file on a reused inode number, or chmod
                    self.skipped.add(self._path(entry), "replaced or changed since the plan")
                    continue
                os.unlink(entry[2], dir_fd=dir_fd)
            except FileNotFoundError:
                self.skipped.add(self._path(entry), "vanished")
                continue
            except OSError as exc:
                self.problems.add(self._path(entry), exc)
                continue
            self.deleted.append(entry)
            self.freed += st.st_size


def compress(dir_fd: int, name: str, ino: int, mtime: float, level: int) -> tuple[int, int] | str:
    """Gzip ``name`` beside itself, crash-safely; return (bytes in, bytes out), or why not."""
    src = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                  dir_fd=dir_fd)
    try:
        st = os.fstat(src)
        if not stat.S_ISREG(st.st_mode) or st.st_ino != ino:
            return "replaced since the plan"
        if st.st_mtime > mtime:
            return "mtime changed since the plan"
        target = name + ".gz"
        try:
            existing: os.stat_result | None = os.lstat(target, dir_fd=dir_fd)
        except FileNotFoundError:
            existing = None
        if existing is not None:
            # Both there: an earlier run stopped between link and unlink; finish it.
            if stat.S_ISREG(existing.st_mode) and _holds(dir_fd, target, src):
                _unlink_same(dir_fd, name, st)
                return st.st_size, existing.st_size
            raise FileExistsError(errno.EEXIST, f"{shown(target)} already exists")
        size_out = _write_gz(dir_fd, src, st, name, target, level)
        return st.st_size, size_out
    finally:
        os.close(src)


def _write_gz(dir_fd: int, src: int, st: os.stat_result, name: str, target: str,
              level: int) -> int:
    tmp = f"{TMP_PREFIX}{os.getpid()}-{next(_counter)}.tmp"
    out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                  0o600, dir_fd=dir_fd)
    linked = False
    try:
        try:
            with (
                os.fdopen(out, "wb", closefd=False) as raw,
                gzip.GzipFile(filename=target, mode="wb", compresslevel=level, fileobj=raw,
                              mtime=int(st.st_mtime)) as gz,
            ):
                while chunk := os.read(src, CHUNK):
                    gz.write(chunk)
            os.fchmod(out, stat.S_IMODE(st.st_mode))
            if os.geteuid() == 0:
                os.fchown(out, st.st_uid, st.st_gid)
            os.utime(out, ns=(st.st_atime_ns, st.st_mtime_ns))
            os.fsync(out)
            size_out = os.fstat(out).st_size
        finally:
            os.close(out)
        _step("written")
        after = os.fstat(src)
        if after.st_size != st.st_size or after.st_mtime_ns != st.st_mtime_ns:
            raise _ChangedError("written to during compression")
        os.link(tmp, target, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
        linked = True
        os.unlink(tmp, dir_fd=dir_fd)
        os.fsync(dir_fd)  # the .gz is durable before the original goes
        _step("linked")
    except BaseException:
        if not linked:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dir_fd)
        raise
    _unlink_same(dir_fd, name, st)
    os.fsync(dir_fd)
    return size_out


class _ChangedError(OSError):
    def __init__(self, message: str) -> None:
        super().__init__(errno.EAGAIN, message)


def _unlink_same(dir_fd: int, name: str, st: os.stat_result) -> None:
    now = os.lstat(name, dir_fd=dir_fd)
    if now.st_ino != st.st_ino or now.st_dev != st.st_dev:
        raise _ChangedError("replaced during compression; the original is kept")
    os.unlink(name, dir_fd=dir_fd)


def _holds(dir_fd: int, target: str, src: int) -> bool:
    """Whether the gzip file ``target`` decompresses to exactly what ``src`` holds."""
    fd = os.open(target, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    offset = 0
    try:
        with os.fdopen(fd, "rb") as raw, gzip.GzipFile(fileobj=raw, mode="rb") as gz:
            while chunk := gz.read(CHUNK):
                if os.pread(src, len(chunk), offset) != chunk:
                    return False
                offset += len(chunk)
    except (OSError, EOFError, gzip.BadGzipFile):
        return False
    return os.pread(src, 1, offset) == b""

