"""Per-attempt isolation overhead: start a child, run a no-op task, collect its result.

toilbox's `run_attempt` (fork, own process group, pidfd supervision, JSON result over a
pipe) side by side with bare multiprocessing doing a no-op with the fork and forkserver
start methods.  Goal (issue 2): toilbox p50 under 15 ms.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import percentile
from pydantic import BaseModel

import toilbox
from toilbox import log, plugins
from toilbox.isolation import run_attempt
from toilbox.models import AttemptSpec

ATTEMPTS = int(os.environ.get("BENCH_ATTEMPTS", "1000"))
BARE = int(os.environ.get("BENCH_BARE", "300"))


def _noop(queue: multiprocessing.SimpleQueue) -> None:  # type: ignore[type-arg]
    queue.put({"status": "ok"})


def bare(method: str, count: int) -> list[float]:
    context = multiprocessing.get_context(method)
    queue = context.SimpleQueue()
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        process = context.Process(target=_noop, args=(queue,))
        process.start()
        queue.get()
        process.join()
        samples.append(time.perf_counter() - started)
    return samples


def toilbox_attempts(count: int) -> list[float]:
    log.configure("json", "warning")
    with tempfile.TemporaryDirectory() as tmp:
        host = plugins.load()
        assert "check.command" in host.task_types
        spec = AttemptSpec(task="noop", task_type="check.noop-bench", params=_Params(),
                           plugin_dirs=(), run_id="bench", attempt=1, dry_run=False,
                           force=False, state_dir=tmp)
        _register_noop(host)
        samples = []
        for _ in range(count):
            started = time.perf_counter()
            outcome = run_attempt(spec, timeout=10)
            samples.append(time.perf_counter() - started)
            assert outcome.kind == "ok", outcome
    return samples


class _Params(BaseModel):
    pass


def _noop_task(ctx: toilbox.TaskContext, params: _Params) -> toilbox.Result:
    return toilbox.Result(toilbox.Status.OK, "nothing done")


def _register_noop(host: plugins.PluginHost) -> None:
    host.task_types["check.noop-bench"] = plugins.TaskType(
        "check.noop-bench", _noop_task, _Params, "bench", "no-op")


def show(name: str, samples: list[float]) -> None:
    p50, p99 = percentile(samples, 50) * 1000, percentile(samples, 99) * 1000
    print(f"{name:<40} {len(samples):>6} {p50:>8.2f}ms {p99:>8.2f}ms")


def main() -> None:
    print(f"{'method':<40} {'n':>6} {'p50':>10} {'p99':>10}")
    show("toilbox run_attempt (fork + pgroup)", toilbox_attempts(ATTEMPTS))
    show("bare multiprocessing fork", bare("fork", BARE))
    show("bare multiprocessing forkserver", bare("forkserver", BARE))
    show("bare multiprocessing spawn", bare("spawn", min(BARE, 50)))


if __name__ == "__main__":
    main()
