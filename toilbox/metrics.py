"""The daemon's Prometheus metrics, in a registry of their own.

What a restart would otherwise lose is seeded from the store when the daemon starts: each
task's last success and last status, so that an alert on
``time() - toilbox_last_success_timestamp_seconds`` keeps working across restarts.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from toilbox.models import RunRecord
from toilbox.result import Status

if TYPE_CHECKING:
    from toilbox.store import Store


class DaemonMetrics:
    def __init__(self, running: Callable[[], int]) -> None:
        from toilbox import __version__

        # A `_created` series per counter and histogram doubles what is scraped and means
        # nothing to an alert.  The switch is process-wide: only the daemon exports metrics.
        prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry()
        Info("toilbox_build", "The running toilbox", registry=self.registry).info(
            {"version": __version__, "python": platform.python_version()}
        )
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
        self.state = Gauge(
            "toilbox_task_state",
            "The task's last status: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (Nagios codes)",
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

    def seed(self, store: Store, tasks: Iterable[str]) -> None:
        """Last success and last status of each configured task, from the store."""
        wanted = list(tasks)
        for task, finished in store.last_success_times(wanted).items():
            self.last_success.labels(task).set(datetime.fromisoformat(finished).timestamp())
        for record in store.last_runs(wanted).values():
            self._set_state(record)

    def run_finished(self, record: RunRecord) -> None:
        self.runs.labels(record.task, record.status).inc()
        if record.duration_s is not None:
            self.duration.labels(record.task).observe(record.duration_s)
        if record.status == "ok" and record.finished_at:
            finished = datetime.fromisoformat(record.finished_at).timestamp()
            self.last_success.labels(record.task).set(finished)
        self._set_state(record)

    def _set_state(self, record: RunRecord) -> None:
        if record.status in ("ok", "warning", "critical", "unknown"):
            self.state.labels(record.task).set(Status.from_label(record.status).value)
