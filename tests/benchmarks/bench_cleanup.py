"""cleanup.files beside find, tmpreaper and systemd-tmpfiles: whole-process wall time.

The tree: small files (64 bytes) in 2 levels of directories, 20 files a directory
(200,000 files: 100 x 100 x 20), every other file 10 days old.  Every tool gets the same
tree and the same rule (regular files whose mtime is more than 7 days old), one after
the other in each round, so they share the machine's load; the tree is made afresh for
each delete, and once a round for the scans.

    scan     toilbox run --dry-run   | find DIR -type f -mtime +7 -print > /dev/null
                                     | tmpreaper --test --mtime 7d DIR
    delete   toilbox run             | find DIR -type f -mtime +7 -delete
                                     | tmpreaper --mtime 7d DIR
                                     | systemd-tmpfiles --clean (e DIR - - - m:7d)

systemd-tmpfiles has no dry run, so it is only in the delete rows.  Start-up is measured
beside them: the import floor (python -c "import pluggy, structlog, tenacity, click,
pydantic, yaml") and `toilbox run` of a cleanup of an empty directory (start-up and the
run machinery, no files), so the table says how much of toilbox's time is start-up.

Goals (issue 14): on tmpfs, delete at most 1.25x find -delete, scan at most 1.5x find
-print; on disk, at most 1.0x.  Figures are medians of --runs rounds; "cpu" is the user
plus system time of the whole process tree, which depends much less on the machine's load.

    .venv/bin/python tests/benchmarks/bench_cleanup.py [--base /dev/shm] [--base /tmp]
        [--runs 5] [--files 200000]
    .venv/bin/python tests/benchmarks/bench_cleanup.py --scaling 20000,200000,1000000 \\
        --write-docs docs/performance.md        # the cleanup rows of the scaling table

A tool that is not installed is skipped, saying so (Debian: apt-get install tmpreaper).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from _common import write_docs  # this script's directory is on sys.path

DAY = 86400
PER_DIR = 20
# Issue 14's "on disk at most 1.0x" is read as the delete (its figure, 0.86x, was one); a
# scan on disk reads a tree the page cache holds, so it keeps the scan goal.
GOALS = {("tmpfs", "scan"): 1.5, ("tmpfs", "delete"): 1.25, ("disk", "scan"): 1.5,
         ("disk", "delete"): 1.0}


def tree_size(files: int) -> int:
    """How many files ``make_tree`` makes when asked for about ``files``."""
    dirs = max(1, files // PER_DIR)
    top = max(1, int(dirs**0.5))
    return top * (dirs // top) * PER_DIR


def make_tree(root: Path, files: int) -> int:
    """sqrt(dirs) x sqrt(dirs) directories, 20 files each, every other file old."""
    dirs = max(1, files // PER_DIR)
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
                for c in range(PER_DIR):
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


@dataclass
class Sample:
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    def add(self, wall: float, cpu: float) -> None:
        self.wall.append(wall)
        self.cpu.append(cpu)

    @property
    def median(self) -> float:
        return statistics.median(self.wall)


def timed(argv: list[str]) -> tuple[float, float]:
    """Wall and CPU (user + system, the whole process tree) of one run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


