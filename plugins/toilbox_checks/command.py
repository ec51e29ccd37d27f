"""check.command: run a Nagios-compatible plugin; its exit code is the status."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

import toilbox
from toilbox.units import ConfigPath, config_path
from toilbox_checks.perfdata import parse_perfdata, split_output

if TYPE_CHECKING:
    from toilbox.tasktypes import RegisterTaskType

CAPTURE_LIMIT = 64 * 1024
"""Bytes kept of stdout (its head: the summary) and of stderr (its tail: the error)."""

SUMMARY_LIMIT = 300
# Once the program has exited, a pipe still silent after this long is held open by a
# descendant it left behind; waiting for that would turn a finished check into a timeout.
_ORPHAN_PIPE_GRACE = 1.0


class Params(BaseModel):
    # Built on first use: start-up pays only for the task types a config uses.
    model_config = ConfigDict(extra="forbid", defer_build=True)

    command: list[str] = Field(min_length=1, description="argv: the program, then its arguments")
    env: dict[str, str] = Field(default_factory=dict, description="added to the environment")
    cwd: ConfigPath | None = Field(None, description="the working directory")

    @field_validator("command", mode="before")
    @classmethod
    def _not_a_shell_string(cls, value: Any) -> Any:
        if isinstance(value, str):
            raise ValueError(  # noqa: TRY004 -- pydantic reports only ValueError as invalid input
                "command is a list (argv, no shell), like [/usr/lib/nagios/plugins/check_http,"
                f" -H, localhost], got the string {value!r}"
            )
        return value

    @field_validator("command")
    @classmethod
    def _program_named(cls, value: list[str], info: ValidationInfo) -> list[str]:
        if not value[0]:
            raise ValueError("the first item (the program) is empty")
        if "/" in value[0]:
            # ./bin/check_x is read from the config's directory; a bare name is looked up in PATH.
            value = [str(config_path(value[0], info)), *value[1:]]
        return value


class _Capture:
    """A bounded buffer that counts what it drops."""

    def __init__(self, *, keep_tail: bool) -> None:
        self.keep_tail = keep_tail
        self.buffer = bytearray()
        self.total = 0

    def feed(self, chunk: bytes) -> None:
        self.total += len(chunk)
        if self.keep_tail:
            self.buffer += chunk
            del self.buffer[:-CAPTURE_LIMIT]
        elif len(self.buffer) < CAPTURE_LIMIT:
            self.buffer += chunk[: CAPTURE_LIMIT - len(self.buffer)]

    @property
    def truncated(self) -> bool:
        return self.total > len(self.buffer)

    def text(self) -> str:
        text = self.buffer.decode("utf-8", errors="replace")
        if self.keep_tail and self.truncated:
            text = text.partition("\n")[2]  # the first line of a tail is a fragment
        return text


def run(ctx: toilbox.TaskContext, params: Params) -> toilbox.Result:
    """Run a Nagios-compatible plugin: its exit code is the status, its perfdata the metrics."""
    ctx.log.debug("command.started", argv=params.command)
    try:
        # No new session: the runner's timeout kills our process group, and this with it.
        proc = subprocess.Popen(
            params.command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, **params.env},
            cwd=params.cwd,
        )
    except OSError as exc:
        raise toilbox.TaskFailed(_spawn_error(params, exc)) from exc
    with proc:
        stdout, stderr = _drain(proc)
    return _result(proc.returncode, stdout, stderr, ctx)


def _spawn_error(params: Params, exc: OSError) -> str:
    if params.cwd is not None and exc.filename in (params.cwd, str(params.cwd)):
        return f"cannot use working directory {params.cwd}: {exc.strerror}"
    return f"cannot run {params.command[0]}: {exc.strerror or exc}"


def _drain(proc: subprocess.Popen[bytes]) -> tuple[_Capture, _Capture]:
    """Read both pipes to the end, keeping at most CAPTURE_LIMIT of each."""
    stdout, stderr = _Capture(keep_tail=False), _Capture(keep_tail=True)
    with selectors.DefaultSelector() as selector:
        # The pipes are typed Optional, but with PIPE asked for they are never None.
        selector.register(proc.stdout, selectors.EVENT_READ, stdout)  # type: ignore[arg-type]
        selector.register(proc.stderr, selectors.EVENT_READ, stderr)  # type: ignore[arg-type]
        while selector.get_map():
            ready = selector.select(timeout=_ORPHAN_PIPE_GRACE)
            if not ready and proc.poll() is not None:
                break
            for key, _ in ready:
                chunk = os.read(key.fd, CAPTURE_LIMIT)
                if chunk:
                    key.data.feed(chunk)
                else:
                    selector.unregister(key.fileobj)
    return stdout, stderr


def _result(
    code: int, stdout: _Capture, stderr: _Capture, ctx: toilbox.TaskContext
) -> toilbox.Result:
    output = split_output(stdout.text())
    metrics, errors = parse_perfdata(output.perfdata)
    stderr_text = stderr.text().strip()

    status = toilbox.Status.UNKNOWN
    problem = None
    if code < 0:
        problem = f"killed by {_signal_name(-code)}"
    elif code > toilbox.Status.UNKNOWN:
        problem = f"exited with code {code}, which is not a Nagios status (0-3)"
    else:
        status = toilbox.Status(code)

    first_line = output.summary or stderr_text.partition("\n")[0].strip()
    summary = f"{problem}: {first_line}" if problem and first_line else problem or first_line
    data: dict[str, Any] = {
        "exit_code": code,
        "output": "\n".join(part for part in (output.summary, output.long_text) if part),
    }
    if stderr_text:
        data["stderr"] = stderr_text
    if stdout.truncated:
        data["stdout_bytes"] = stdout.total  # only the first CAPTURE_LIMIT were kept
    if errors:
        data["perfdata_errors"] = len(errors)
        ctx.log.warning("command.perfdata_malformed", errors=errors[:5], count=len(errors))
    ctx.log.debug("command.finished", exit_code=code, stdout_bytes=stdout.total)
    return toilbox.Result(
        status=status,
        summary=_one_line(summary or f"exited with code {code}"),
        metrics=dict(metrics),
        data=data,
        details=output.long_text,
    )


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _one_line(text: str) -> str:
    return text if len(text) <= SUMMARY_LIMIT else text[: SUMMARY_LIMIT - 1] + "…"


@toilbox.hookimpl
def register_task_types(register: RegisterTaskType) -> None:
    register("check.command", run, params=Params)
