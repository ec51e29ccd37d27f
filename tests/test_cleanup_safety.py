"""The cleanups' safety points, each against an adversarial tree that would break a naive one.

Symlinks in and out of the tree, a directory swapped for a symlink mid-run, entries
changed between plan and delete, special files, another filesystem, dangerous roots,
permission denied, hostile names and a 10,000-level tree.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import pwd
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

import toilbox
from toilbox import Status
from toilbox_cleanups import delete, emptydirs, files, logs, report
from toilbox_cleanups.params import EmptyDirsParams, FilesParams, LogsParams

DAY = 86400.0
OLD = time.time() - 30 * DAY


QUIET = structlog.wrap_logger(structlog.PrintLogger(),
                              wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))


def context(tmp_path: Path, **kwargs: Any) -> toilbox.TaskContext:
    return toilbox.TaskContext(task="t", run_id="r1", attempt=1, dry_run=False, log=QUIET,
                               state_dir=tmp_path / "state", **kwargs)


def make(path: Path, content: bytes = b"data") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    os.utime(path, (OLD, OLD))
    return path


def clean(tmp_path: Path, root: Path, **params: Any) -> toilbox.Result:
    params.setdefault("older_than", "7d")
    return files.run(context(tmp_path), FilesParams(roots=[str(root)], **params))


def fingerprint(directory: Path) -> dict[str, str]:
    """Every entry under ``directory`` (not following symlinks) with its content or target."""
    seen = {}
    for dirpath, dirnames, filenames in os.walk(directory):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            if path.is_symlink():
                seen[str(path)] = "-> " + os.readlink(path)
            elif path.is_file():
                seen[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
            elif path.is_dir():
                seen[str(path)] = "dir"
    return seen


@pytest.fixture
def before_act() -> Iterator[Callable[[Callable[[], None]], None]]:
    """Run a function between the plan and the first change."""
    hooks = report.BEFORE_ACT

    def add(hook: Callable[[], None]) -> None:
        hooks.append(hook)

    yield add
    hooks.clear()


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A tree outside the root, full of old files a broken cleanup would delete."""
    directory = tmp_path / "outside"
    for i in range(5):
        make(directory / f"precious{i}")
        make(directory / "sub" / f"precious{i}")
    return directory


# --- symlinks (a symlink on the way to a root: test_cleanup_roots.py) ---


def test_no_symlink_is_followed_or_deleted(tmp_path: Path, outside: Path) -> None:
    root = tmp_path / "root"
    make(root / "old")
    root.joinpath("dirlink").symlink_to(outside)
    root.joinpath("deep").mkdir()
    root.joinpath("deep", "dirlink").symlink_to(outside / "sub")
    root.joinpath("filelink").symlink_to(outside / "precious0")
    root.joinpath("dangling").symlink_to(tmp_path / "nowhere")
    for link in ("dirlink", "deep/dirlink", "filelink", "dangling"):
        os.utime(root / link, (OLD, OLD), follow_symlinks=False)
    before = fingerprint(outside)
    result = clean(tmp_path, root)
    assert fingerprint(outside) == before
    assert not (root / "old").exists()
    assert all((root / link).is_symlink() for link in ("dirlink", "deep/dirlink", "filelink",
                                                       "dangling"))
    assert result.data["ignored"]["symlinks"] == 4
    assert result.data["deleted"]["files"] == 1


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("swapped", ["a", "a/sub"])
def test_directory_swapped_for_a_symlink_between_plan_and_delete_leads_nowhere(
    tmp_path: Path, outside: Path, before_act: Any, monkeypatch: pytest.MonkeyPatch,
    workers: int, swapped: str,
) -> None:
    monkeypatch.setattr(delete, "INLINE_BELOW", 0)
    root = tmp_path / "root"
    for i in range(5):
        make(root / "a" / f"precious{i}")
        make(root / "a" / "sub" / f"precious{i}")
        for d in range(4):
            make(root / f"other{d}" / "x" / "y" / f"f{i}")
    target = outside if swapped == "a" else outside / "sub"

    def swap() -> None:  # what an attacker with write access to the root would do
        (root / swapped).rename(root / (swapped + ".moved"))
        (root / swapped).symlink_to(target)

    before_act(swap)
    before = fingerprint(outside)
    result = clean(tmp_path, root, workers=workers)
    assert fingerprint(outside) == before, "a file outside the root was touched"
    moved = root / (swapped + ".moved")
    assert len(list(moved.rglob("precious*"))) == (10 if swapped == "a" else 5)
    # every file of other*/, and a/'s own when only a/sub was swapped
    assert result.data["deleted"]["files"] == (20 if swapped == "a" else 25)
    assert result.status is Status.WARNING
    assert result.data["errors"]["count"] == (10 if swapped == "a" else 5)
    assert "is a symlink now (not followed)" in result.details


