"""cleanup.files against find and tmpreaper: whole-process wall time, side by side.

The tree: 200,000 small files in 2 levels of directories (100 x 100 x 20), half of them
10 days old; it is made afresh for every delete run, and once per round for the scans.
Scan: `toilbox run --dry-run` vs `find DIR -type f -mtime +7 -print > /dev/null` (and
`tmpreaper --test`).  Delete: the same task for real vs `find ... -delete` (and tmpreaper).
Goal (cleanups issue): toilbox within 1.25x find, start-up included.

    .venv/bin/python tests/benchmarks/bench_cleanup.py [--base /dev/shm] [--base /tmp]
        [--runs 3] [--files 200000]

A tool that is not installed is skipped, saying so (Debian: apt-get install tmpreaper).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

DAY = 86400


def make_tree(root: Path, files: int) -> int:
    """100 x 100 directories (fewer for a smaller tree), 20 files each, every other one old."""
    per_dir = 20
    dirs = max(1, files // per_dir)
    top = max(1, int(dirs**0.5))
    old = time.time() - 10 * DAY
    root.mkdir()
    n = 0
    for a in range(top):
        for b in range(dirs // top):
            directory = root / f"d{a:03d}" / f"s{b:03d}"
            directory.mkdir(parents=True)
            fd_dir = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
            try:
                for c in range(per_dir):
                    name = f"f{c:02d}.dat"
                    fd = os.open(name, os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd_dir)
                    os.write(fd, b"x" * 64)
                    os.close(fd)
                    if n % 2 == 0:
                        os.utime(name, (old, old), dir_fd=fd_dir)
                    n += 1
            finally:
                os.close(fd_dir)
    return n


def count_files(root: Path) -> int:
    return sum(len(names) for _, _, names in os.walk(root))


def timed(argv: list[str], **kwargs: object) -> float:
    started = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL,  # type: ignore[call-overload]
                   stderr=subprocess.DEVNULL, **kwargs)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", action="append", help="where to build trees (repeatable)")
    parser.add_argument("--runs", type=int, default=int(os.environ.get("BENCH_RUNS", "3")))
    parser.add_argument("--files", type=int, default=200_000)
    args = parser.parse_args()
    bases = args.base or ["/dev/shm", "/tmp"]
    toilbox = str(Path(sys.executable).parent / "toilbox")
    tools_missing = [t for t in ("find", "tmpreaper") if shutil.which(t) is None]
    for tool in tools_missing:
        print(f"skipping {tool}: not installed (Debian: apt-get install {tool})")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {args.files:,} files, "
          f"half old, {args.runs} runs per tool (median shown)")
    for base in bases:
        bench_base(Path(base), args.files, args.runs, toilbox, tools_missing)


def bench_base(base: Path, files: int, runs: int, toilbox: str, missing: list[str]) -> None:
    work = Path(tempfile.mkdtemp(prefix="toilbox-bench-", dir=base))
    try:
        tree = work / "tree"
        config = work / "toilbox.yaml"
        config.write_text(
            f"state_dir: {work / 'state'}\n"
            "tasks:\n"
            f"  bench: {{uses: cleanup.files, with: {{roots: [{tree}], older_than: 7d,"
            " max_delete: null}}\n"
            f"  bench1: {{uses: cleanup.files, with: {{roots: [{tree}], older_than: 7d,"
            " max_delete: null, workers: 1}}\n"
            f"  empty: {{uses: cleanup.files, with: {{roots: [{work / 'empty'}],"
            " older_than: 7d}}\n"
        )
        (work / "empty").mkdir()
        tmpreaper = shutil.which("tmpreaper")
        scans: dict[str, Callable[[], list[str]]] = {
            "find -print": lambda: ["sh", "-c", f"find {tree} -type f -mtime +7 -print"
                                                " > /dev/null"],
            "toilbox run --dry-run": lambda: [toilbox, "-c", str(config), "run", "bench",
                                              "--dry-run"],
            "toilbox, 1 worker": lambda: [toilbox, "-c", str(config), "run", "bench1",
                                          "--dry-run"],
        }
        deletes: dict[str, Callable[[], list[str]]] = {
            "find -delete": lambda: ["find", str(tree), "-type", "f", "-mtime", "+7",
                                     "-delete"],
            "toilbox run": lambda: [toilbox, "-c", str(config), "run", "bench"],
            "toilbox, 1 worker": lambda: [toilbox, "-c", str(config), "run", "bench1"],
        }
        if tmpreaper and "tmpreaper" not in missing:
            scans["tmpreaper --test"] = lambda: [tmpreaper, "--test", "--mtime", "7d",
                                                 str(tree)]
            deletes["tmpreaper"] = lambda: [tmpreaper, "--mtime", "7d", str(tree)]
        results: dict[str, list[float]] = {f"scan: {n}": [] for n in scans}
        results.update({f"delete: {n}": [] for n in deletes})
        floor: list[float] = []
        timed([toilbox, "-c", str(config), "run", "empty"])  # warm caches, create the store
        for _ in range(runs):
            floor.append(timed([toilbox, "-c", str(config), "run", "empty"]))
            files = make_tree(tree, files)
            for name, argv in scans.items():
                results[f"scan: {name}"].append(timed(argv()))
            shutil.rmtree(tree)
            for name, argv in deletes.items():
                make_tree(tree, files)
                subprocess.run(["sync"], check=False)
                results[f"delete: {name}"].append(timed(argv()))
                left = count_files(tree)
                if left != files - files // 2:
                    print(f"  warning: {name} left {left:,} files, expected "
                          f"{files - files // 2:,}")
                shutil.rmtree(tree)
        report(base, files, results, floor)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def report(base: Path, files: int, results: dict[str, list[float]], floor: list[float]) -> None:
    print(f"\n{base} ({_fs_type(base)}):")
    print(f"  {'tool':<30} {'median':>8} {'min':>8} {'files/s':>11}  vs find")
    find_time = {"scan": statistics.median(results["scan: find -print"]),
                 "delete": statistics.median(results["delete: find -delete"])}
    for name, samples in results.items():
        kind = name.split(":")[0]
        median = statistics.median(samples)
        handled = files if kind == "scan" else files // 2
        print(f"  {name:<30} {median:>7.2f}s {min(samples):>7.2f}s "
              f"{handled / median:>11,.0f}  {median / find_time[kind]:.2f}x")
    print(f"  toilbox run of an empty cleanup (start-up and run machinery): "
          f"{statistics.median(floor):.2f}s")


def _fs_type(path: Path) -> str:
    done = subprocess.run(["stat", "-f", "-c", "%T", str(path)], capture_output=True, text=True,
                          check=False)
    return done.stdout.strip() or "?"


if __name__ == "__main__":
    main()
