"""`toilbox run` of a check.disk task, whole-process wall time, against the import floor.

The floor is `python -c "import pluggy, structlog, tenacity, click, pydantic, yaml"`: what
toilbox cannot avoid importing.  Goal (issue 14): median at most 1.5x the floor.
Runs alternate between the commands so that machine noise hits them alike.

    .venv/bin/python tests/benchmarks/bench_run_startup.py [--runs 20] \
        [--write-docs docs/performance.md]
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

GOAL = 1.5
BEGIN, END = "<!-- bench_run_startup:begin -->", "<!-- bench_run_startup:end -->"
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
FLOOR = "import pluggy, structlog, tenacity, click, pydantic, yaml"
# For reference: `import pydantic` is lazy; any pydantic model (and task parameters are
# pydantic models, by the plugin contract) pulls in the rest of it.
ONE_MODEL = FLOOR + "\nfrom pydantic import BaseModel\nclass M(BaseModel):\n    x: int = 1\n"


def write_config(root: Path) -> Path:
    """A check.disk task (the goal's) and a no-op task from a plugin directory."""
    (root / "plugins.d").mkdir()
    (root / "plugins.d" / "noop.py").write_text(NOOP_PLUGIN)
    config = root / "toilbox.yaml"
    config.write_text(textwrap.dedent(f"""
        state_dir: {root / "state"}
        plugin_dirs: [{root / "plugins.d"}]
        tasks:
          disk: {{uses: check.disk, with: {{path: {root}, warning: 99%, critical: 100%}}}}
          noop: {{uses: check.noop}}
    """))
    return config


def timed(argv: list[str]) -> tuple[float, float]:
    """Wall and CPU (user + system, the whole process tree) of one run: the CPU time
    depends much less than the wall time on what else the machine runs."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=int(os.environ.get("BENCH_RUNS", "20")))
    parser.add_argument("--write-docs", type=Path, help="write the table into this file")
    args = parser.parse_args()
    # Measure toilbox as installed, with its bytecode cached: without this, a shell that
    # sets PYTHONDONTWRITEBYTECODE makes every run compile toilbox's modules again.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    python = sys.executable
    toilbox_bin = str(Path(python).parent / "toilbox")
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        config = write_config(Path(tmp))
        commands = {
            "import floor (python -c 'import ...')": [python, "-c", FLOOR],
            "reference: the floor + one pydantic model": [python, "-c", ONE_MODEL],
            "toilbox run disk (check.disk)": [toilbox_bin, "-c", str(config), "run", "disk"],
            "toilbox run noop (a plugin_dirs file)": [toilbox_bin, "-c", str(config), "run",
                                                      "noop"],
        }
        for argv in commands.values():
            timed(argv)  # warm the page cache, write bytecode, create the store
        walls: dict[str, list[float]] = {name: [] for name in commands}
        cpus: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.runs):
            for name, argv in commands.items():
                wall, cpu = timed(argv)
                walls[name].append(wall)
                cpus[name].append(cpu)
    lines = [
        f"Medians of {args.runs} runs each; python {sys.version.split()[0]}, "
        f"{os.cpu_count()} CPUs; load average {load_before:.1f} at the start, "
        f"{os.getloadavg()[0]:.1f} at the end.",
        "",
        "| command | wall | / floor | CPU | / floor |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    floor = statistics.median(next(iter(walls.values())))
    floor_cpu = statistics.median(next(iter(cpus.values())))
    for name, values in walls.items():
        median, cpu = statistics.median(values), statistics.median(cpus[name])
        lines.append(f"| {name} | {median * 1000:.0f} ms | {median / floor:.2f}x | "
                     f"{cpu * 1000:.0f} ms | {cpu / floor_cpu:.2f}x |")
    goal_row = "toilbox run disk (check.disk)"
    ratio = statistics.median(walls[goal_row]) / floor
    verdict = "met" if ratio <= GOAL else f"missed by {ratio / GOAL - 1:.0%}"
    lines += ["", f"`toilbox run` of the check.disk task: {ratio:.2f}x the floor in wall time "
              f"(goal at most {GOAL}x: {verdict}), "
              f"{statistics.median(cpus[goal_row]) / floor_cpu:.2f}x in CPU time."]
    section = "\n".join(lines)
    print(section)
    if args.write_docs:
        text = args.write_docs.read_text()
        block = f"{BEGIN}\n{section}\n{END}"
        if BEGIN not in text or END not in text:
            raise SystemExit(f"{args.write_docs} has no {BEGIN} ... {END} to write between")
        args.write_docs.write_text(re.sub(re.escape(BEGIN) + ".*?" + re.escape(END),
                                          lambda _: block, text, flags=re.S))
        print(f"wrote the start-up rows to {args.write_docs}")

if __name__ == "__main__":
    main()
