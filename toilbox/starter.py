"""``toilbox init``: the shipped starter config (and systemd unit) written where they belong.

Both come from the package data (``toilbox/data``, the repository's ``configs/``), so a
wheel or pipx install has them too.  A file is never overwritten without ``force``; a
new file is created with ``O_EXCL`` and a replaced one is written beside it and renamed
over it, so a symlink planted at the target is neither followed nor written through.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from toilbox.errors import UsageError

SYSTEM_CONFIG = Path("/etc/toilbox/toilbox.yaml")
SYSTEM_UNIT = Path("/etc/systemd/system/toilbox.service")
SYSTEM_STATE = Path("/var/lib/toilbox")  # the unit's StateDirectory
_EXEC_START = re.compile(r"^ExecStart=.*$", re.MULTILINE)


def user_config_path() -> Path:
    """``$XDG_CONFIG_HOME/toilbox/toilbox.yaml``, by default ``~/.config/toilbox/...``."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "toilbox" / "toilbox.yaml"


def shipped(name: str) -> str:
    """A shipped file's text: ``toilbox.yaml``, ``examples/NAME.yaml``, ``systemd/...``."""
    return resources.files("toilbox").joinpath("data", name).read_text(encoding="utf-8")


def installed_command() -> list[str]:
    """How this installation's toilbox is started: its console script, or ``python -m``."""
    script = Path(sys.executable).parent / "toilbox"  # a venv's (and so pipx's) bin/
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "toilbox"]


def unit_text(config: Path, command: list[str] | None = None) -> str:
    """The shipped unit with ``ExecStart`` running this toilbox on ``config``."""
    argv = [*(command or installed_command()), "-c", str(config), "--log-format", "json", "daemon"]
    line = "ExecStart=" + " ".join(_systemd_quote(arg) for arg in argv)
    return _EXEC_START.sub(lambda _: line, shipped("systemd/toilbox.service"), count=1)


def system_starter(text: str) -> str:
    """The starter for a system service: its state is the unit's, so that root's
    ``toilbox run``, ``history`` and ``explain`` share the daemon's history and locks."""
    line = (
        "# The daemon's state directory (the unit's StateDirectory): root's toilbox commands\n"
        "# on this file share its history, and its locks keep them from running a task twice.\n"
        f"state_dir: {SYSTEM_STATE}\n"
    )
    head, sep, tail = text.partition("\ntimezone:")
    return f"{head}\n{line}{sep.lstrip(chr(10))}{tail}" if sep else line + text


@dataclass(frozen=True)
class Written:
    path: Path
    replaced: bool


def init(
    path: Path | None = None,
    *,
    systemd: bool = False,
    unit: Path | None = None,
    force: bool = False,
) -> list[Written]:
    """Write the starter config, and with ``systemd`` the unit; return what was written.

    The config goes to ``path``, else ``/etc/toilbox/toilbox.yaml`` for a system service
    (``systemd``), else the user's config directory.  Nothing is written when any target
    exists and ``force`` is not given.
    """
    config = (path or (SYSTEM_CONFIG if systemd else user_config_path())).expanduser().absolute()
    starter = shipped("toilbox.yaml")
    if systemd:
        starter = system_starter(starter)
    files = [(config, starter, 0o600)]  # a config may come to hold secrets
    if systemd:
        files.append(((unit or SYSTEM_UNIT).expanduser().absolute(), unit_text(config), 0o644))
    if not force:
        for target, _, _ in files:
            if os.path.lexists(target):
                raise UsageError(f"{target} exists; --force overwrites it")
    return [_write(target, text, mode, force) for target, text, mode in files]


def _write(target: Path, text: str, mode: int, force: bool) -> Written:
    try:
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        directory = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise UsageError(f"cannot write {target}: {exc.strerror or exc}") from None
    try:
        replaced = _exists(target.name, directory)
        if not replaced:
            _create(target.name, directory, text, mode)
        elif force:
            # Written beside, then renamed over: rename replaces a symlink, never its target.
            temporary = f".{target.name}.{os.getpid()}.tmp"
            _create(temporary, directory, text, mode)
            try:
                os.rename(temporary, target.name, src_dir_fd=directory, dst_dir_fd=directory)
            except OSError:
                os.unlink(temporary, dir_fd=directory)
                raise
        else:
            raise UsageError(f"{target} exists; --force overwrites it")
        os.fsync(directory)
    except FileExistsError:
        raise UsageError(f"{target} exists; --force overwrites it") from None
    except OSError as exc:
        raise UsageError(f"cannot write {target}: {exc.strerror or exc}") from None
    finally:
        os.close(directory)
    return Written(target, replaced)


def _exists(name: str, directory: int) -> bool:
    try:
        os.stat(name, dir_fd=directory, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def _create(name: str, directory: int, text: str, mode: int) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(name, flags, mode, dir_fd=directory)
    try:
        os.fchmod(fd, mode)  # exactly this mode, whatever the umask
        data = memoryview(text.encode())
        while data:
            data = data[os.write(fd, data) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(name, dir_fd=directory)
        raise
    os.close(fd)


def _systemd_quote(arg: str) -> str:
    """One ExecStart word: ``%`` and ``$`` are systemd's specifiers, so they are doubled."""
    arg = arg.replace("%", "%%").replace("$", "$$")
    if re.fullmatch(r"[A-Za-z0-9_@%+=:,./-]+", arg.replace("$$", "")):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def examples_dir() -> Path:
    """The shipped example configs, one per use case, to copy tasks from."""
    return Path(str(resources.files("toilbox").joinpath("data", "examples")))


def next_steps(written: list[Written], *, systemd: bool) -> str:
    """What ``toilbox init`` says: what it wrote, and what to do next."""
    lines = [f"{'replaced' if w.replaced else 'wrote'} {w.path}" for w in written]
    config = written[0].path
    flag = "" if config == user_config_path() and not systemd else f" -c {config}"
    lines.append(f"examples to copy tasks from: {examples_dir()}")
    lines.append(
        f"next: edit {config}, then: toilbox{flag} validate && toilbox{flag} run root-disk"
    )
    if systemd:
        lines.append("then: systemctl daemon-reload && systemctl enable --now toilbox")
    return "\n".join(lines)


def plugin_next_steps(root: Path) -> str:
    """How to test and install a generated plugin, for the way toilbox is installed."""
    if (Path(sys.prefix) / "pipx_metadata.json").is_file():
        # A pipx venv has no pip or pytest on PATH: inject both into toilbox's own venv.
        # An absolute path: pipx takes a bare relative name for a package on the index.
        python, where = Path(sys.prefix) / "bin" / "python", root.absolute()
        return (
            f"pipx inject toilbox pytest && pipx inject --editable toilbox '{where}' && "
            f"{python} -m pytest '{where}' && toilbox plugins"
        )
    return f"pip install -e '{root}[test]' && pytest {root} && toilbox plugins"