SWAPPER = textwrap.dedent("""
    import os, sys, time
    root, outside, stop = sys.argv[1:4]
    pause, paused = stop + ".pause", stop + ".paused"
    swaps = 0
    deadline = time.monotonic() + 60
    while not os.path.exists(stop) and time.monotonic() < deadline:
        if os.path.exists(pause):
            open(paused, "w").close()
            while os.path.exists(pause):
                time.sleep(0.001)
            os.unlink(paused)
        for name in sorted(os.listdir(root)):
            real, link = os.path.join(root, name), os.path.join(root, name + ".x")
            try:
                if os.path.isdir(real) and not os.path.islink(real):
                    os.rename(real, link)          # the real directory steps aside...
                    os.symlink(outside, real)      # ...and a symlink takes its name
                    swaps += 1
                    os.unlink(real)
                    os.rename(link, real)
            except OSError:
                pass
    print(swaps)
""")


@pytest.mark.slow
def test_directories_swapped_for_symlinks_all_through_a_run_lead_nowhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process swaps directories for symlinks to the outside, over and over, while
    scans and deletes run.  Whatever it hits, nothing outside the root changes."""
    monkeypatch.setattr(delete, "INLINE_BELOW", 0)
    root, outside, stop = tmp_path / "root", tmp_path / "outside", tmp_path / "stop"
    for i in range(40):
        make(outside / f"f{i}")
        make(outside / "x" / f"f{i}")
    before = fingerprint(outside)
    swapper = subprocess.Popen([sys.executable, "-c", SWAPPER, str(root), str(outside),
                                str(stop)], stdout=subprocess.PIPE, text=True)
    try:
        deleted = 0
        pause, paused = Path(f"{stop}.pause"), Path(f"{stop}.paused")
        for round_ in range(12):
            pause.touch()  # the swapper holds still while the tree is rebuilt
            while not paused.exists() and swapper.poll() is None:
                time.sleep(0.001)
            for d in range(20):
                for i in range(40):
                    make(root / f"d{d}" / "x" / f"f{i}")
            pause.unlink()
            result = clean(tmp_path, root, workers=1 + round_ % 2)
            deleted += result.data.get("deleted", {}).get("files", 0)
            assert fingerprint(outside) == before, f"round {round_} touched the outside"
    finally:
        stop.touch()
        swaps = int(swapper.communicate(timeout=30)[0])
    assert swaps > 100, "the swapper did not get to swap"
    assert deleted > 0


# --- re-checks before each delete ---


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        # The new file may well get the old one's inode number: ctime tells them apart.
        (lambda p: (p.unlink(), make(p)), "replaced"),
        (lambda p: os.utime(p), "mtime changed since the plan"),
        # Whether the fifo gets the file's inode number back depends on what else runs on
        # the machine: either way it is skipped.
        (lambda p: (p.unlink(), os.mkfifo(p), os.utime(p, (OLD, OLD))),
         ("no longer a regular file", "replaced")),
        (lambda p: p.unlink(), "vanished"),
    ],
    ids=["new-inode", "modified", "now-a-fifo", "vanished"],
)
def test_an_entry_changed_since_the_plan_is_skipped_and_counted(
    tmp_path: Path, before_act: Any, change: Callable[[Path], Any], reason: str | tuple[str, ...]
) -> None:
    root = tmp_path / "root"
    target = make(root / "changes")
    make(root / "stays-old")
    before_act(lambda: change(target))
    result = clean(tmp_path, root)
    assert result.status is Status.OK
    assert result.data["skipped"]["count"] == 1
    [sample] = result.data["skipped"]["samples"]
    assert sample["path"] == str(target)
    assert sample["error"].startswith(reason)
    assert result.data["deleted"]["files"] == 1
    assert "1 skipped (changed since the plan)" in result.summary
    if reason != "vanished":
        assert os.path.lexists(target), "a changed entry must be left alone"


# --- only regular files ---


def test_sockets_fifos_and_devices_are_never_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    os.mkfifo(root / "fifo")
    sock = socket.socket(socket.AF_UNIX)
    monkeypatch.chdir(root)  # a short relative name: socket paths are limited to 108 bytes
    sock.bind("sock")
    specials = ["fifo", "sock"]
    try:
        os.mknod(root / "null", stat.S_IFCHR | 0o600, os.makedev(1, 3))
        specials.append("null")
    except PermissionError:
        pass  # no CAP_MKNOD here: the fifo and socket still make the point
    for name in specials:
        os.utime(root / name, (OLD, OLD))
    make(root / "regular")
    result = clean(tmp_path, root)
    sock.close()
    assert sorted(os.listdir(root)) == sorted(specials)
    assert result.data["ignored"]["special"] == len(specials)


# --- one filesystem ---


@pytest.fixture
def mounted(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "root" / "mnt"
    mount.mkdir(parents=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
                          capture_output=True, text=True, check=False)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_another_filesystem_is_not_entered(tmp_path: Path, mounted: Path) -> None:
    make(mounted / "other-fs-file")
    make(mounted / "deeper" / "file")
    make(tmp_path / "root" / "same-fs-file")
    result = clean(tmp_path, tmp_path / "root")
    assert (mounted / "other-fs-file").exists()
    assert (mounted / "deeper" / "file").exists()
    assert not (tmp_path / "root" / "same-fs-file").exists()
    assert result.data["ignored"]["other_filesystem"] == 1
    empty = emptydirs.run(context(tmp_path), EmptyDirsParams(roots=[str(tmp_path / "root")]))
    assert mounted.is_dir() and empty.data["removed"]["dirs"] == 0


def test_one_filesystem_false_crosses(tmp_path: Path, mounted: Path) -> None:
    make(mounted / "other-fs-file")
    clean(tmp_path, tmp_path / "root", one_filesystem=False)
    assert not (mounted / "other-fs-file").exists()


@pytest.fixture
def bound_file(tmp_path: Path, mounted: Path) -> Iterator[Path]:
    """An old log in the root that is really a file of another filesystem, bind-mounted."""
    source = make(mounted / "elsewhere.log", b"another filesystem's log\n")
    target = make(tmp_path / "root" / "app.log", b"")
    done = subprocess.run(["mount", "--bind", str(source), str(target)], capture_output=True,
                          text=True, check=False)
    if done.returncode:
        pytest.skip(f"cannot bind-mount a file here: {done.stderr.strip()}")
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False)


@pytest.mark.parametrize("kind", ["files", "logs"])
def test_a_file_bind_mounted_from_another_filesystem_is_left_alone(
    tmp_path: Path, mounted: Path, bound_file: Path, kind: str
) -> None:
    root = tmp_path / "root"
    if kind == "files":
        result = clean(tmp_path, root)
    else:
        result = logs.run(context(tmp_path), LogsParams(
            roots=[str(root)], compress_after="1d", delete_after="7d", keep=0))
    assert result.status is Status.OK, result.summary
    assert sorted(os.listdir(root)) == ["app.log", "mnt"]
    assert (mounted / "elsewhere.log").read_bytes() == b"another filesystem's log\n"
    if kind == "files":
        assert result.data["ignored"]["other_filesystem"] == 2  # the file and mnt/


# --- dangerous roots ---


@pytest.mark.parametrize("root", ["/", "/home", "/etc", "/usr", "/var", "/boot", "/root",
                                  "/usr/local", "/var/lib", "/home/alice", "//etc/"])
def test_dangerous_roots_are_refused_when_the_config_loads(root: str) -> None:
    with pytest.raises(ValueError, match="refused unless allow_dangerous_root: true"):
        FilesParams(roots=[root])
    assert FilesParams(roots=[root], allow_dangerous_root=True).roots


def test_home_itself_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "me"))
    with pytest.raises(ValueError, match="is a home directory"):
        FilesParams(roots=[str(tmp_path / "me")])
    FilesParams(roots=[str(tmp_path / "me" / "tmp")])


@pytest.mark.parametrize(("roots", "message"), [
    (["relative/tmp"], "roots must be absolute paths"),
    (["~/tmp"], "roots must be absolute paths"),
    (["/srv/a/../b"], 'roots must not contain ".."'),
    (["/srv/a", "/srv/a/b"], "overlap"),
    (["/srv/a", "/srv/a/"], "listed twice"),
])
def test_bad_roots(roots: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FilesParams(roots=roots)


# --- errors per entry ---


def _as_nobody(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` in a forked child as user nobody (root ignores permission bits)."""
    nobody = pwd.getpwnam("nobody")
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            payload = pickle.dumps(("ok", fn()))
        except BaseException as exc:
            payload = pickle.dumps(("error", repr(exc)))
        os.write(write_end, payload)
        os._exit(0)
    os.close(write_end)
    chunks = []
    while chunk := os.read(read_end, 65536):
        chunks.append(chunk)
    os.close(read_end)
    os.waitpid(pid, 0)
    kind, value = pickle.loads(b"".join(chunks))  # noqa: S301 -- our own child
    assert kind == "ok", value
    return value


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become nobody")
def test_permission_denied_is_counted_not_fatal() -> None:
    nobody = pwd.getpwnam("nobody")
    base = Path(tempfile.mkdtemp(prefix="toilbox-perm-", dir="/tmp"))
    try:
        base.chmod(0o755)
        root = base / "root"
        make(root / "mine" / "old")
        make(root / "locked" / "hidden")  # root's, mode 700: cannot be listed
        make(root / "readonly" / "stuck")  # root's directory: cannot be unlinked from
        (root / "locked").chmod(0o700)
        (root / "readonly").chmod(0o755)
        for path in (root, root / "mine", root / "mine" / "old"):
            os.chown(path, nobody.pw_uid, nobody.pw_gid)
        state = base / "state"
        state.mkdir()
        os.chown(state, nobody.pw_uid, nobody.pw_gid)

        def run() -> dict[str, Any]:
            result = files.run(context(base), FilesParams(roots=[str(root)], older_than="7d"))
            return {"status": result.status, "data": result.data}

        got = _as_nobody(run)
        assert got["status"] is Status.WARNING
        assert not (root / "mine" / "old").exists()
        assert (root / "locked" / "hidden").exists()
        assert (root / "readonly" / "stuck").exists()
        errors = got["data"]["errors"]
        assert errors["count"] == 2
        assert {(e["path"], e["error"]) for e in errors["samples"]} == {
            (f"{root}/locked", "Permission denied"),
            (f"{root}/readonly/stuck", "Permission denied"),
        }
    finally:
        shutil.rmtree(base)


