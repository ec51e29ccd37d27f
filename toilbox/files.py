"""Reading and writing files that a user names (a config, a secret, a report target).

Open, then check, never check, then open: what is read or replaced is the regular file
that was judged, never a fifo that hangs the reader, a device that never ends
(``/dev/zero``) or that a write would go through (``/dev/null``), nor a directory.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path


class Refused(OSError):  # noqa: N818 -- reads as the verdict: the file was refused
    """Not a file we read or replace; its message is the reason ("it is a fifo, ...")."""


def read_regular(path: Path, limit: int) -> bytes:
    """The bytes of the regular file at ``path`` (symlinks followed), at most ``limit``."""
    # stat first so that a device is never even opened (opening some has effects),
    # then fstat what was opened, in case the path was swapped in between.
    _require_regular(path.stat().st_mode)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        _require_regular(os.fstat(fd).st_mode)
        chunks: list[bytes] = []
        left = limit + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 16))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > limit:
        raise Refused(f"it is larger than {_size(limit)}")
    return data


def replace_regular(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: a new file, or one replacing a regular file.

    Anything else at ``path`` (a directory, a fifo, a device, a symlink) is refused, and
    the directory must exist.  The content goes to a temporary file created beside the
    target with ``O_EXCL | O_NOFOLLOW``, which is renamed over it once complete and
    removed if anything fails: a reader sees the old file or the new one, never a part.
    """
    if path.name in ("", ".", ".."):
        raise Refused("it is a directory: only a regular file is replaced")
    directory = path.parent
    try:
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise Refused(f"directory {directory} does not exist (it is not created)") from None
    except NotADirectoryError:
        raise Refused(f"{directory} is not a directory") from None
    try:
        try:
            old = os.stat(path.name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            old = None
        if old is not None and not stat.S_ISREG(old.st_mode):
            raise Refused(f"it is {_kind(old.st_mode)}: only a regular file is replaced")
        partial = f".{path.name}.{secrets.token_hex(6)}.tmp"
        fd = os.open(
            partial,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            0o666,  # less the umask, as for any new file
            dir_fd=dir_fd,
        )
        try:
            try:
                if old is not None:  # the replacement keeps the permissions it replaces
                    os.fchmod(fd, stat.S_IMODE(old.st_mode))
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(partial, path.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(partial, dir_fd=dir_fd)
            raise
    finally:
        os.close(dir_fd)


def _require_regular(mode: int) -> None:
    if not stat.S_ISREG(mode):
        raise Refused(f"it is {_kind(mode)}, not a regular file")


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a fifo"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISLNK, "a symlink"),
    ):
        if test(mode):
            return name
    return "something else"


def _size(limit: int) -> str:
    if limit >= 1 << 20:
        return f"{limit / (1 << 20):g} MiB"
    return f"{limit / 1024:g} KiB" if limit >= 1024 else f"{limit} bytes"
