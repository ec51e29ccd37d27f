"""structlog set-up, done once by the entry point, and secret redaction.

Every line of a run carries ``task``, ``run_id`` and ``attempt`` (bound through
contextvars by the runner).  Lines are JSON unless stderr is a terminal.  Standard
library loggers (APScheduler, tenacity) are routed through the same processors so
every line has one shape.  Secrets resolved from the config are replaced by ``***``
in every line, in keys as in values, however deeply nested.

What counts as a secret: a resolved ``${...}`` value of at least MIN_SECRET_LENGTH
characters.  A shorter one (a port, an exit code) would match inside timestamps and
addresses and corrupt them, and the pattern of ``***`` left behind would give the value
away; it is plain config, and ``toilbox validate`` says so.  Every secret becomes the
same three stars, which say nothing of its length.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, TextIO

import structlog

from toilbox.terminal import printable

REDACTED = "***"
MIN_SECRET_LENGTH = 8
_secrets: list[str] = []
_settings: dict[str, Any] = {"format": "json", "level": "info"}
_handler: list[logging.StreamHandler[TextIO] | None] = [None]


def add_secrets(secrets: Iterable[str]) -> None:
    for secret in secrets:
        if len(secret) >= MIN_SECRET_LENGTH and secret not in _secrets:
            _secrets.append(secret)
    _secrets.sort(key=len, reverse=True)  # a secret containing another is replaced whole


def redact(value: Any) -> Any:
    """``value`` with every known secret replaced, in strings, and in dicts' keys and
    values and lists' items at any depth."""
    if not _secrets:
        return value
    if isinstance(value, str):
        for secret in _secrets:
            if secret in value:
                value = value.replace(secret, REDACTED)
        return value
    if isinstance(value, dict):
        return _redact_items(value.items())
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value


def _redact_items(items: Iterable[tuple[Any, Any]]) -> dict[Any, Any]:
    out: dict[Any, Any] = {}
    for key, value in items:
        shown = redact(key)
        if shown in out:  # two keys that differ only by a secret: keep both
            shown = next(f"{shown} ({n})" for n in range(2, len(out) + 3)
                         if f"{shown} ({n})" not in out)
        out[shown] = redact(value)
    return out


def _redact_processor(logger: Any, method: str, event: MutableMapping[str, Any]) -> Any:
    if not _secrets:
        return event
    record = event.get("_record")
    out = _redact_items((k, v) for k, v in event.items() if k != "_record")
    if record is not None:
        out["_record"] = record
    return out


def _printable_processor(logger: Any, method: str, event: MutableMapping[str, Any]) -> Any:
    return {
        printable(key): printable(value) if key != "_record" else value
        for key, value in event.items()
    }


def configure(fmt: str | None = None, level: str = "info", stream: TextIO | None = None) -> None:
    """Set up logging for this process. ``fmt`` is "json", "console" or None (auto)."""
    stream = stream or sys.stderr
    fmt = fmt or ("console" if stream.isatty() else "json")
    _settings.update(format=fmt, level=level)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    # Tracebacks become text first, so that redaction sees them too.
    last: list[Any] = [
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        _redact_processor,
    ]
    # format_exc_info (above) leaves the console renderer no traceback to draw; naming
    # its formatter anyway keeps it from depending on whether rich is installed.
    renderer: Any = (
        structlog.dev.ConsoleRenderer(
            colors=stream.isatty() and not os.environ.get("NO_COLOR"),
            exception_formatter=structlog.dev.plain_traceback,
        )
        if fmt == "console"
        else structlog.processors.JSONRenderer()
    )
    if fmt == "console":  # JSON escapes control characters; the console renderer does not
        last.append(_printable_processor)
    structlog.configure(
        processors=[*shared, *last, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(_level_number(level)),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
    handler = _handler[0] = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                *last,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(_level_number(level), logging.INFO))
    # APScheduler narrates every job it adds at INFO: 10,000 lines for 10,000 tasks.
    logging.getLogger("apscheduler").setLevel(
        logging.DEBUG if level == "debug" else logging.WARNING
    )
    # The pool warns, in several lines, at every reconnection try while a database is
    # away; the store says it once (store.failing, store.recovered).
    logging.getLogger("psycopg.pool").setLevel(
        logging.DEBUG if level == "debug" else logging.ERROR
    )


def redirect_to(stream: TextIO) -> None:
    """Keep the settings, write elsewhere (a task's child process keeps the parent's stderr).

    Only the output changes, so this costs microseconds in every attempt's child.
    """
    if _handler[0] is None:
        configure(_settings["format"], _settings["level"], stream)
        return
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(stream))
    _handler[0].setStream(stream)


def _level_number(level: str) -> int:
    number = logging.getLevelName(level.upper())
    return number if isinstance(number, int) else logging.INFO