def test_hostile_names_are_deleted_and_reported_escaped(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    names = [b"new\nline", b"bad-\xff\xfe-utf8", b"tab\there", b"-rf", b" space ", b"\\x41"]
    for raw in names:
        path = os.path.join(os.fsencode(root), raw)
        with open(path, "wb") as out:
            out.write(b"x")
        os.utime(path, (OLD, OLD))
    result = clean(tmp_path, root)
    assert os.listdir(root) == []
    shown = {p.removeprefix(f"{root}/") for p in result.data["paths"]}
    assert shown == {"new\\nline", "bad-\\xff\\xfe-utf8", "tab\\there", "-rf", " space ",
                     "\\x41"}
    assert result.status is Status.OK


def test_deep_trees_do_not_hit_a_recursion_limit(tmp_path: Path) -> None:
    """10,000 levels: longer than PATH_MAX, deeper than Python's recursion limit."""
    depth = 10_000
    root = tmp_path / "root"
    root.mkdir()
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            os.mkdir("d", dir_fd=fd)
            child = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
        leaf = os.open("old", os.O_WRONLY | os.O_CREAT, dir_fd=fd)
        os.close(leaf)
        os.utime("old", (OLD, OLD), dir_fd=fd)
    finally:
        os.close(fd)
    result = clean(tmp_path, root)
    assert result.data["deleted"]["files"] == 1
    assert result.data["scanned"]["dirs"] == depth + 1
    removed = emptydirs.run(context(tmp_path),
                            EmptyDirsParams(roots=[str(root)], max_delete=depth))
    assert removed.status is Status.OK, removed.summary
    assert removed.data["removed"]["dirs"] == depth
    assert os.listdir(root) == []