class Tools:
    """The command lines of every tool, for one tree."""

    def __init__(self, work: Path, toilbox: str, baseline: Path | None = None) -> None:
        self.work = work
        self.baseline = baseline
        self.tree = work / "tree"
        self.toilbox = toilbox
        self.config = work / "toilbox.yaml"
        (work / "empty").mkdir()
        self.config.write_text(
            f"state_dir: {work / 'state'}\n"
            "tasks:\n"
            f"  bench: {{uses: cleanup.files, with: {{roots: [{self.tree}], older_than: 7d,"
            " max_delete: null}}\n"
            f"  bench1: {{uses: cleanup.files, with: {{roots: [{self.tree}], older_than: 7d,"
            " max_delete: null, workers: 1}}\n"
            f"  empty: {{uses: cleanup.files, with: {{roots: [{work / 'empty'}],"
            " older_than: 7d}}\n"
        )
        self.tmpfiles_conf = work / "bench-tmpfiles.conf"
        # e: clean an existing directory; m: by the files' mtime only, as the others do.
        self.tmpfiles_conf.write_text(f"e {self.tree} - - - m:7d\n")
        self.missing = [t for t in ("find", "tmpreaper", "systemd-tmpfiles")
                        if shutil.which(t) is None]

    def run(self, task: str, *extra: str) -> list[str]:
        return [self.toilbox, "-c", str(self.config), "run", task, *extra]

    def run_baseline(self, task: str, *extra: str) -> list[str]:
        """The same run with another copy of toilbox_cleanups first on the path."""
        return ["env", f"PYTHONPATH={self.baseline}", *self.run(task, *extra)]

    def startup(self) -> dict[str, list[str]]:
        floor = "import pluggy, structlog, tenacity, click, pydantic, yaml"
        return {"import floor": [sys.executable, "-c", floor],
                "toilbox run, empty cleanup": self.run("empty")}

    def scans(self) -> dict[str, list[str]]:
        tree = str(self.tree)
        out = {"find -print": ["sh", "-c", f"find {tree} -type f -mtime +7 -print >/dev/null"],
               "toilbox run --dry-run": self.run("bench", "--dry-run"),
               "toilbox --dry-run, 1 worker": self.run("bench1", "--dry-run")}
        if self.baseline is not None:
            out["toilbox --dry-run, baseline"] = self.run_baseline("bench", "--dry-run")
        if "tmpreaper" not in self.missing:
            out["tmpreaper --test"] = [str(shutil.which("tmpreaper")), "--test", "--mtime",
                                       "7d", tree]
        return out

    def deletes(self) -> dict[str, list[str]]:
        tree = str(self.tree)
        out = {"find -delete": ["find", tree, "-type", "f", "-mtime", "+7", "-delete"],
               "toilbox run": self.run("bench"),
               "toilbox run, 1 worker": self.run("bench1")}
        if self.baseline is not None:
            out["toilbox run, baseline"] = self.run_baseline("bench")
        if "tmpreaper" not in self.missing:
            out["tmpreaper"] = [str(shutil.which("tmpreaper")), "--mtime", "7d", tree]
        if "systemd-tmpfiles" not in self.missing:
            out["systemd-tmpfiles --clean"] = ["systemd-tmpfiles", "--clean",
                                               str(self.tmpfiles_conf)]
        return out


def fs_kind(path: Path) -> str:
    done = subprocess.run(["stat", "-f", "-c", "%T", str(path)], capture_output=True,
                          text=True, check=False)
    name = done.stdout.strip() or "?"
    return "tmpfs" if name in ("tmpfs", "ramfs") else "disk"


def bench_base(
    base: Path, files: int, runs: int, toilbox: str, baseline: Path | None
) -> dict[str, Sample]:
    """Every tool on one filesystem, ``runs`` rounds; returns the samples by row name."""
    work = Path(tempfile.mkdtemp(prefix="toilbox-bench-", dir=base))
    try:
        tools = Tools(work, toilbox, baseline)
        for tool in tools.missing:
            print(f"skipping {tool}: not installed (Debian: apt-get install {tool})")
        timed(tools.run("empty"))  # warm caches, create the store
        results: dict[str, Sample] = {}
        expected_left = files - (files + 1) // 2
        for _ in range(runs):
            for name, argv in tools.startup().items():
                results.setdefault(f"start-up: {name}", Sample()).add(*timed(argv))
            make_tree(tools.tree, files)
            for name, argv in tools.scans().items():
                results.setdefault(f"scan: {name}", Sample()).add(*timed(argv))
            shutil.rmtree(tools.tree)
            for name, argv in tools.deletes().items():
                make_tree(tools.tree, files)
                subprocess.run(["sync"], check=False)
                results.setdefault(f"delete: {name}", Sample()).add(*timed(argv))
                left = count_files(tools.tree)
                if left != expected_left:
                    print(f"  warning: {name} left {left:,} files, expected {expected_left:,}")
                shutil.rmtree(tools.tree)
        return results
    finally:
        shutil.rmtree(work, ignore_errors=True)


