"""check.disk: space and inodes used on the filesystem holding a path, counted as df does."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, PlainValidator, WithJsonSchema

import toilbox
from toilbox.units import ConfigPath, Percent, format_size, parse_percent, parse_size

if TYPE_CHECKING:
    from toilbox.tasktypes import RegisterTaskType

_BARE_NUMBER = re.compile(r"^\s*\d+(?:\.\d+)?\s*$")


@dataclass(frozen=True)
class Threshold:
    """A percentage of space used (reached at or above it) or a free size (reached below it)."""

    used_pct: float | None = None
    free_bytes: int | None = None

    def reached(self, used_pct: float, free_bytes: int) -> bool:
        if self.used_pct is not None:
            return used_pct >= self.used_pct
        return free_bytes < (self.free_bytes or 0)

    def __str__(self) -> str:
        return f"{self.used_pct:g}%" if self.used_pct is not None else f"{self.free_bytes}B"


def parse_threshold(value: Any) -> Threshold:
    if isinstance(value, Threshold):
        return value
    # A bare number is refused: "80" could mean 80% or 80 bytes free, opposite alarms.
    if isinstance(value, str) and not _BARE_NUMBER.match(value):
        try:
            if value.strip().endswith("%"):
                return Threshold(used_pct=parse_percent(value))
            return Threshold(free_bytes=parse_size(value))
        except ValueError:
            pass
    got = f'"{value}"' if isinstance(value, str) else repr(value)
    raise ValueError(f"expected a percentage used like 80% or a free size like 10GiB, got {got}")


DiskThreshold = Annotated[
    Threshold,
    PlainValidator(parse_threshold),
    PlainSerializer(str, return_type=str),
    WithJsonSchema({"type": "string", "description": "percentage used (80%) or free size (10GiB)"}),
]


class Params(BaseModel):
    # Built on first use: start-up pays only for the task types a config uses.
    model_config = ConfigDict(extra="forbid", defer_build=True)

    # Defaults are written as in the config, so the JSON Schema shows them that way.
    path: ConfigPath = Field(
        default="/", validate_default=True, description="any path on the filesystem to check"
    )
    warning: DiskThreshold = Field(
        default="80%", validate_default=True,
        description="a percentage used (80%) or a free size (10GiB) that warns",
    )
    critical: DiskThreshold = Field(
        default="90%", validate_default=True,
        description="a percentage used (90%) or a free size (2GiB) that is critical",
    )
    inodes_warning: Percent | None = Field(
        default="80%", validate_default=True, description="percentage of inodes used that warns"
    )
    inodes_critical: Percent | None = Field(
        default="90%", validate_default=True,
        description="percentage of inodes used that is critical",
    )


def run(ctx: toilbox.TaskContext, params: Params) -> toilbox.Result:
    """Check the space and inodes used on the filesystem holding a path."""
    try:
        st = os.statvfs(params.path)
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise toilbox.TaskFailed(f"path {params.path} does not exist") from exc
    except PermissionError as exc:
        raise toilbox.TaskFailed(f"cannot inspect {params.path}: {exc.strerror}") from exc

    # As df: blocks reserved for root count neither as used nor as available.
    used = (st.f_blocks - st.f_bfree) * st.f_frsize
    free = st.f_bavail * st.f_frsize
    size = st.f_blocks * st.f_frsize
    used_pct = 100 * used / (used + free) if used + free else 0.0
    status = _level(
        critical=params.critical.reached(used_pct, free),
        warning=params.warning.reached(used_pct, free),
    )
    summary = f"{params.path} {used_pct:.1f}% used, {format_size(free)} free of {format_size(size)}"
    metrics: dict[str, toilbox.Metric | float] = {
        "used_pct": toilbox.Metric(
            round(used_pct, 2), "%", params.warning.used_pct, params.critical.used_pct, 0, 100
        ),
        "used_bytes": toilbox.Metric(used, "B", min=0, max=size),
        # A free-size threshold alerts below it (the Nagios range "N:").
        "free_bytes": toilbox.Metric.below(
            free,
            "B",
            warn=params.warning.free_bytes,
            crit=params.critical.free_bytes,
            min=0,
            max=size,
        ),
        "size_bytes": toilbox.Metric(size, "B", min=0),
    }

    # Some filesystems (btrfs, some tmpfs) have no fixed inode table and report 0.
    if st.f_files > 0:
        inodes_pct = 100 * (st.f_files - st.f_ffree) / st.f_files
        inodes = _level(
            critical=_at_least(inodes_pct, params.inodes_critical),
            warning=_at_least(inodes_pct, params.inodes_warning),
        )
        status = toilbox.worst(status, inodes)
        summary += f"; inodes {inodes_pct:.0f}% used"
        metrics["inodes_used_pct"] = toilbox.Metric(
            round(inodes_pct, 2), "%", params.inodes_warning, params.inodes_critical, 0, 100
        )
    ctx.log.debug("disk.measured", path=str(params.path), used_pct=used_pct, free_bytes=free)
    return toilbox.Result(status, summary, metrics, data={"path": str(params.path)})


def _level(*, critical: bool, warning: bool) -> toilbox.Status:
    if critical:
        return toilbox.Status.CRITICAL
    return toilbox.Status.WARNING if warning else toilbox.Status.OK


def _at_least(value: float, threshold: float | None) -> bool:
    return threshold is not None and value >= threshold


@toilbox.hookimpl
def register_task_types(register: RegisterTaskType) -> None:
    register("check.disk", run, params=Params)
