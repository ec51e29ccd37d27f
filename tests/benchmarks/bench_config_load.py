"""Config loading under hostile input (issue 11, item 5): CPU and peak memory of
`toilbox validate`, side by side with good configs as the baseline; and what the bounds
check costs a big good config, against loading it without the check.

    .venv/bin/python tests/benchmarks/bench_config_load.py

CPU time and peak RSS are each child's own (wait4), so a loaded machine changes them
little; each figure is the median of RUNS runs.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

RUNS = 3
ROOT = Path(__file__).resolve().parents[2]


def toilbox_validate(config: Path) -> tuple[float, float, int]:
    process = subprocess.Popen(
        [sys.executable, "-m", "toilbox", "-c", str(config), "validate"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
    )
    started = time.monotonic()
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() - started > 60:
            process.kill()
            os.wait4(process.pid, 0)
            return float("inf"), float("inf"), -9
        time.sleep(0.01)
    return usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(
        status)


def cases(work: Path) -> dict[str, Path]:
    def write(name: str, text: str) -> Path:
        path = work / f"{name}.yaml"
        path.write_text(text)
        return path

    laughs = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for previous, name in zip("abcdefgh", "bcdefghi", strict=True):
        laughs.append(f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]")
    big = "tasks:\n" + "".join(
        f"  t{i}: {{uses: check.disk, schedule: every 1h, with: {{path: /srv/{i}}}}}\n"
        for i in range(10_000)
    )
    return {
        "baseline: configs/toilbox.yaml": ROOT / "configs" / "toilbox.yaml",
        "baseline: 10,000 tasks": write("big", big),
        "recursive alias": write("recursive", "x: &a [*a]\n"),
        "alias bomb (9^9 values)": write("bomb", "\n".join(laughs) + "\n"),
        "nesting 100,000 deep": write("deep", "x: " + "[" * 100_000 + "]" * 100_000 + "\n"),
        "${file:/dev/zero}": write("zero", "notify: ['${file:/dev/zero}']\n"),
        "integer of 5000 digits": write("digits", "max_concurrent: " + "9" * 5000 + "\n"),
        "config is /dev/zero": Path("/dev/zero"),
    }


def bounds_overhead(path: Path) -> tuple[float, float]:
    """yamlpos.load (bounds checked, then composed) against composing alone."""
    from toilbox import yamlpos

    text = path.read_text()

    def unchecked() -> None:
        loader = yamlpos._BoundedLoader(text)
        try:
            loader.construct_document(loader.get_single_node())
        finally:
            loader.dispose()

    def timed(fn: object) -> float:
        samples = []
        for _ in range(5):
            started = time.process_time()
            fn()  # type: ignore[operator]
            samples.append(time.process_time() - started)
        return statistics.median(samples)

    return timed(lambda: yamlpos.load(path)), timed(unchecked)


def main() -> None:
    print(f"yaml {yaml.__version__}, libyaml {yaml.__with_libyaml__}; median of {RUNS} runs")
    print(f"{'toilbox validate on':<34} {'exit':>4} {'CPU s':>7} {'peak MB':>8}")
    with tempfile.TemporaryDirectory() as directory:
        work = Path(directory)
        for name, path in cases(work).items():
            runs = [toilbox_validate(path) for _ in range(RUNS)]
            cpu = statistics.median(r[0] for r in runs)
            peak = statistics.median(r[1] for r in runs)
            print(f"{name:<34} {runs[0][2]:>4} {cpu:>7.2f} {peak:>8.0f}")
        checked, unchecked = bounds_overhead(work / "big.yaml")
        print(f"\n10,000-task config, in process: bounds checked {checked:.3f} s CPU,"
              f" composed alone {unchecked:.3f} s ({checked / unchecked - 1:+.0%})")


if __name__ == "__main__":
    main()
