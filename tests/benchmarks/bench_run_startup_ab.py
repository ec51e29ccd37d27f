"""`toilbox run` of a check.disk task: this tree against another one (a baseline), side by side.

    git archive main | tar -x -C /tmp/baseline
    python tests/benchmarks/bench_run_startup_ab.py /tmp/baseline

Both run with this venv's interpreter and packages; the baseline's toilbox and standard
plugins come first on PYTHONPATH.  Runs alternate so that machine noise hits both alike.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import wall
from bench_run_startup import write_config

RUNS = int(os.environ.get("BENCH_RUNS", "20"))
HERE = Path(__file__).parents[2]


def main(baseline: Path) -> None:
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)  # each tree's bytecode is written once
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        config = write_config(Path(tmp))
        command = [sys.executable, "-m", "toilbox", "-c", str(config), "run", "disk"]
        trees = {"baseline": baseline.resolve(), "this tree": HERE}
        envs = {
            name: {**os.environ, "PYTHONPATH": f"{tree}{os.pathsep}{tree / 'plugins'}"}
            for name, tree in trees.items()
        }
        samples: dict[str, list[float]] = {name: [] for name in trees}
        for name in trees:
            wall(command, env=envs[name], cwd=tmp)  # warm the page cache, create the store
        for _ in range(RUNS):
            for name in trees:
                # cwd: `python -m` puts it first on sys.path, before PYTHONPATH's tree
                samples[name].append(wall(command, env=envs[name], cwd=tmp))
    print(f"runs: {RUNS} each, alternating; python {sys.version.split()[0]}; load average "
          f"{load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end")
    print(f"{'tree':<12} {'median':>9} {'min':>9} {'max':>9}")
    for name, values in samples.items():
        print(f"{name:<12} {statistics.median(values) * 1000:>7.1f}ms "
              f"{min(values) * 1000:>7.1f}ms {max(values) * 1000:>7.1f}ms")
    ratio = statistics.median(samples["this tree"]) / statistics.median(samples["baseline"])
    print(f"ratio this/baseline: {ratio:.2f}x")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
