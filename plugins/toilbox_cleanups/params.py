"""The cleanups' parameters, checked when the config loads so `toilbox validate` catches them.

Roots are refused here when they are relative, not normalised, nested in one another,
dangerous (``/``, ``/etc``, a home directory...), or reached through a symlink that
``root_symlinks`` does not name.  Every run opens each root again the same way, from
``/`` one component at a time, and checks its real path, so what changed on disk since
the config was validated is caught too.
"""

from __future__ import annotations

import os
import posixpath
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from toilbox.units import Duration, Size, parse_percent, parse_size
from toilbox_cleanups.match import compile_globs, shown
from toilbox_cleanups.rootpath import SymlinkRefusedError, open_root_dir

# The exact paths refused as roots; their subdirectories are fine (/var/tmp/app is, /var is not).
DANGEROUS_ROOTS = frozenset(
    {
        "/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib32", "/lib64", "/libx32",
        "/lost+found", "/media", "/mnt", "/opt", "/proc", "/root", "/run", "/sbin", "/snap",
        "/srv", "/sys", "/usr", "/usr/bin", "/usr/include", "/usr/lib", "/usr/lib32",
        "/usr/lib64", "/usr/libexec", "/usr/local", "/usr/sbin", "/usr/share", "/usr/src",
        "/var", "/var/backups", "/var/cache", "/var/lib", "/var/local", "/var/log",
        "/var/mail", "/var/opt", "/var/spool", "/var/www", "/nix", "/nix/store",
    }
)


def dangerous_reason(path: str) -> str | None:
    """Why ``path`` (absolute, normalised) is refused as a root, or None if it is not."""
    if path in DANGEROUS_ROOTS:
        return "a system directory"
    if posixpath.dirname(path) == "/home":
        return "a home directory"
    homes = {str(Path("~").expanduser()), str(Path("~root").expanduser()),
             os.environ.get("HOME", "")}
    if path in {posixpath.normpath(home) for home in homes if home.startswith("/")}:
        return "a home directory"
    return None


