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


def test_keys_are_redacted_as_well_as_values():
    stream = io.StringIO()
    log.configure("json", "info", stream)
    log.add_secrets(["k3y-in-a-label"])
    structlog.get_logger("t").info(
        "perfdata",
        metrics={"disk_k3y-in-a-label": {"value": 1}, "plain": 2},
        data={"nested": {"k3y-in-a-label": ["k3y-in-a-label"]}},
        **{"top-k3y-in-a-label": 1},
    )
    line = json.loads(stream.getvalue())
    assert line["metrics"] == {"disk_***": {"value": 1}, "plain": 2}
    assert line["data"] == {"nested": {"***": ["***"]}}
    assert line["top-***"] == 1
    assert "k3y-in-a-label" not in stream.getvalue()


def test_keys_that_differ_only_by_a_secret_are_both_kept():
    log.add_secrets(["tw0-secret-a", "tw0-secret-b"])
    assert log.redact({"x-tw0-secret-a": 1, "x-tw0-secret-b": 2}) == {"x-***": 1, "x-*** (2)": 2}


def test_a_value_too_short_to_be_a_secret_is_never_redacted():
    """A "2" or a port would be starred inside timestamps and addresses, and the stars'
    pattern would give it away."""
    stream = io.StringIO()
    log.configure("json", "info", stream)
    log.add_secrets(["2", "5432", "1234567"])
    structlog.get_logger("t").info("connect", to="db.internal:5432", at="2026-02-22T12:34:56Z")
    line = json.loads(stream.getvalue())
    assert line["to"] == "db.internal:5432"
    assert line["at"] == "2026-02-22T12:34:56Z"
    assert "***" not in stream.getvalue()


def test_every_secret_becomes_the_same_three_stars_whatever_its_length():
    log.add_secrets(["eight-ch", "a-much-longer-secret-of-40-characters-xx"])
    assert log.redact("a=eight-ch b=a-much-longer-secret-of-40-characters-xx") == "a=*** b=***"
