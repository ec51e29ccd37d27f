"""Whether a path on disk can be trusted: nobody but its trusted owners can change it.

Code or state that root reads is only as safe as the least safe directory on its way:
whoever can write any directory from ``/`` down can rename a component and put their
own in its place.  So a path is judged the way OpenSSH's StrictModes (``safe_path()``)
and sudo (``sudo_secure_dir()``) judge one: resolve it, then walk every component from
``/`` down, and refuse one that is owned by an untrusted user or writable by group or
others.

One exception, decided for ``/tmp``-like directories: a directory that is writable by
everyone but has the sticky bit and a trusted owner may be *on the way* (never the
target itself).  The sticky bit stops others from renaming or removing the entries they
do not own, and the entry below it must itself pass, so an attacker can neither replace
it nor have put it there.  A sticky directory as the target is still refused: others
could add files to it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from toilbox.errors import UntrustedPath

ROOT_ONLY = frozenset({0})


def judge(path: Path, trusted_uids: frozenset[int] = ROOT_ONLY) -> str | None:
    """Why ``path`` is not safe, naming the culprit and its mode; None if it is safe.

    A path that does not exist is judged as far as it goes; whoever creates the rest
    is judged on the next call.
    """
    found = _first_problem(Path(os.path.realpath(path)), trusted_uids)
    return None if found is None else f"{found[0]} {found[1]}"


def require(path: Path, what: str, trusted_uids: frozenset[int] = ROOT_ONLY) -> Path:
    """``path`` resolved, if it is safe; else UntrustedPath, naming the culprit and its mode.

    Use the path returned, not the one given: a symlink on the way is judged by where
    it led, and must not be followed again later.
    """
    real = Path(os.path.realpath(path))
    found = _first_problem(real, trusted_uids)
    if found is not None:
        component, reason = found
        culprit = "it" if component == real else str(component)
        raise UntrustedPath(f"refusing {what} {path}: {culprit} {reason}")
    return real


def _first_problem(real: Path, trusted_uids: frozenset[int]) -> tuple[Path, str] | None:
    components = [real, *real.parents][::-1]  # "/" first
    for index, component in enumerate(components):
        try:
            info = component.lstat()
        except FileNotFoundError:
            return None
        except OSError as exc:
            return component, f"cannot be checked: {exc.strerror or exc}"
        mode = stat.S_IMODE(info.st_mode)
        if stat.S_ISLNK(info.st_mode):  # realpath resolved it: it changed under our feet
            return component, "changed while it was being checked"
        if info.st_uid not in trusted_uids:
            return component, f"is owned by {_user(info.st_uid)} (mode {mode:04o})"
        if not mode & 0o022:
            continue
        on_the_way = index < len(components) - 1
        if on_the_way and stat.S_ISDIR(info.st_mode) and mode & stat.S_ISVTX:
            continue
        who = {0o022: "group and others", 0o002: "others", 0o020: "its group"}[mode & 0o022]
        return component, f"is writable by {who} (mode {mode:04o})"
    return None


def _user(uid: int) -> str:
    import pwd

    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"
