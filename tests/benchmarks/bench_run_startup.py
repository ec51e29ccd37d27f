"""`toilbox run` of a no-op task, whole-process wall time, against the import floor.

The floor is `python -c "import pluggy, structlog, tenacity, click, pydantic, yaml"`: what
toilbox cannot avoid importing.  Goal (issue 2): median at most 1.5x the floor.
Runs alternate between the two commands so that machine noise hits both alike.
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

RUNS = int(os.environ.get("BENCH_RUNS", "20"))
NOOP_PLUGIN = '''
from pydantic import BaseModel
import toilbox

class Params(BaseModel):
    pass

def noop(ctx, params):
    """Do nothing."""
    return toilbox.Result(toilbox.Status.OK, "nothing done")

@toilbox.hookimpl
def register_task_types(register):
    register("check.noop", noop, params=Params)
'''


def main() -> None:
    python = sys.executable
    toilbox_bin = str(Path(python).parent / "toilbox")
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
        floor_cmd = [python, "-c", "import pluggy, structlog, tenacity, click, pydantic, yaml"]
        # For reference: `import pydantic` is lazy; any pydantic model (and task parameters
        # are pydantic models, by the plugin contract) pulls in the rest of it.
        model_cmd = [python, "-c", "import pluggy, structlog, tenacity, click, yaml\n"
                     "from pydantic import BaseModel\nclass M(BaseModel):\n    x: int = 1\n"]
        run_cmd = [toilbox_bin, "-c", str(config), "run", "noop"]
        wall(run_cmd)  # warm the page cache and create the store
        wall(floor_cmd)
        floor, models, run = [], [], []
        for _ in range(RUNS):
            floor.append(wall(floor_cmd))
            models.append(wall(model_cmd))
            run.append(wall(run_cmd))
    floor_median, run_median = statistics.median(floor), statistics.median(run)
    print(f"runs: {RUNS} each, alternating; python {sys.version.split()[0]}")
    print(f"{'command':<44} {'median':>9} {'min':>9} {'max':>9}")
    for name, samples in (("import floor (python -c 'import ...')", floor),
                          ("reference: the same + one pydantic model", models),
                          ("toilbox run noop", run)):
        print(f"{name:<44} {statistics.median(samples) * 1000:>7.1f}ms "
              f"{min(samples) * 1000:>7.1f}ms {max(samples) * 1000:>7.1f}ms")
    ratio = run_median / floor_median
    print(f"ratio toilbox/floor: {ratio:.2f}x (goal <= 1.5x)")


if __name__ == "__main__":
    main()
