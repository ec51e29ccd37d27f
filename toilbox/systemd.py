"""sd_notify for ``Type=notify`` units: READY, RELOADING, STOPPING and WATCHDOG."""

from __future__ import annotations

import os
import time
from typing import Any


class Notifier:
    """Talks to systemd when started by it (``$NOTIFY_SOCKET``); does nothing otherwise."""

    def __init__(self) -> None:
        self._notifier: Any = None
        if os.environ.get("NOTIFY_SOCKET"):
            import sdnotify

            self._notifier = sdnotify.SystemdNotifier()
        usec = os.environ.get("WATCHDOG_USEC", "")
        self._watchdog_s = int(usec) / 1e6 if usec.isdigit() else None

    def _send(self, state: str) -> None:
        if self._notifier is not None:
            self._notifier.notify(state)

    def ready(self) -> None:
        self._send(f"READY=1\nSTATUS=scheduling\nMAINPID={os.getpid()}")

    def reloading(self) -> None:
        # systemd 253+ wants the monotonic time with RELOADING=1 to pair it with READY=1.
        self._send(f"RELOADING=1\nMONOTONIC_USEC={time.monotonic_ns() // 1000}")

    def stopping(self) -> None:
        self._send("STOPPING=1")

    def watchdog(self) -> None:
        if self._watchdog_s is not None:
            self._send("WATCHDOG=1")

    def watchdog_interval(self, default: float) -> float:
        """How long the main loop may sleep: half the watchdog period at most."""
        return min(default, self._watchdog_s / 2) if self._watchdog_s else default
