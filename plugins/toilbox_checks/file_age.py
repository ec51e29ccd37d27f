"""check.file-age: the newest file matching a glob (a backup, a heartbeat) is recent, not empty."""

from __future__ import annotations

import glob
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, model_validator

import toilbox
from toilbox.units import ConfigPath, ExplicitDuration, format_duration, format_size
from toilbox_checks.levels import age, at_least, check_order, level

if TYPE_CHECKING:
    from toilbox.tasktypes import RegisterTaskType


class Params(BaseModel):
    # Built on first use: start-up pays only for the task types a config uses.
    model_config = ConfigDict(extra="forbid", defer_build=True)

    # A relative glob is read from the config file's directory, not the current one.
    path: ConfigPath = Field(description="a glob, like /backups/*.tar.gz; ** spans directories")
    # A unit is required: "warning: 26" would otherwise be 26 seconds, not hours or days.
    warning: ExplicitDuration | None = Field(default=None, description="age that warns (26h)")
    critical: ExplicitDuration | None = Field(default=None, description="age that is critical")

    @model_validator(mode="after")
    def _thresholds(self) -> Params:
        if self.warning is None and self.critical is None:
            raise ValueError("set warning, critical or both: the age the newest file may reach")
        check_order(self.warning, self.critical, lower_is_worse=False)
        return self


def run(ctx: toilbox.TaskContext, params: Params) -> toilbox.Result:
    """Find the newest regular file matching the glob; check its age and that it is not empty."""
    pattern = str(params.path)
    count = 0
    newest: tuple[float, str, int] | None = None
    for path in glob.iglob(pattern, recursive=True):  # noqa: PTH207 -- Path.glob is relative only
        try:
            st = Path(path).stat()  # a symlink (a "latest" link) counts as the file it points to
        except OSError:
            continue  # gone since the glob saw it, or a dangling link
        if not stat.S_ISREG(st.st_mode):
            continue
        count += 1
        if newest is None or st.st_mtime > newest[0]:
            newest = (st.st_mtime, path, st.st_size)

    if newest is None:
        return toilbox.Result(
            toilbox.Status.CRITICAL,
            f"no file matches {pattern}",
            {"files": toilbox.Metric(0, "", min=0)},
            data={"path": pattern, "files": 0},
        )

    mtime, path, size = newest
    modified = datetime.fromtimestamp(mtime, UTC)
    seconds = max(0.0, (ctx.now() - modified).total_seconds())  # a future mtime is brand new
    status = level(
        critical=at_least(seconds, params.critical), warning=at_least(seconds, params.warning)
    )
    problems = []
    if status is not toilbox.Status.OK:
        limit = params.critical if status is toilbox.Status.CRITICAL else params.warning
        problems.append(f"older than the {status.label} threshold of {format_duration(limit or 0)}")
    if size == 0:
        status = toilbox.worst(status, toilbox.Status.CRITICAL)
        problems.append("it is empty")

    of = f" (newest of {count})" if count > 1 else ""
    summary = f"{path}{of} is {age(seconds)} old, {format_size(size)}"
    metrics: dict[str, toilbox.Metric | float] = {
        "age": toilbox.Metric(round(seconds, 3), "s", params.warning, params.critical, 0),
        "size_bytes": toilbox.Metric.below(size, "B", crit=1, min=0),  # empty is critical
        "files": toilbox.Metric(count, "", min=0),
    }
    data = {"path": pattern, "newest": path, "modified": modified.isoformat(), "files": count}
    ctx.log.debug("file_age.measured", newest=path, age_s=seconds, size=size, files=count)
    return toilbox.Result(status, "; ".join([summary, *problems]), metrics, data)


@toilbox.hookimpl
def register_task_types(register: RegisterTaskType) -> None:
    register("check.file-age", run, params=Params)
