"""Check state transitions, with an injected clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from toilbox.checkstate import CheckState, advance

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


def feed(state: CheckState, statuses: list[str], hard_after: int = 1, step_s: float = 60,
         flap_changes: int = 6) -> list[list[str]]:
    events = []
    for i, status in enumerate(statuses):
        now = T0 + timedelta(seconds=step_s * i)
        events.append([c.kind for c in advance(state, status, now, hard_after, 3600, flap_changes)])
    return events


def test_soft_until_hard_after_then_one_problem():
    state = CheckState("web")
    events = feed(state, ["ok", "critical", "critical", "critical", "critical"], hard_after=3)
    assert events == [[], [], [], ["problem"], []]
    assert state.hard and state.count == 4


def test_a_soft_problem_that_clears_says_nothing():
    state = CheckState("web")
    assert feed(state, ["critical", "critical", "ok"], hard_after=3) == [[], [], []]


def test_recovery_reports_the_outage_and_closes_the_circuit():
    state = CheckState("web")
    advance(state, "critical", T0)
    state.circuit_open, state.circuit_reason = True, "fix did not help"
    changes = advance(state, "ok", T0 + timedelta(minutes=42))
    assert [c.kind for c in changes] == ["recovery"]
    assert changes[0].outage_s == 42 * 60
    assert not state.circuit_open


def test_escalation_from_a_hard_warning_is_a_new_problem():
    state = CheckState("disk")
    assert feed(state, ["warning", "critical", "critical"]) == [["problem"], ["problem"], []]


def test_flapping_is_marked_then_settles():
    state = CheckState("web")
    events = feed(state, ["critical", "ok"] * 4, flap_changes=6)
    assert ["problem", "flapping"] in events or any("flapping" in e for e in events)
    assert state.flapping
    later = advance(state, "ok", T0 + timedelta(hours=3), 1, 3600, 6)
    assert [c.kind for c in later] == ["settled"]
    assert not state.flapping


def test_alternating_warning_and_critical_still_becomes_hard():
    state = CheckState("disk")
    events = feed(state, ["warning", "critical", "warning"], hard_after=3)
    assert events == [[], [], ["problem"]]
    assert state.problem_count == 3
