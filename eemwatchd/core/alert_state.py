"""When to alert: firing once, a reminder after a while, resolved on recovery (state per subject and event)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum


class AlertSend(StrEnum):
    """What to send now. The values are the webhook's ``state`` words."""

    FIRING = "firing"
    REMINDER = "reminder"
    RESOLVED = "resolved"


@dataclass(frozen=True)
class AlertState:
    """The stored state of one (subject, event), e.g. ("router r1", "testfire_failed").

    Open while ``resolved_at`` is None. ``last_sent_at`` is when the last firing/reminder/resolved went out.
    """

    subject: str
    event: str
    opened_at: datetime
    last_sent_at: datetime
    resolved_at: datetime | None
    summary: str

    @property
    def is_open(self) -> bool:
        return self.resolved_at is None


@dataclass(frozen=True)
class AlertDecision:
    """``send`` is None when nothing goes out. ``state`` is the state after the decision (None: none exists);
    save it when ``changed``. Save it only after the alert went out, so a failed send is tried again."""

    send: AlertSend | None
    state: AlertState | None
    changed: bool


def decide_alert(previous: AlertState | None, *, active: bool, now: datetime, remind_after: timedelta,
                 subject: str | None = None, event: str | None = None,
                 summary: str | None = None) -> AlertDecision:
    """Decide from the stored state and whether the condition holds ``now``.

    - not open and active: ``firing`` (a new episode, opened now);
    - open and active: ``reminder`` once ``remind_after`` has passed since the last send, else nothing;
    - open and no longer active: ``resolved``;
    - not open and not active: nothing.

    ``subject`` and ``event`` are needed only when there is no previous state; ``summary`` (the words of the
    latest firing or reminder) replaces the stored one when given. A clock that went back never reminds.
    """
    if now.tzinfo is None:
        raise ValueError("decide_alert needs an aware datetime for now")
    if remind_after <= timedelta(0):
        raise ValueError(f"remind_after must be positive, not {remind_after}")
    if previous is None or not previous.is_open:
        if not active:
            return AlertDecision(None, previous, changed=False)
        name = subject if subject is not None else previous.subject if previous else None
        kind = event if event is not None else previous.event if previous else None
        if name is None or kind is None:
            raise ValueError("decide_alert: subject and event are needed to open a first alert")
        text = summary if summary is not None else previous.summary if previous else ""
        opened = AlertState(name, kind, opened_at=now, last_sent_at=now, resolved_at=None, summary=text)
        return AlertDecision(AlertSend.FIRING, opened, changed=True)
    if not active:
        return AlertDecision(AlertSend.RESOLVED, replace(previous, resolved_at=now, last_sent_at=now), changed=True)
    text = summary if summary is not None else previous.summary
    if now - previous.last_sent_at >= remind_after:
        return AlertDecision(AlertSend.REMINDER, replace(previous, last_sent_at=now, summary=text), changed=True)
    if text != previous.summary:
        return AlertDecision(None, replace(previous, summary=text), changed=True)
    return AlertDecision(None, previous, changed=False)
