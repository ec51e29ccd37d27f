"""A task's state between runs, Nagios-style: SOFT until confirmed, then HARD.

Pure functions over plain data, so every transition is tested without a clock or a
store.  A non-OK result becomes HARD after ``hard_after`` consecutive results; only
HARD changes notify or remediate.  A task whose state changes too often within the
flap window is flapping and stays quiet until it settles.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

OK = "ok"


@dataclass
class CheckState:
    task: str
    status: str = OK
    hard: bool = True
    since: str | None = None  # when the current status began
    count: int = 0  # consecutive results with this status
    problem_count: int = 0  # consecutive non-OK results, whatever their status
    problem_since: str | None = None  # start of the current HARD outage
    changes: list[str] = field(default_factory=list)  # recent status changes, for flapping
    flapping: bool = False
    circuit_open: bool = False
    circuit_reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> CheckState:
        return cls(**raw)


@dataclass(frozen=True)
class Change:
    """What a result did to the state: the events that notify or remediate."""

    kind: str  # "problem", "recovery", "flapping", "settled"
    status: str
    previous: str
    outage_s: float | None = None


def advance(
    state: CheckState,
    status: str,
    now: datetime,
    hard_after: int = 1,
    flap_window: float = 3600.0,
    flap_changes: int = 6,
) -> list[Change]:
    """Apply one result to ``state`` (in place) and return what changed."""
    events: list[Change] = []
    previous, was_hard = state.status, state.hard
    stamp = now.isoformat()
    state.problem_count = state.problem_count + 1 if status != OK else 0
    if status == state.status:
        state.count += 1
        if status != OK and not state.hard and state.problem_count >= hard_after:
            state.hard = True
            state.problem_since = state.problem_since or state.since
            events.append(Change("problem", status, OK))
    else:
        state.changes.append(stamp)
        state.status, state.since, state.count = status, stamp, 1
        if status == OK:
            state.hard = True
            if previous != OK and was_hard:
                started = datetime.fromisoformat(state.problem_since or stamp)
                events.append(Change("recovery", OK, previous, (now - started).total_seconds()))
            state.problem_since = None
            state.circuit_open, state.circuit_reason = False, None  # recovered on its own
        else:
            escalation = previous != OK and was_hard  # e.g. WARNING to CRITICAL, both HARD
            state.hard = escalation or state.problem_count >= hard_after
            if state.hard:
                state.problem_since = state.problem_since or stamp
                events.append(Change("problem", status, previous))
    horizon = (now - timedelta(seconds=flap_window)).isoformat()
    state.changes = [c for c in state.changes if c >= horizon][-4 * flap_changes :]
    if not state.flapping and len(state.changes) >= flap_changes:
        state.flapping = True
        events.append(Change("flapping", status, previous))
    elif state.flapping and len(state.changes) <= flap_changes // 2:
        state.flapping = False
        events.append(Change("settled", status, previous))
    return events
