"""decide_alert: firing once, reminders after remind_after, resolved on recovery (fixed clock, table-driven)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from eemwatchd.core.alert_state import AlertDecision, AlertSend, AlertState, decide_alert

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
REMIND = timedelta(hours=4)


def _state(*, opened: timedelta, sent: timedelta, resolved: timedelta | None = None,
           summary: str = "test-fire failed") -> AlertState:
    return AlertState("router r1", "testfire_failed", opened_at=NOW - opened, last_sent_at=NOW - sent,
                      resolved_at=None if resolved is None else NOW - resolved, summary=summary)


OPEN = _state(opened=6 * HOUR, sent=HOUR)
OPEN_DUE = _state(opened=6 * HOUR, sent=REMIND)
CLOSED = _state(opened=6 * HOUR, sent=2 * HOUR, resolved=2 * HOUR)

CASES = [
    ("never-seen-inactive", None, False, None, AlertDecision(None, None, changed=False)),
    ("first-firing", None, True, "test-fire failed",
     AlertDecision(AlertSend.FIRING, AlertState("router r1", "testfire_failed", NOW, NOW, None, "test-fire failed"),
                   changed=True)),
    ("open-still-active-before-reminder", OPEN, True, None, AlertDecision(None, OPEN, changed=False)),
    ("open-summary-changed-quietly", OPEN, True, "other words",
     AlertDecision(None, _state(opened=6 * HOUR, sent=HOUR, summary="other words"), changed=True)),
    ("reminder-exactly-at-remind-after", OPEN_DUE, True, None,
     AlertDecision(AlertSend.REMINDER, _state(opened=6 * HOUR, sent=timedelta(0)), changed=True)),
    ("reminder-with-new-summary", OPEN_DUE, True, "still failing",
     AlertDecision(AlertSend.REMINDER, _state(opened=6 * HOUR, sent=timedelta(0), summary="still failing"),
                   changed=True)),
    ("recovered", OPEN, False, None,
     AlertDecision(AlertSend.RESOLVED, _state(opened=6 * HOUR, sent=timedelta(0), resolved=timedelta(0)),
                   changed=True)),
    ("resolved-stays-quiet", CLOSED, False, None, AlertDecision(None, CLOSED, changed=False)),
    ("broken-again-opens-a-new-episode", CLOSED, True, None,
     AlertDecision(AlertSend.FIRING, _state(opened=timedelta(0), sent=timedelta(0)), changed=True)),
    ("clock-went-back-no-reminder", _state(opened=HOUR, sent=-HOUR), True, None,
     AlertDecision(None, _state(opened=HOUR, sent=-HOUR), changed=False)),
]


@pytest.mark.parametrize(("previous", "active", "summary", "expected"),
                         [pytest.param(p, a, s, e, id=i) for i, p, a, s, e in CASES])
def test_decide_alert(previous: AlertState | None, active: bool, summary: str | None,
                      expected: AlertDecision) -> None:
    got = decide_alert(previous, active=active, now=NOW, remind_after=REMIND, subject="router r1",
                       event="testfire_failed", summary=summary)
    assert got == expected


def test_a_router_that_stays_broken_alerts_once_then_reminds_then_resolves() -> None:
    sent: list[tuple[int, AlertSend]] = []
    state: AlertState | None = None
    timeline = [True] * 10 + [False] * 3  # one check per hour
    for hour, active in enumerate(timeline):
        decision = decide_alert(state, active=active, now=NOW + hour * HOUR, remind_after=REMIND,
                                subject="router r1", event="out_of_sync", summary="out of sync")
        if decision.send is not None:
            sent.append((hour, decision.send))
        if decision.changed:
            state = decision.state
    assert sent == [(0, AlertSend.FIRING), (4, AlertSend.REMINDER), (8, AlertSend.REMINDER),
                    (10, AlertSend.RESOLVED)]


def test_an_existing_state_needs_no_subject() -> None:
    decision = decide_alert(CLOSED, active=True, now=NOW, remind_after=REMIND)
    assert decision.state is not None
    assert (decision.send, decision.state.subject, decision.state.summary) == (
        AlertSend.FIRING, "router r1", "test-fire failed")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"now": NOW.replace(tzinfo=None)}, "aware datetime", id="naive-now"),
        pytest.param({"remind_after": timedelta(0)}, "must be positive", id="zero-remind"),
        pytest.param({"subject": None}, "subject and event are needed", id="no-subject-first-time"),
    ],
)
def test_bad_arguments_are_refused(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"active": True, "now": NOW, "remind_after": REMIND, "subject": "router r1",
                               "event": "out_of_sync", **kwargs}
    with pytest.raises(ValueError, match=message):
        decide_alert(None, **args)  # type: ignore[arg-type]