def report(base: Path, files: int, results: dict[str, Sample]) -> None:
    kind = fs_kind(base)
    print(f"\n{base} ({kind}), {files:,} files, half of them old:")
    print(f"  {'tool':<38} {'median':>8} {'min':>8} {'cpu':>7} {'files/s':>11}  vs find")
    find = {"scan": results["scan: find -print"].median,
            "delete": results["delete: find -delete"].median}
    for name, sample in results.items():
        phase = name.split(":")[0]
        handled = files if phase == "scan" else files // 2
        rate = f"{handled / sample.median:>11,.0f}" if phase != "start-up" else " " * 11
        ratio = f"{sample.median / find[phase]:.2f}x" if phase in find else ""
        print(f"  {name:<38} {sample.median:>7.3f}s {min(sample.wall):>7.3f}s "
              f"{statistics.median(sample.cpu):>6.2f}s {rate}  {ratio}")
    startup = results["start-up: toilbox run, empty cleanup"].median
    for phase, row in (("scan", "scan: toilbox run --dry-run"), ("delete", "delete: toilbox run")):
        ratio = results[row].median / find[phase]
        goal = GOALS[(kind, phase)]
        verdict = "met" if ratio <= goal else f"missed by {ratio / goal - 1:.0%}"
        print(f"  {phase}: toilbox {ratio:.2f}x find (goal {goal}x: {verdict}); without the "
              f"{startup:.2f}s of an empty run: {(results[row].median - startup) / find[phase]:.2f}x")


def scaling(base: Path, sizes: list[int], runs: int, toilbox: str) -> list[dict[str, float]]:
    """toilbox and find, scan and delete, at each size: the rows of the scaling table."""
    rows = []
    load = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="toilbox-scale-", dir=base))
    try:
        tools = Tools(work, toilbox)
        timed(tools.run("empty"))
        for files in map(tree_size, sizes):
            samples = {key: Sample() for key in ("scan", "scan_find", "delete", "delete_find")}
            for _ in range(runs):
                make_tree(tools.tree, files)
                samples["scan_find"].add(*timed(tools.scans()["find -print"]))
                samples["scan"].add(*timed(tools.run("bench", "--dry-run")))
                shutil.rmtree(tools.tree)
                for key, argv in (("delete_find", tools.deletes()["find -delete"]),
                                  ("delete", tools.run("bench"))):
                    make_tree(tools.tree, files)
                    subprocess.run(["sync"], check=False)
                    samples[key].add(*timed(argv))
                    shutil.rmtree(tools.tree)
            row = {"files": float(files), "load": load}
            row.update({key: sample.median for key, sample in samples.items()})
            row.update({f"{key}_cpu": statistics.median(sample.cpu)
                        for key, sample in samples.items()})
            rows.append(row)
            print(f"  {files:>9,} files: scan {row['scan']:.3f}s (find {row['scan_find']:.3f}s), "
                  f"delete {row['delete']:.3f}s (find {row['delete_find']:.3f}s)")
        return rows
    finally:
        shutil.rmtree(work, ignore_errors=True)