def _root(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError(f'roots must be absolute paths, got "{value}"')
    if "\0" in value:
        raise ValueError("roots cannot contain a NUL byte")
    normal = posixpath.normpath(value)
    normal = "/" + normal.lstrip("/")  # normpath keeps a leading "//"
    if ".." in value.split("/"):
        raise ValueError(f'roots must not contain "..", got "{value}" (write "{normal}")')
    return normal


Root = Annotated[str, AfterValidator(_root)]


def _percent_or_size(value: Any) -> tuple[str, float]:
    if isinstance(value, tuple):
        return value
    if isinstance(value, str) and value.strip().endswith("%"):
        return ("percent", parse_percent(value))
    if isinstance(value, str):
        try:
            return ("bytes", float(parse_size(value)))
        except ValueError:
            pass
    got = f'"{value}"' if isinstance(value, str) else repr(value)
    raise ValueError(f"expected a percentage like 15% or a size like 10GiB, got {got}")


def _show_free(value: tuple[str, float]) -> str:
    return f"{value[1]:g}%" if value[0] == "percent" else f"{int(value[1])}B"


FreeTarget = Annotated[
    tuple[str, float],
    PlainValidator(_percent_or_size),
    PlainSerializer(_show_free, return_type=str),
    WithJsonSchema({"type": "string", "description": "free space wanted: 15% or 10GiB"}),
]
"""``15%`` of the filesystem free, or ``10GiB`` free."""


class CommonParams(BaseModel):
    """What every cleanup shares: where, what, how much at most, and the safety switches."""

    # defer_build: the schema is built on first use, not on every `toilbox` start-up.
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    roots: list[Root] = Field(
        min_length=1, description="directories to clean; absolute; never removed themselves"
    )
    include: list[str] = Field(
        default_factory=list, description="only entries matching one of these globs"
    )
    exclude: list[str] = Field(
        default_factory=list, description="never entries matching one of these globs"
    )
    max_delete: int | None = Field(
        default=10_000, ge=0,
        description="budget: the most entries one run may delete; null for no limit",
    )
    max_delete_bytes: Size | None = Field(
        None, description="budget: the most bytes one run may delete"
    )
    one_filesystem: bool = Field(True, description="stay on the root's filesystem")
    allow_dangerous_root: bool = Field(False, description="accept a root like /var or /home")
    root_symlinks: list[Root] = Field(
        default_factory=list,
        description="symlinks (absolute paths) a root may be reached through; each hop named",
    )

    @field_validator("include", "exclude")
    @classmethod
    def _globs_compile(cls, value: list[str]) -> list[str]:
        compile_globs(value)  # raises ValueError with the bad pattern
        return value

    @model_validator(mode="after")
    def _safe_roots(self) -> CommonParams:
        for index, root in enumerate(self.roots):
            reason = dangerous_reason(root)
            if reason and not self.allow_dangerous_root:
                raise ValueError(
                    f"roots[{index}]: {root} is {reason}; refused unless allow_dangerous_root: true"
                )
            for other in self.roots[:index]:
                if root == other:
                    raise ValueError(f"roots[{index}]: {root} is listed twice")
                if root.startswith(other.rstrip("/") + "/") or other.startswith(root + "/"):
                    raise ValueError(f"roots[{index}]: {root} and {other} overlap")
            self._check_on_disk(index, root)
        return self

    def _check_on_disk(self, index: int, root: str) -> None:
        """Open the root as a run would: a symlink on the way, or a real path that is
        dangerous, is refused now.  A root that is missing or cannot be searched yet is
        left to the run, which reports it."""
        try:
            fd, real = open_root_dir(root, self.root_symlinks)
        except SymlinkRefusedError as exc:
            raise ValueError(f"roots[{index}]: {refused_symlink(root, exc)}") from None
        except OSError:
            return
        os.close(fd)
        reason = dangerous_reason(real)
        if reason and not self.allow_dangerous_root:
            raise ValueError(f"roots[{index}]: {root} is really {real}, {reason}; "
                             "refused unless allow_dangerous_root: true")


def refused_symlink(root: str, exc: SymlinkRefusedError) -> str:
    """The one-line refusal, the same at validation and at run time."""
    link = shown(exc.link)
    where = "is a symlink" if exc.link == root else f"passes through the symlink {link}"
    return (f"{shown(root)} {where} (to {shown(exc.target)}); "
            f"refused unless root_symlinks names {link}")


class FilesParams(CommonParams):
    older_than: Duration | None = Field(None, description="only entries older than this")
    age_by: Literal["mtime", "atime", "ctime"] = Field(
        "mtime", description="which time older_than (and oldest) uses"
    )
    larger_than: Size | None = Field(None, description="only files larger than this")
    keep_newest: int | None = Field(
        default=None, ge=0, description="in each directory, never the newest N matching files"
    )
    max_total_size: Size | None = Field(
        None, description="a target: delete the oldest matching files until they total at most this"
    )
    min_free: FreeTarget | None = Field(
        None, description="a target: delete the oldest until the filesystem has this much free"
    )
    workers: int | None = Field(
        default=None, ge=1, le=64, description="processes the scan and the deletes are split across"
    )


class EmptyDirsParams(CommonParams):
    older_than: Duration | None = Field(None, description="only entries older than this")
    age_by: Literal["mtime", "atime", "ctime"] = Field(
        "mtime", description="which time older_than (and oldest) uses"
    )


class LogsParams(CommonParams):
    include: list[str] = Field(
        default_factory=lambda: ["*.log"], description="which files are logs"
    )
    compress_after: Duration | None = Field(
        None, description="gzip plain logs whose mtime is older than this"
    )
    delete_after: Duration | None = Field(
        None, description="delete compressed logs whose mtime is older than this"
    )
    keep: int = Field(
        default=5, ge=0, description="in each directory, never delete the newest N logs"
    )
    compress_level: int = Field(default=6, ge=1, le=9, description="gzip level")

    @model_validator(mode="after")
    def _something_to_do(self) -> LogsParams:
        if self.compress_after is None and self.delete_after is None:
            raise ValueError("set compress_after, delete_after or both")
        return self
