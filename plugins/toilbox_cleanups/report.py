"""What the cleanups tell people: plans, budgets, audit lists, progress on a terminal."""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TextIO

import toilbox
from toilbox.units import format_size
from toilbox_cleanups.params import CommonParams

INLINE_PATHS = 10_000  # up to this many paths go in the run's data; more go to a file
SAMPLE = 10
KEEP_ARTIFACTS = 20
LARGEST_DIRS = 5

# Test seam: called in the task process between the plan and the first change.
BEFORE_ACT: list[Callable[[], None]] = []


def before_act() -> None:
    for hook in BEFORE_ACT:
        hook()


def count(n: int, word: str) -> str:
    plural = word[:-1] + "ies" if word.endswith("y") else word + "s"
    return f"{n:,} {word if n == 1 else plural}"


_gc_was_enabled: list[bool] = []


def pause_gc() -> None:
    """The scan makes a few hundred thousand tuples and no cycles: the cycle collector
    would only re-walk them, again and again (about a tenth of the scan's time)."""
    _gc_was_enabled.append(gc.isenabled())
    gc.disable()


def resume_gc() -> None:
    if _gc_was_enabled.pop():
        gc.enable()


class Budget:
    """The plan against max_delete and max_delete_bytes."""

    __slots__ = ("files", "forced", "max_delete", "max_delete_bytes", "size")

    def __init__(self, files: int, size: int, max_delete: int | None,
                 max_delete_bytes: int | None, forced: bool) -> None:
        self.files = files
        self.size = size
        self.max_delete = max_delete
        self.max_delete_bytes = max_delete_bytes
        self.forced = forced

    @property
    def breaches(self) -> list[str]:
        out = []
        if self.max_delete is not None and self.files > self.max_delete:
            out.append(f"max_delete {self.max_delete:,}")
        if self.max_delete_bytes is not None and self.size > self.max_delete_bytes:
            out.append(f"max_delete_bytes {format_size(self.max_delete_bytes)}")
        return out

    @property
    def blocks(self) -> bool:
        return bool(self.breaches) and not self.forced

    def describe(self) -> str:
        limits = (
            f"max_delete {'unlimited' if self.max_delete is None else f'{self.max_delete:,}'}, "
            "max_delete_bytes "
            + ("unlimited" if self.max_delete_bytes is None else format_size(self.max_delete_bytes))
        )
        if not self.breaches:
            return f"budget: {limits}: within budget"
        verdict = "FORCED past it (--force)" if self.forced else "EXCEEDED: nothing will be changed"
        return f"budget: {limits}: {verdict}"


    def to_json(self) -> dict[str, Any]:
        return {
            "max_delete": self.max_delete,
            "max_delete_bytes": self.max_delete_bytes,
            "exceeded": bool(self.breaches),
            "forced": self.forced and bool(self.breaches),
        }


def budget_refusal(budget: Budget, what: str) -> str:
    return (
        f"plan of {what} exceeds {' and '.join(budget.breaches)}: nothing deleted"
        " (--force overrides once)"
    )


def budget(params: CommonParams, files: int, size: int, force: bool) -> Budget:
    return Budget(files, size, params.max_delete, params.max_delete_bytes, force)


class DirSizes:
    """Planned files and bytes per directory, for "the largest directories"."""

    __slots__ = ("sizes",)

    def __init__(self) -> None:
        self.sizes: dict[str, list[int]] = {}

    def add(self, directory: str, files: int, size: int) -> None:
        entry = self.sizes.setdefault(directory, [0, 0])
        entry[0] += files
        entry[1] += size

    def largest(self) -> list[dict[str, Any]]:
        top = sorted(self.sizes.items(), key=lambda item: (-item[1][1], -item[1][0], item[0]))
        return [{"path": p, "files": f, "bytes": b} for p, (f, b) in top[:LARGEST_DIRS]]


