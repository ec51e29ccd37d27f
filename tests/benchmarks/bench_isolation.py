"""Per-attempt isolation overhead: start a child, run a no-op task, collect its result.

toilbox's `run_attempt` (a reaper and the plugin's process under it, pidfd supervision,
JSON result over a pipe), forked directly (`toilbox run`) and through the zygote (the
daemon), side by side with bare multiprocessing doing a no-op with the fork, forkserver
and spawn start methods.  Goal (issue 2): toilbox p50 under 15 ms.

With ``--baseline DIR`` (a checkout of another commit, e.g. from ``git archive``), the
toilbox rows are measured for that tree and for this one, in alternating rounds in fresh
processes, so that both see the same machine load:

    git archive main toilbox plugins | (mkdir -p /tmp/base && tar -x -C /tmp/base)
    .venv/bin/python tests/benchmarks/bench_isolation.py --baseline /tmp/base
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
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
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
THIS_TREE = Path(__file__).resolve().parents[2]


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


def toilbox_attempts(count: int, via_zygote: bool) -> list[float]:
    """``count`` no-op attempts; through a zygote forked first, as the daemon does."""
    log.configure("json", "warning")
    with tempfile.TemporaryDirectory() as tmp:
        host = plugins.load()
        assert "check.command" in host.task_types
        spec = AttemptSpec(task="noop", task_type="check.noop-bench", params=_Params(),
                           plugin_dirs=(), run_id="bench", attempt=1, dry_run=False,
                           force=False, state_dir=tmp)
        _register_noop(host)
        zygote = None
        if via_zygote:
            from toilbox.zygote import Zygote

            zygote = Zygote.start()
        samples = []
        try:
            for _ in range(count):
                started = time.perf_counter()
                outcome = run_attempt(spec, timeout=10, zygote=zygote)
                samples.append(time.perf_counter() - started)
                assert outcome.kind == "ok", outcome
        finally:
            if zygote is not None:
                zygote.stop()
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
    print(f"{name:<48} {len(samples):>6} {p50:>8.2f}ms {p99:>8.2f}ms")


def in_tree(tree: Path, count: int, via_zygote: bool) -> list[float]:
    """Samples measured by a fresh process that imports toilbox from ``tree``."""
    env = {**os.environ, "PYTHONPATH": f"{tree}{os.pathsep}{tree / 'plugins'}"}
    argv = [sys.executable, __file__, "--worker", str(count)]
    if via_zygote:
        argv.append("--zygote")
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=True, cwd="/")
    return list(json.loads(done.stdout.splitlines()[-1]))


def side_by_side(baseline: Path) -> None:
    per_round = max(1, ATTEMPTS // ROUNDS)
    for via_zygote, label in ((False, "fork"), (True, "zygote")):
        samples: dict[str, list[float]] = {"baseline": [], "this tree": []}
        for _ in range(ROUNDS):
            samples["baseline"] += in_tree(baseline, per_round, via_zygote)
            samples["this tree"] += in_tree(THIS_TREE, per_round, via_zygote)
        for name, values in samples.items():
            show(f"toilbox run_attempt via {label} ({name})", values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, help="another checkout to compare with")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--zygote", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(toilbox_attempts(args.worker, args.zygote)))
        return
    print(f"{'method':<48} {'n':>6} {'p50':>10} {'p99':>10}")
    if args.baseline:
        side_by_side(args.baseline.resolve())
    else:
        show("toilbox run_attempt via fork", toilbox_attempts(ATTEMPTS, via_zygote=False))
        show("toilbox run_attempt via zygote", toilbox_attempts(ATTEMPTS, via_zygote=True))
    show("bare multiprocessing fork", bare("fork", BARE))
    show("bare multiprocessing forkserver", bare("forkserver", BARE))
    show("bare multiprocessing spawn", bare("spawn", min(BARE, 50)))


if __name__ == "__main__":
    main()
