"""Per-task OS locks in the state directory: the same task never runs twice at once.

``flock`` locks vanish with the process that holds them, so a killed toilbox never
leaves a stale lock behind.  The holder writes who it is into the file, so the one
refused can say who holds it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from toilbox.errors import AlreadyRunning, StateError
from toilbox.models import now_iso

# Lock fds held by this process: a forked child closes them so that it never outlives
# its parent holding the parent's lock.
held_fds: set[int] = set()


_HOLDER_SIZE = 512


def lock_path(state_dir: Path, name: str) -> Path:
    return state_dir / "locks" / f"{name}.lock"


@contextmanager
def hold(state_dir: Path, name: str, what: str, purpose: str) -> Iterator[None]:
    """Hold the lock ``name`` or raise AlreadyRunning naming the holder.

    ``what`` names the thing locked in messages ("task 'x'"), ``purpose`` is recorded
    for whoever is refused ("toilbox run", "toilbox daemon").
    """
    path = lock_path(state_dir, name)
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Never through a symlink: a lock file is ours, in our own 0700 directory.
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise StateError(f"cannot create lock {path}: {exc.strerror or exc}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise AlreadyRunning(f"{what} is already running ({describe_holder(fd)})") from None
        held_fds.add(fd)
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "by": purpose,
            "since": now_iso(),
        }
        # Padded to a fixed size, so one pwrite replaces the last holder without a truncate.
        os.pwrite(fd, json.dumps(holder).encode().ljust(_HOLDER_SIZE), 0)
        try:
            yield
        finally:
            held_fds.discard(fd)
    finally:
        os.close(fd)


def is_held(state_dir: Path, name: str) -> bool:
    """True if another process holds the lock right now."""
    path = lock_path(state_dir, name)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def holder(state_dir: Path, name: str) -> str | None:
    """Who holds the lock, in words, or None when it is free."""
    if not is_held(state_dir, name):
        return None
    try:
        fd = os.open(lock_path(state_dir, name), os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return "holder unknown"
    try:
        return describe_holder(fd)
    finally:
        os.close(fd)


def describe_holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0).strip() or b"{}")
        return f"held by pid {info['pid']} on {info['host']} ({info['by']}) since {info['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "holder unknown"


def close_inherited() -> None:
    """In a forked child: drop the parent's locks so only the parent holds them."""
    for fd in list(held_fds):
        with contextlib.suppress(OSError):
            os.close(fd)
    held_fds.clear()
