"""Logging: one shape for every line, library lines included, and secrets redacted."""

from __future__ import annotations

import io
import json
import logging

import structlog

from toilbox import log


def test_library_logs_share_the_pipeline_and_secrets_are_redacted():
    stream = io.StringIO()
    log.configure("json", "info", stream)
    log.add_secrets(["pa55word-xyz"])
    structlog.get_logger("t").info("connect", dsn="postgres://u:pa55word-xyz@db/x",
                                   nested={"headers": ["Bearer pa55word-xyz"]})
    logging.getLogger("tenacity").warning("retrying with pa55word-xyz")
    logging.getLogger("apscheduler.scheduler").info("Added job")  # too chatty: filtered
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines[0]["dsn"] == "postgres://u:***@db/x"
    assert lines[0]["nested"] == {"headers": ["Bearer ***"]}
    assert lines[1]["event"] == "retrying with ***"
    assert lines[1]["logger"] == "tenacity"
    assert lines[1]["level"] == "warning"
    assert {"timestamp", "level", "event"} <= set(lines[0]) and len(lines) == 2
    assert "pa55word-xyz" not in stream.getvalue()


def test_contextvars_bind_task_and_run_to_every_line():
    stream = io.StringIO()
    log.configure("json", "info", stream)
    with structlog.contextvars.bound_contextvars(task="disk", run_id="r-1", attempt=2):
        structlog.get_logger().info("inside")
    structlog.get_logger().info("outside")
    inside, outside = (json.loads(line) for line in stream.getvalue().splitlines())
    assert (inside["task"], inside["run_id"], inside["attempt"]) == ("disk", "r-1", 2)
    assert "task" not in outside
