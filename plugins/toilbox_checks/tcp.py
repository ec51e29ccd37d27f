"""check.tcp: a TCP connection to host:port opens, and how long that took."""

from __future__ import annotations

import socket
import time
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, model_validator

import toilbox
from toilbox.units import Duration
from toilbox_checks.levels import at_least, check_order, endpoint, latency, level

if TYPE_CHECKING:
    from toilbox.tasktypes import RegisterTaskType


class Params(BaseModel):
    # Built on first use: start-up pays only for the task types a config uses.
    model_config = ConfigDict(extra="forbid", defer_build=True)

    host: str = Field(min_length=1, description="a name or an address")
    port: int = Field(ge=1, le=65535, description="the TCP port")
    warning: Duration | None = Field(default=None, description="connect time that warns")
    critical: Duration | None = Field(default=None, description="connect time that is critical")
    timeout: Duration = Field(
        default="10s", validate_default=True, gt=0,
        description="give up connecting after this long (CRITICAL)",
    )

    @model_validator(mode="after")
    def _thresholds_in_order(self) -> Params:
        check_order(self.warning, self.critical, lower_is_worse=False)
        return self


def run(ctx: toilbox.TaskContext, params: Params) -> toilbox.Result:
    """Open a TCP connection to host:port and time it (name resolution included)."""
    where = endpoint(params.host, params.port)
    started = time.monotonic()
    try:
        with socket.create_connection((params.host, params.port), timeout=params.timeout) as sock:
            elapsed = time.monotonic() - started
            peer = sock.getpeername()[0]
    except OSError as exc:
        reason = connect_error(exc, params.timeout)
        ctx.log.debug("tcp.failed", endpoint=where, reason=reason)
        return toilbox.Result(
            toilbox.Status.CRITICAL,
            f"cannot connect to {where}: {reason}",
            data={"host": params.host, "port": params.port, "error": reason},
        )

    status = level(
        critical=at_least(elapsed, params.critical), warning=at_least(elapsed, params.warning)
    )
    summary = f"connected to {where} in {latency(elapsed)}"
    if status is not toilbox.Status.OK:
        limit = params.critical if status is toilbox.Status.CRITICAL else params.warning
        summary += f" (the {status.label} threshold is {latency(limit or 0)})"
    metrics: dict[str, toilbox.Metric | float] = {
        "time": toilbox.Metric(round(elapsed, 6), "s", params.warning, params.critical, 0),
    }
    ctx.log.debug("tcp.connected", endpoint=where, address=peer, seconds=elapsed)
    return toilbox.Result(
        status, summary, metrics, data={"host": params.host, "port": params.port, "address": peer}
    )


def connect_error(exc: OSError, timeout: float) -> str:
    """Why a connection failed, in a few words: "connection refused", "timed out after 2s"."""
    if isinstance(exc, TimeoutError):
        return f"timed out after {latency(timeout)}"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the name: {exc.strerror or exc}"
    if exc.strerror:
        return exc.strerror[:1].lower() + exc.strerror[1:]
    return str(exc) or type(exc).__name__


@toilbox.hookimpl
def register_task_types(register: RegisterTaskType) -> None:
    register("check.tcp", run, params=Params)
