"""The daemon's Prometheus metrics, in a registry of their own."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from toilbox.models import RunRecord


class DaemonMetrics:
    def __init__(self, running: Callable[[], int]) -> None:
        self.registry = CollectorRegistry()
        self.runs = Counter(
            "toilbox_runs", "Finished runs", ["task", "status"], registry=self.registry
        )
        self.duration = Histogram(
            "toilbox_run_duration_seconds",
            "Run duration, retries included",
            ["task"],
            buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600),
            registry=self.registry,
        )
        self.last_success = Gauge(
            "toilbox_last_success_timestamp_seconds",
            "When the task last finished OK",
            ["task"],
            registry=self.registry,
        )
        self.lag = Histogram(
            "toilbox_scheduler_lag_seconds",
            "Dispatch time minus scheduled time",
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 60),
            registry=self.registry,
        )
        self.missed = Counter(
            "toilbox_missed_slots", "Scheduled fires not run", ["task"], registry=self.registry
        )
        self.skipped = Counter(
            "toilbox_skipped_slots",
            "Fires skipped, task still running",
            ["task"],
            registry=self.registry,
        )
        running_gauge = Gauge("toilbox_running_tasks", "Runs in progress", registry=self.registry)
        running_gauge.set_function(running)

    def run_finished(self, record: RunRecord) -> None:
        self.runs.labels(record.task, record.status).inc()
        if record.duration_s is not None:
            self.duration.labels(record.task).observe(record.duration_s)
        if record.status == "ok" and record.finished_at:
            finished = datetime.fromisoformat(record.finished_at).timestamp()
            self.last_success.labels(record.task).set(finished)
