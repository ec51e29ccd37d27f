"""Opening a cleanup root from ``/``, one component at a time, through named symlinks only.

Every component is opened with ``O_NOFOLLOW | O_DIRECTORY`` relative to the directory
opened before it, so what is checked is exactly what is opened: a symlink anywhere on the
way (not only the last component) makes its open fail, and it is followed only when the
config names that symlink, by its own absolute path, in ``root_symlinks``.  A named
symlink's target is read relative to the same descriptors and walked the same way, so a
symlink inside that target must be named too.

Config validation and every run call the same function, so a symlink put in a root's
path after ``toilbox validate`` is still refused when the task runs.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Collection

O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
MAX_SYMLINKS = 40  # as the kernel's own limit on a path lookup


class SymlinkRefusedError(OSError):
    """A symlink on the way to a root that the config does not name."""

    def __init__(self, link: str, target: str) -> None:
        super().__init__(errno.ELOOP, f"{link} is a symlink (to {target})")
        self.link = link
        self.target = target


class ComponentError(OSError):
    """A component on the way to a root that cannot be opened as a directory."""

    def __init__(self, code: int, where: str, message: str) -> None:
        super().__init__(code, message)
        self.where = where


def open_root_dir(path: str, named_symlinks: Collection[str]) -> tuple[int, str]:
    """Open the directory ``path`` (absolute); return its descriptor and its real path.

    Raises ``SymlinkRefusedError`` for a symlink on the way that ``named_symlinks`` does
    not hold, ``ComponentError`` for a component that is missing, not a directory, not
    searchable, or a symlink loop.
    """
    fds = [os.open("/", O_DIR)]
    parts: list[str] = []  # the real path walked so far, one name per descriptor after /
    pending = [name for name in reversed(path.split("/")) if name]
    followed = 0
    try:
        while pending:
            name = pending.pop()
            if name == ".":
                continue
            if name == "..":  # only from a symlink's target: the real parent, never a link
                if parts:
                    parts.pop()
                    os.close(fds.pop())
                continue
            try:
                fd = os.open(name, O_DIR, dir_fd=fds[-1])
            except OSError as exc:
                where = "/" + "/".join([*parts, name])
                target = _symlink_target(name, fds[-1]) if exc.errno in (
                    errno.ELOOP, errno.ENOTDIR) else None
                if target is None:
                    raise _component_error(exc, where) from None
                if where not in named_symlinks:
                    raise SymlinkRefusedError(where, target) from None
                followed += 1
                if followed > MAX_SYMLINKS:
                    raise ComponentError(errno.ELOOP, where,
                                         f"{where} leads through too many symlinks") from None
                if target.startswith("/"):
                    for extra in fds[1:]:
                        os.close(extra)
                    del fds[1:]
                    parts.clear()
                pending.extend(n for n in reversed(target.split("/")) if n)
                continue
            fds.append(fd)
            parts.append(name)
        fd = fds.pop()
    finally:
        for extra in fds:
            os.close(extra)
    return fd, "/" + "/".join(parts)


def _symlink_target(name: str, dir_fd: int) -> str | None:
    try:
        if not stat.S_ISLNK(os.lstat(name, dir_fd=dir_fd).st_mode):
            return None
        return os.readlink(name, dir_fd=dir_fd)
    except OSError:
        return None


def _component_error(exc: OSError, where: str) -> ComponentError:
    code = exc.errno or errno.EIO
    if code == errno.ENOENT:
        return ComponentError(code, where, f"{where} does not exist")
    if code == errno.ENOTDIR:
        return ComponentError(code, where, f"{where} is not a directory")
    return ComponentError(code, where, f"{where}: {exc.strerror or exc}")
