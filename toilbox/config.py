"""The config file: YAML → validated pydantic models.

Every error names the file, the line and the key: ``toilbox.yaml:12: tasks.x.with.y: ...``.
Loading happens in two steps because ``plugin_dirs`` decides which task types exist:
``load`` (here) checks the file's own shape, ``resolve.resolve_tasks`` checks each task's
type and parameters.  ``${...}`` references are resolved by ``references``.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from toilbox import references, schedule, yamlpos
from toilbox.errors import ConfigError
from toilbox.log import MIN_SECRET_LENGTH
from toilbox.units import Duration, parse_percent
from toilbox.yamlpos import located

if TYPE_CHECKING:
    from toilbox.tasktypes import TaskType

TASK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
HOST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class RetryPolicy(_Strict):
    """How a failed attempt is retried: exponential backoff with jitter, capped."""

    attempts: int = Field(3, ge=1, le=100, description="attempts in all, the first included")
    backoff: Duration = Field(2.0, description="delay before the first retry; doubles each time")
    max_backoff: Duration = Field(60.0, description="the longest delay between attempts")


class RetryOverride(_Strict):
    attempts: int | None = Field(None, ge=1, le=100, description="attempts, the first included")
    backoff: Duration | None = Field(None, description="delay before the first retry; doubles")
    max_backoff: Duration | None = Field(None, description="the longest delay between attempts")


class TaskDefaults(_Strict):
    timeout: Duration = Field(600.0, gt=0, description="an attempt is killed after this long")
    retry: RetryPolicy = Field(RetryPolicy(), description="how failed attempts are retried")


def _known_timezone(value: str) -> str:
    if value == "UTC":  # the default: spare every start-up the zoneinfo import
        return value
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f'unknown timezone "{value}" (use an IANA name like Europe/Paris)'
        ) from None
    return value


class Remediate(_Strict):
    """What to run when a check stays failing, and how often at most."""

    run: list[str] = Field(min_length=1, description="tasks to run, in order")
    after: int | None = Field(None, ge=1, description="consecutive results; default hard_after")
    max: int = Field(3, ge=1, description="remediations per check per window")
    per: Duration = Field(3600.0, gt=0, description="the window for max")
    verify: bool = Field(True, description="run the check again after the fix")
    settle: Duration = Field(0.0, ge=0, description="wait this long before verifying")
    on: Literal["critical", "warning"] = Field("critical", description="the least status to fix")


class TaskConfig(_Strict):
    uses: str = Field(description="the task type, e.g. check.disk (see `toilbox plugins`)")
    with_: dict[str, Any] = Field(
        default_factory=dict, alias="with", description="the task type's parameters"
    )
    schedule: str | None = Field(None, description='cron "*/5 * * * *", "@daily" or "every 10m"')
    timezone: str | None = Field(None, description="overrides the global timezone")
    jitter: Duration | None = Field(None, ge=0, description="a random delay up to this long")
    on_missed: Literal["run_once", "skip", "run_all"] = Field(
        "run_once", description="what the daemon does with fires that passed while it was down"
    )
    catchup_window: Duration | None = Field(None, gt=0, description="default: one interval")
    catchup_max: int = Field(10, ge=1, le=1000, description="the cap for on_missed: run_all")
    timeout: Duration | None = Field(None, gt=0, description="overrides defaults.timeout")
    retry: RetryOverride | None = Field(None, description="overrides the defaults.retry it names")
    enabled: bool = Field(True, description="false: the daemon never fires it")
    description: str | None = Field(None, description="what the task is for, for people")
    scope: Literal["host", "fleet"] = Field(
        "host", description="host: runs on every host; fleet: once per slot for the whole fleet"
    )
    hard_after: int = Field(1, ge=1, le=100, description="results before a problem is HARD")
    notify: list[str] = Field(default_factory=list, description="apprise URLs, besides the global")
    remediate: Remediate | None = Field(None, description="fixes for a check that stays failing")
    ping: str | None = Field(None, description="a Healthchecks-style URL: /start, success, /fail")

    @field_validator("schedule")
    @classmethod
    def _schedule_parses(cls, value: str | None) -> str | None:
        if value is not None:
            schedule.parse(value)
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str | None) -> str | None:
        return _known_timezone(value) if value is not None else None


class HttpConfig(_Strict):
    listen: str = Field(
        "127.0.0.1:9464",
        description="address:port for /healthz and /metrics; an IPv6 address in brackets",
    )
    allow_remote: bool = Field(False, description="allow a non-loopback listen address")
    token: str | None = Field(
        None,
        description="asked of every request but /healthz (Authorization: Bearer TOKEN, or"
        " basic with any user); required with allow_remote; use ${ENV} or ${file:...}",
    )

    @model_validator(mode="after")
    def _a_token_beyond_loopback(self) -> HttpConfig:
        if self.allow_remote and not self.token:
            raise ValueError(
                "allow_remote: true needs a token (http: {token: \"${TOILBOX_HTTP_TOKEN}\"}):"
                " the status page and /metrics are not served to the network without one"
            )
        if self.token is not None and len(self.token) < 16:
            raise ValueError("the http token must be at least 16 characters")
        return self

    @field_validator("listen")
    @classmethod
    def _an_address(cls, value: str) -> str:
        listen_address(value)
        return value

    @model_validator(mode="after")
    def _loopback_unless_allowed(self) -> HttpConfig:
        address = listen_address(self.listen)[0]
        if not _is_loopback(address) and not self.allow_remote:
            raise ValueError(
                f"listen {self.listen} is not a loopback address; set allow_remote: true"
                " to serve metrics to the network"
            )
        return self


def listen_address(listen: str) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]:
    """``127.0.0.1:9464`` or ``[::1]:9464`` as an address and a port; ValueError else.

    An address, never a host name: a name is resolved when the listener binds, by
    whatever DNS or /etc/hosts says then, so it cannot be judged loopback or not here.
    """
    host, colon, port = listen.rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]")
    shape = f'listen must be address:port, like 127.0.0.1:9464 or [::1]:9464, got "{listen}"'
    if not colon or not port.isascii() or not port.isdigit() or int(port) > 65535:
        raise ValueError(shape)
    try:
        address = ipaddress.ip_address(host[1:-1] if bracketed else host)
    except ValueError:
        raise ValueError(
            f'listen takes an IP address, not a host name, like 127.0.0.1:9464 or [::1]:9464,'
            f' got "{listen}"'
        ) from None
    if (address.version == 6) != bracketed:
        raise ValueError(shape)
    return address, int(port)


def _is_loopback(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1 is 127.0.0.1
    return bool(address.is_loopback or (mapped is not None and mapped.is_loopback))


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "toilbox"


class NotifyLimit(_Strict):
    count: int = Field(20, ge=1, description="messages per destination per window")
    per: Duration = Field(3600.0, gt=0, description="the window for count")


class RemediationConfig(_Strict):
    enabled: bool = Field(True, description="false stops every automatic fix (a kill switch)")
    max_per_hour: int = Field(10, ge=1, description="automatic fixes per host, all checks")
    max_hosts: int | str | None = Field(
        None,
        description="fleet-wide: at most this many hosts (3) or this share of the hosts seen"
        " in the last day (5%) fixed per hour",
    )

    @field_validator("max_hosts")
    @classmethod
    def _count_or_share(cls, value: int | str | None) -> int | str | None:
        if isinstance(value, str):
            parse_percent(value)
        elif isinstance(value, int) and value < 1:
            raise ValueError("max_hosts must be at least 1 (pause remediation to stop all fixes)")
        return value

    def host_budget(self) -> tuple[int | None, float | None]:
        """``max_hosts`` as (count, share); both None when it is not set."""
        if isinstance(self.max_hosts, str):
            return None, parse_percent(self.max_hosts) / 100
        return self.max_hosts, None


class FleetTimings(_Strict):
    """How fleet daemons hold, lose and take over a fleet run (see docs/fleet.md)."""

    lease: Duration = Field(30.0, ge=2, description="how long a claim lasts unless renewed")
    renew: Duration = Field(10.0, gt=0, description="how often a daemon renews its leases")
    takeover_grace: Duration = Field(
        5.0, ge=0, description="how long past its end a lease waits before another daemon takes it"
    )
    sweep: Duration = Field(10.0, gt=0, description="how often a daemon looks for dead leases")

    @model_validator(mode="after")
    def _renew_in_time(self) -> FleetTimings:
        if self.renew * 2 > self.lease:
            raise ValueError(
                "renew must be at most half the lease, so that one missed renewal is harmless"
            )
        return self

    @property
    def fence_after(self) -> float:
        """A daemon that has not renewed for this long kills its own fleet runs: before
        anyone may take them over (lease + takeover_grace)."""
        return self.lease - self.renew


class StoreConfig(_Strict):
    url: str = Field(
        description='the shared PostgreSQL store of a fleet: "postgresql://user@host/db"'
    )

    @field_validator("url")
    @classmethod
    def _postgres(cls, value: str) -> str:
        scheme = value.partition("://")[0].lower()
        if scheme not in ("postgresql", "postgres"):
            raise ValueError(
                "store.url must be a postgresql:// URL (leave store out for SQLite in state_dir)"
            )
        return value


class FlappingConfig(_Strict):
    window: Duration = Field(3600.0, gt=0, description="how far back state changes count")
    changes: int = Field(6, ge=2, description="state changes within the window that mean flapping")


class Config(_Strict):
    state_dir: Path = Field(
        default_factory=default_state_dir,
        description="run history, locks and task files; default $XDG_STATE_HOME/toilbox",
    )
    store: StoreConfig | None = Field(None, description="absent: SQLite in state_dir")
    host_id: str | None = Field(
        None, description="this daemon's name in the fleet (default: the hostname)"
    )
    fleet: FleetTimings = Field(
        FleetTimings(), description="fleet mode: how long a claim lasts and when it is taken over"
    )
    history_retention: Duration = Field(
        35 * 86400.0,
        ge=3600,
        description="runs older than this are pruned (default 35d: a monthly report always"
        " finds a whole month, and the store stays bounded)",
    )
    plugin_dirs: list[Path] = Field(
        default_factory=list, description="directories whose *.py files are loaded as plugins"
    )
    timezone: str = Field("UTC", description="IANA name: the wall clock cron schedules read")
    max_concurrent: int = Field(8, ge=1, le=1024, description="runs at once in the daemon")
    shutdown_grace: Duration = Field(30.0, ge=0, description="for running tasks on SIGTERM")
    http: HttpConfig | None = Field(None, description="the daemon's /healthz and /metrics")
    notify: list[str] = Field(default_factory=list, description="apprise URLs for every task")
    notify_limit: NotifyLimit = Field(
        NotifyLimit(), description="messages per destination per window"
    )
    remediation: RemediationConfig = Field(
        RemediationConfig(), description="automatic fixes: the switch and the global budget"
    )
    flapping: FlappingConfig = Field(
        FlappingConfig(), description="when a task's state changes too often to notify"
    )
    defaults: TaskDefaults = Field(TaskDefaults(), description="what every task inherits")
    tasks: dict[str, TaskConfig] = Field(
        default_factory=dict, description="the tasks, by name (letters, digits, '.', '_', '-')"
    )

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        return _known_timezone(value)

    @field_validator("host_id")
    @classmethod
    def _host_id(cls, value: str | None) -> str | None:
        if value is not None and not HOST_ID.match(value):
            raise ValueError("host_id may use only letters, digits, '.', '_', ':', '-'")
        return value

    @field_validator("tasks")
    @classmethod
    def _task_names(cls, tasks: dict[str, TaskConfig]) -> dict[str, TaskConfig]:
        for name in tasks:
            if not TASK_NAME.match(name):
                raise ValueError(f"task name {name!r} may use only letters, digits, '.', '_', '-'")
        return tasks


@dataclass(frozen=True)
class LoadedConfig:
    """A config that passed its own checks, with what is needed to report later errors."""

    path: Path
    config: Config
    positions: dict[yamlpos.Loc, int]
    secrets: frozenset[str]
    # Where a ``${...}`` resolved to a value too short to be a secret: it is kept as plain
    # config, unredacted, and ``validate`` says so.
    plain_values: tuple[str, ...] = ()

    @property
    def config_dir(self) -> Path:
        """Where relative paths in the config are read from: the file's own directory."""
        return self.path.parent.resolve()

    def error(self, loc: yamlpos.Loc, message: str) -> str:
        return located(self.path, self.positions, loc, message)


