"""A store full of history for bench_history.py: TASKS tasks over a month, written
through the store's own ``record_many`` (no SQL here).

70 checks (mostly OK, with outages a few runs long: warning, critical, unknown; a
critical run may set off a fix and a verify), 20 cleanups (files and bytes freed in
their data and metrics), 10 other tasks; now and then a skipped or missed slot.
Critical runs carry output and details, as a failing check's run does.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from toilbox.models import RunRecord

TASKS = 100
DAYS = 30
HOST = "bench"


def task_type(task: int) -> str:
    return "check.noop" if task < 70 else "cleanup.files" if task < 90 else "command.noop"


def runs(count: int, end: datetime | None = None) -> Iterator[RunRecord]:
    """``count`` runs ending at ``end`` (now), spread evenly over DAYS days."""
    rng = random.Random(14)  # noqa: S311 -- a repeatable mix, no secret
    end = end or datetime.now(UTC)
    start = end - timedelta(days=DAYS)
    per_task = max(count // TASKS, 1)
    step = timedelta(days=DAYS) / per_task
    outage = [0] * TASKS
    for index in range(count):
        task, nth = index % TASKS, index // TASKS
        at = start + step * nth + timedelta(milliseconds=37 * task)
        kind = task_type(task)
        status, trigger = "ok", "schedule"
        roll = rng.random()
        if outage[task]:
            outage[task] -= 1
            status = rng.choice(("warning", "critical", "critical", "unknown"))
        elif roll < 0.01:
            status = "skipped"
        elif roll < 0.015:
            status = "missed"
        elif kind == "check.noop" and roll < 0.03:
            outage[task] = rng.randint(0, 4)
            status = "warning" if roll < 0.02 else "critical"
        duration = round(rng.lognormvariate(-2.5, 0.6), 4)
        iso = at.isoformat(timespec="microseconds")
        end_iso = (at + timedelta(seconds=duration)).isoformat(timespec="microseconds")
        final = status not in ("skipped", "missed")
        data: dict[str, object] = {}
        metrics: dict[str, object] = {}
        if kind == "cleanup.files" and final:
            files = rng.randint(0, 40)
            data = {"deleted": {"files": files, "bytes": files * 4096}}
            metrics = {"files_deleted": {"value": files}, "bytes_freed": {"value": files * 4096}}
        elif status == "missed":
            data = {"count": 1}
        run_id = f"r{index:08d}"
        failing = status == "critical"
        yield RunRecord(
            run_id=run_id, task=f"t{task}", task_type=kind, status=status, trigger=trigger,
            started_at=iso, hostname="vm", pid=1000 + task, finished_at=end_iso if final else iso,
            scheduled_for=iso, attempts=1 if final else 0,
            duration_s=duration if final else None, summary=f"{status} run {index}",
            metrics=metrics, data=data,
            error={"type": "CheckFailed", "message": "disk is full"} if failing else None,
            details="details\n" * 10 if failing else "",
            output="some output\n" * 20 if failing else "", host=HOST,
        )
        if failing and rng.random() < 0.2:  # a fix, then a verify
            for n, (what, fix_task) in enumerate((("remediation", 95), ("verify", task))):
                later = at + timedelta(seconds=5 * (n + 1))
                yield RunRecord(
                    run_id=f"{run_id}-{what}", task=f"t{fix_task}", task_type=task_type(fix_task),
                    status="ok" if rng.random() < 0.8 else "critical", trigger=what,
                    started_at=later.isoformat(timespec="microseconds"), hostname="vm",
                    pid=1, finished_at=(later + timedelta(seconds=1)).isoformat(
                        timespec="microseconds"),
                    parent_run_id=run_id, attempts=1, duration_s=1.0,
                    summary=f"{what} of {run_id}", host=HOST,
                )


def fill(store: object, count: int, batch: int = 20_000) -> int:
    """Write ``count`` scheduled runs (and their fixes) into ``store``; how many in all."""
    chunk: list[RunRecord] = []
    total = 0
    for record in runs(count):
        chunk.append(record)
        if len(chunk) == batch:
            store.record_many(chunk)  # type: ignore[attr-defined]
            total += len(chunk)
            chunk = []
    if chunk:
        store.record_many(chunk)  # type: ignore[attr-defined]
        total += len(chunk)
    return total