def plan_lines(
    headline: str, budget_line: str, largest: list[dict[str, Any]], sample: list[str]
) -> list[str]:
    lines = [headline, budget_line]
    if largest:
        lines.append("largest directories:")
        lines.extend(
            f"  {format_size(d['bytes']):>10}  {count(d['files'], 'file'):>14}  {d['path']}"
            for d in largest
        )
    if sample:
        lines.append(f"sample ({len(sample)} paths):")
        lines.extend(f"  {path}" for path in sample)
    return lines


def problem_lines(problems: Any, skipped: int, skipped_samples: list[dict[str, str]]) -> list[str]:
    lines = []
    if problems.count:
        lines.append(f"errors: {problems.count:,} (first {len(problems.samples)}):")
        lines.extend(f"  {s['path']}: {s['error']}" for s in problems.samples)
    if skipped:
        lines.append(f"skipped, changed since the plan: {skipped:,}")
        lines.extend(f"  {s['path']}: {s['error']}" for s in skipped_samples)
    return lines


def audit(
    ctx: toilbox.TaskContext, kind: str, paths: list[str], key: str = "paths"
) -> dict[str, Any]:
    """The full list inline when short, else in a JSON file in the task's state dir."""
    if len(paths) <= INLINE_PATHS:
        return {key: paths}
    directory = Path(ctx.state_dir) / "audit"
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    target = directory / f"{ctx.run_id}-{kind}.json"
    partial = target.with_suffix(".tmp")
    # json.dumps, not json.dump: only the one-shot encoder is the C one (10x faster).
    text = json.dumps({"run_id": ctx.run_id, "task": ctx.task, "kind": kind, "paths": paths})
    with partial.open("w", encoding="utf-8") as out:
        out.write(text + "\n")
    partial.replace(target)
    _prune(directory)
    return {key: paths[:SAMPLE], f"{key}_file": str(target), f"{key}_total": len(paths)}


def _prune(directory: Path) -> None:
    artifacts = sorted(directory.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in artifacts[KEEP_ARTIFACTS:]:
        with contextlib.suppress(OSError):
            old.unlink()


def log_paths(ctx: toilbox.TaskContext, event: str, paths: Iterable[str]) -> None:
    """One debug line per path, when debug lines are wanted at all."""
    log = ctx.log.bind()
    enabled = getattr(log, "is_enabled_for", None)
    if enabled is not None and not enabled(logging.DEBUG):
        return
    for path in paths:
        log.debug(event, path=path)


class Progress:
    """A rich progress bar on the user's terminal, started only once a run takes a while.

    Without a terminal it does nothing.  No refresh thread: the task's own loop refreshes
    it, so forking workers stays safe.
    """

    START_AFTER_S = 0.3
    REFRESH_S = 0.1

    def __init__(self, console: TextIO | None) -> None:
        self.console = console
        self.started = time.monotonic()
        self.last = 0.0
        self.bar: Any = None
        self.tasks: dict[str, Any] = {}

    @property
    def enabled(self) -> bool:
        return self.console is not None

    def update(self, label: str, completed: int, total: int | None = None, **fields: Any) -> None:
        if self.console is None:
            return
        now = time.monotonic()
        if now - self.last < self.REFRESH_S or now - self.started < self.START_AFTER_S:
            return
        self.last = now
        if self.bar is None:
            self._start()
        if label not in self.tasks:
            self.tasks[label] = self.bar.add_task(label, total=total, extra="")
        extra = "  ".join(f"{k} {v:,}" for k, v in fields.items())
        self.bar.update(self.tasks[label], completed=completed, total=total, extra=extra)
        self.bar.refresh()

    def _start(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
        )
        from rich.progress import (
            Progress as RichProgress,
        )

        console = Console(file=self.console, force_terminal=True, stderr=True)
        self.bar = RichProgress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[extra]}"),
            TimeElapsedColumn(),
            console=console,
            auto_refresh=False,
            transient=True,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self.bar.start()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None
            with contextlib.suppress(Exception):
                if self.console is not None:
                    self.console.flush()


def status_of(blocked: bool, errors: int, unmet: bool) -> toilbox.Status:
    if blocked:
        return toilbox.Status.CRITICAL
    if errors or unmet:
        return toilbox.Status.WARNING
    return toilbox.Status.OK
