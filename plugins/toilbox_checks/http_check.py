"""check.http: a URL answers with an expected status, and a body and latency that fit.

Named ``http_check`` so that it never shadows the standard library's ``http``.
"""

from __future__ import annotations

import logging
import re
import ssl
import time
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    WithJsonSchema,
    field_validator,
    model_validator,
)

import toilbox
from toilbox.units import ConfigPath, Duration, format_duration
from toilbox_checks.levels import Regex, at_least, check_order, latency, level
from toilbox_checks.trust import system_trust

if TYPE_CHECKING:
    import httpx

    from toilbox.tasktypes import RegisterTaskType

BODY_LIMIT = 1024 * 1024
"""Bytes of the body read (and searched by ``body_matches``); the rest is not downloaded."""

_METHOD = re.compile(r"^[A-Z]+$")
_STATUS_RANGE = re.compile(r"^\s*(\d{3})\s*(?:-\s*(\d{3})\s*)?$")
_STATUS_HELP = "a status code like 200, a range like 200-399, or a list of them"


def parse_statuses(value: Any) -> tuple[tuple[int, int], ...]:
    """``200``, ``"200-399"`` or a list of those, as inclusive (low, high) ranges."""
    if isinstance(value, tuple):
        return value
    items = value if isinstance(value, list) else [value]
    ranges = []
    for item in items:
        match = _STATUS_RANGE.match(str(item)) if isinstance(item, int | str) else None
        low, high = (int(match[1]), int(match[2] or match[1])) if match else (0, 0)
        if isinstance(item, bool) or not (100 <= low <= high <= 599):
            got = f'"{item}"' if isinstance(item, str) else repr(item)
            raise ValueError(f"expected {_STATUS_HELP}, got {got}")
        ranges.append((low, high))
    if not ranges:
        raise ValueError(f"expected {_STATUS_HELP}, got an empty list")
    return tuple(ranges)


def format_statuses(ranges: tuple[tuple[int, int], ...]) -> str:
    return ", ".join(str(low) if low == high else f"{low}-{high}" for low, high in ranges)


Statuses = Annotated[
    tuple[tuple[int, int], ...],
    PlainValidator(parse_statuses),
    PlainSerializer(
        lambda ranges: [low if low == high else f"{low}-{high}" for low, high in ranges],
        return_type=list,
    ),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": ["integer", "string"]},
                {"type": "array", "items": {"type": ["integer", "string"]}},
            ],
            "description": _STATUS_HELP,
        }
    ),
]


class Params(BaseModel):
    # Built on first use: start-up pays only for the task types a config uses.
    model_config = ConfigDict(extra="forbid", defer_build=True)

    url: str = Field(description="http:// or https:// URL")
    method: str = Field("GET", description="the HTTP method")
    status: Statuses = Field(
        default="200-399", validate_default=True,
        description='expected status: a code, a range ("200-299") or a list of them',
    )
    body_matches: Regex | None = Field(default=None, description="regex searched in the body")
    warning: Duration | None = Field(default=None, description="response time that warns")
    critical: Duration | None = Field(default=None, description="response time that is critical")
    timeout: Duration = Field(
        default="10s", validate_default=True, gt=0,
        description="the whole request, body included; past it the check is CRITICAL",
    )
    headers: dict[str, str] = Field(
        default_factory=dict, description="request headers; use ${NAME} for secrets such as tokens"
    )
    follow_redirects: bool = Field(
        True, description="follow redirects; false: a 3xx is itself the response"
    )
    verify_tls: bool = Field(True, description="verify the server's certificate and name")
    ca_file: ConfigPath | None = Field(
        default=None, description="PEM CA bundle instead of the system's"
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f'expected an http:// or https:// URL with a host, got "{value}"')
        return value

    @field_validator("method")
    @classmethod
    def _method_token(cls, value: str) -> str:
        if not _METHOD.match(value.upper()):
            raise ValueError(f'expected an HTTP method like GET or HEAD, got "{value}"')
        return value.upper()

    @model_validator(mode="after")
    def _consistent(self) -> Params:
        check_order(self.warning, self.critical, lower_is_worse=False)
        if self.ca_file is not None and not self.verify_tls:
            raise ValueError("ca_file is used to verify TLS: drop it or set verify_tls: true")
        if self.body_matches is not None and self.method == "HEAD":
            raise ValueError("body_matches needs a body, and a HEAD response has none")
        return self