def scaling_markdown(rows: list[dict[str, float]], base: Path) -> str:
    lines = [
        f"Cleanup (`cleanup.files`, `older_than: 7d`) on {fs_kind(base)} ({base}), half the "
        "files old; whole-process wall time, medians; files/s counts the files scanned "
        "(dry run) or deleted; cpu is the user and system time of the whole process tree, "
        "which depends much less than wall time on what else the machine runs. "
        f"Load average {rows[0]['load']:.1f} at the start, {os.getloadavg()[0]:.1f} at the end.",
        "",
        "| cleanup | files | toilbox | files/s | cpu | find | files/s | cpu | toilbox / find |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        n = int(row["files"])
        for label, key, handled in (("scan (dry run)", "scan", n), ("delete", "delete", n // 2)):
            ours, theirs = row[key], row[f"{key}_find"]
            lines.append(f"| {label} | {n:,} | {ours:.2f} s | {handled / ours:,.0f} | "
                         f"{row[f'{key}_cpu']:.2f} s | {theirs:.2f} s | {handled / theirs:,.0f} | "
                         f"{row[f'{key}_find_cpu']:.2f} s | {ours / theirs:.2f}x |")
    lines += ["", growth_sentence(rows)]
    return "\n".join(lines)


def growth_sentence(rows: list[dict[str, float]]) -> str:
    """Linear or better: a further file costs no more CPU in a larger tree (CPU, not wall
    time, so that another process's load does not decide the verdict)."""
    if len(rows) < 3:
        return "Too few sizes measured to judge the curve."
    parts, worse = [], []
    for key in ("scan", "delete"):
        (n0, t0), (n1, t1), (n2, t2) = ((r["files"], r[f"{key}_cpu"]) for r in rows[:3])
        low = (t1 - t0) / (n1 - n0) * 1e6  # CPU microseconds per further file
        high = (t2 - t1) / (n2 - n1) * 1e6
        if high > low * 1.15:  # more than noise: each further file costs more
            worse.append(key)
        parts.append(f"{key}: {low:.1f} µs of CPU per further file from {int(n0):,} to "
                     f"{int(n1):,} files, {high:.1f} µs from {int(n1):,} to {int(n2):,}")
    verdict = ("Both curves are linear or better: a further file costs no more in a larger "
               "tree" if not worse else
               f"Worse than linear ({' and '.join(worse)}): a further file costs more in a "
               "larger tree")
    return (f"{verdict} ({'; '.join(parts)}). Files/s rises with the size because the fixed "
            "start-up is spread over more files.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", action="append", help="where to build trees (repeatable)")
    parser.add_argument("--runs", type=int, default=int(os.environ.get("BENCH_RUNS", "5")))
    parser.add_argument("--files", type=int, default=200_000)
    parser.add_argument("--scaling", help="sizes for the scaling table, e.g. 20000,200000,1000000")
    parser.add_argument("--write-docs", type=Path, help="write the scaling rows into this file")
    parser.add_argument("--baseline", type=Path, help="a directory holding another copy of "
                        "the toilbox_cleanups package, measured beside this one (e.g. main's: "
                        "git archive main plugins/toilbox_cleanups | tar -x -C DIR, then "
                        "--baseline DIR/plugins)")
    args = parser.parse_args()
    # Measure toilbox as installed, with its bytecode cached: without this, a shell that
    # sets PYTHONDONTWRITEBYTECODE makes every run compile toilbox's modules again.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    bases = [Path(b) for b in (args.base or ["/dev/shm", "/tmp"])]
    toilbox = str(Path(sys.executable).parent / "toilbox")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {args.runs} runs per tool, "
          f"load average {os.getloadavg()[0]:.1f} at the start")
    if args.scaling:
        sizes = [int(s) for s in args.scaling.split(",")]
        rows = scaling(bases[0], sizes, args.runs, toilbox)
        section = scaling_markdown(rows, bases[0])
        print("\n" + section)
        if args.write_docs:
            write_docs(args.write_docs, "bench_cleanup", "Cleanups", section)
        return
    files = tree_size(args.files)
    for base in bases:
        report(base, files, bench_base(base, files, args.runs, toilbox, args.baseline))


if __name__ == "__main__":
    main()
