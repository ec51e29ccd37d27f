"""`toilbox run` of a no-op task: this tree against another one (a baseline), side by side.

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
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import wall
from bench_run_startup import NOOP_PLUGIN

RUNS = int(os.environ.get("BENCH_RUNS", "20"))
HERE = Path(__file__).parents[2]


def main(baseline: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "plugins.d").mkdir()
        (root / "plugins.d" / "noop.py").write_text(NOOP_PLUGIN)
        config = root / "toilbox.yaml"
        config.write_text(textwrap.dedent(f"""
            state_dir: {root / "state"}
            plugin_dirs: [{root / "plugins.d"}]
            tasks:
              noop: {{uses: check.noop}}
        """))
        command = [sys.executable, "-m", "toilbox", "-c", str(config), "run", "noop"]
        trees = {"baseline": baseline.resolve(), "this tree": HERE}
        envs = {
            name: {**os.environ, "PYTHONPATH": f"{tree}{os.pathsep}{tree / 'plugins'}"}
            for name, tree in trees.items()
        }
        samples: dict[str, list[float]] = {name: [] for name in trees}
        for name in trees:
            wall(command, env=envs[name])  # warm the page cache and create the store
        for _ in range(RUNS):
            for name in trees:
                samples[name].append(wall(command, env=envs[name]))
    print(f"runs: {RUNS} each, alternating; python {sys.version.split()[0]}")
    print(f"{'tree':<12} {'median':>9} {'min':>9} {'max':>9}")
    for name, values in samples.items():
        print(f"{name:<12} {statistics.median(values) * 1000:>7.1f}ms "
              f"{min(values) * 1000:>7.1f}ms {max(values) * 1000:>7.1f}ms")
    ratio = statistics.median(samples["this tree"]) / statistics.median(samples["baseline"])
    print(f"ratio this/baseline: {ratio:.2f}x")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