def run(ctx: toilbox.TaskContext, params: Params) -> toilbox.Result:
    """Request a URL: check its status, body and response time."""
    import httpx

    # httpx logs every request at INFO: the run's own summary line says it already.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    request = f"{params.method} {params.url}"
    data: dict[str, Any] = {"url": params.url, "method": params.method}
    client = httpx.Client(
        verify=_tls_context(params),
        follow_redirects=params.follow_redirects,
        timeout=params.timeout,
        headers=params.headers,
    )
    try:
        with client:
            started = time.monotonic()  # the request only, not loading the trust store
            with client.stream(params.method, params.url) as response:
                body = _read_body(response, started + params.timeout)
                elapsed = time.monotonic() - started
    except (httpx.HTTPError, TimeoutError) as exc:
        reason = _failure(exc, params.timeout)
        ctx.log.debug("http.failed", request=request, reason=reason)
        return toilbox.Result(
            toilbox.Status.CRITICAL, f"{request} failed: {reason}", data={**data, "error": reason}
        )

    code = response.status_code
    data.update(status_code=code, redirects=len(response.history), body_bytes=len(body))
    if str(response.url) != params.url:
        data["final_url"] = str(response.url)
    problems = []
    status = level(
        critical=at_least(elapsed, params.critical), warning=at_least(elapsed, params.warning)
    )
    if status is not toilbox.Status.OK:
        limit = params.critical if status is toilbox.Status.CRITICAL else params.warning
        problems.append(f"slower than the {status.label} threshold of {latency(limit or 0)}")
    if not any(low <= code <= high for low, high in params.status):
        status = toilbox.Status.CRITICAL
        problems.append(f"expected status {format_statuses(params.status)}")
    if params.body_matches is not None:
        text = body.decode(response.charset_encoding or "utf-8", errors="replace")
        if re.search(params.body_matches, text) is None:
            status = toilbox.Status.CRITICAL
            problems.append(f"body does not match {params.body_matches!r}")
            data["body_head"] = text[:200]

    summary = f"{request}: {code} {response.reason_phrase} in {latency(elapsed)}".rstrip()
    metrics: dict[str, toilbox.Metric | float] = {
        "time": toilbox.Metric(round(elapsed, 6), "s", params.warning, params.critical, 0),
        "size": toilbox.Metric(len(body), "B", min=0),
    }
    ctx.log.debug("http.answered", request=request, status_code=code, seconds=elapsed)
    return toilbox.Result(status, "; ".join([summary, *problems]), metrics, data)


def preload() -> None:
    """Run once by the daemon's zygote, so that no check pays for it again: httpx (60 ms
    of imports), the system's trust store (20 ms) and httpx's own lazy imports."""
    import httpx

    httpx.Client(verify=system_trust()).close()


run.preload = preload  # type: ignore[attr-defined]


def _tls_context(params: Params) -> ssl.SSLContext | bool:
    """The system's trust store (as curl and the Nagios plugins use), or the given CA file.

    Built for http:// URLs too, since a redirect may lead to https://.
    """
    if not params.verify_tls:
        return False
    try:
        if params.ca_file is None:
            return system_trust()
        return ssl.create_default_context(cafile=params.ca_file)
    except (OSError, ssl.SSLError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise toilbox.TaskFailed(f"cannot load ca_file {params.ca_file}: {reason}") from exc


def _read_body(response: httpx.Response, deadline: float) -> bytes:
    """Up to BODY_LIMIT bytes of the body; a server that drips it out gets ``timeout`` in all."""
    body = bytearray()
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) >= BODY_LIMIT:
            del body[BODY_LIMIT:]
            break
        if time.monotonic() > deadline:
            raise TimeoutError
    return bytes(body)


def _failure(exc: Exception, timeout: float) -> str:
    """A request's failure in a few words: "connection refused", "no response within 2s"."""
    import httpx

    if isinstance(exc, httpx.ConnectTimeout):
        return f"connect timed out after {format_duration(timeout)}"
    if isinstance(exc, httpx.TimeoutException | TimeoutError):
        return f"no complete response within {format_duration(timeout)}"
    if isinstance(exc, httpx.TooManyRedirects):
        return "too many redirects"
    return _cause(exc)


def _cause(exc: BaseException) -> str:
    """The first exception in the chain that says something specific, in a few words."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"TLS certificate not trusted: {cause.verify_message}"
        if isinstance(cause, ssl.SSLError):
            return f"TLS error: {cause.reason or cause}"
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror[:1].lower() + cause.strerror[1:]
        cause = cause.__cause__ or cause.__context__
    return str(exc) or type(exc).__name__


@toilbox.hookimpl
def register_task_types(register: RegisterTaskType) -> None:
    register("check.http", run, params=Params)