@dataclass(frozen=True)
class Task:
    """A configured task, with its defaults applied and its parameters validated."""

    name: str
    type: TaskType
    params: BaseModel
    schedule: str | None
    timeout: float
    retry: RetryPolicy
    enabled: bool
    description: str | None
    scope: str = "host"
    timezone: str = "UTC"
    jitter: float | None = None
    on_missed: str = "run_once"
    catchup_window: float | None = None
    catchup_max: int = 10
    hard_after: int = 1
    notify: tuple[str, ...] = ()
    remediate: Remediate | None = None
    ping: str | None = None


def load(path: Path) -> LoadedConfig:
    """Read and check the file itself: syntax, keys, types, secrets, schedules."""
    data, positions = yamlpos.load(path)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1: the config must be a mapping of keys (state_dir, tasks, ...)")
    secrets: dict[str, str] = {}  # value -> a message, should it be too short to redact
    problems: list[str] = []
    data = references.resolve(data, (), secrets, problems, path, positions)
    if problems:
        raise ConfigError("\n".join(problems))
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_errors(path, positions, exc, ())) from None
    base = path.parent
    config = config.model_copy(
        update={
            "state_dir": _absolute(config.state_dir, base),
            "plugin_dirs": [_absolute(p, base) for p in config.plugin_dirs],
        }
    )
    redacted = frozenset(value for value in secrets if len(value) >= MIN_SECRET_LENGTH)
    plain = tuple(note for value, note in secrets.items() if value not in redacted)
    return LoadedConfig(path, config, positions, redacted, plain)


def _absolute(path: Path, base: Path) -> Path:
    path = path.expanduser()
    return path if path.is_absolute() else (base / path).resolve()


def format_errors(
    path: Path, positions: dict[yamlpos.Loc, int], exc: ValidationError, prefix: yamlpos.Loc
) -> str:
    """pydantic's errors as config errors, one line each: ``file:line: key: message``."""
    lines = []
    for error in exc.errors(include_url=False):
        loc = (*prefix, *error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown key"
        elif error["type"] == "missing":
            message = "this key is required"
        elif "input" in error and error["type"] not in ("value_error", "assertion_error"):
            message = f"{message}, got {_shown(error['input'])}"
        lines.append(located(path, positions, loc, message))
    return "\n".join(lines)


def _shown(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"' if len(value) <= 60 else f'"{value[:55]}..."'
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)
