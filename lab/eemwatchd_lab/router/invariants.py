"""What the lab router checks about eemwatchd's sessions while they happen: the invariants a router can see.

eemwatchd identifies itself in its SSH version string (`SSH-2.0-eemwatchd_<version>`), as `show ssh` shows
it on a real router; only those sessions are judged (a test's own raw SSH client may do anything).

- **save**: `write memory` only when this session's last test-fire (`event manager run`) ended with the mail
  delivered, and the session changed nothing since that test-fire started;
- **never below**: when a session ends, the router still accepts every chain the lab's SMTP servers send now
  that it accepted when the session began (judged by the lab's own trust rule, router/trust.py);
- **one writer**: no two eemwatchd sessions in configuration mode on one router at once.

A violation is recorded on the device, logged at ERROR and kept in a process-wide list that test fixtures
read after every test (`take_violations`), so it fails the test that caused it whatever that test checks.
The fourth invariant, "the audit explains the router", needs eemwatchd's store: a test fixture checks it
through ``Device.session_listeners`` (called when a session ends).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from eemwatchd.core.certificate import Certificate
from eemwatchd_lab.router.trust import validate_chain

log = logging.getLogger("eemwatchd_lab.invariants")

EEMWATCHD_CLIENT = "SSH-2.0-eemwatchd"

SAVE = "save"
NEVER_BELOW = "never-below"
ONE_WRITER = "one-writer"
AUDIT = "audit"


@dataclass(frozen=True)
class Violation:
    invariant: str
    device: str
    session: int
    detail: str

    def __str__(self) -> str:
        return f"INVARIANT {self.invariant} violated on {self.device} (session {self.session}): {self.detail}"


_lock = threading.Lock()
_violations: list[Violation] = []
# The chains the lab's SMTP servers send now, keyed by server (LabSmtpServer registers and withdraws them).
_served: dict[int, tuple[Certificate, ...]] = {}


def record(violation: Violation) -> None:
    with _lock:
        _violations.append(violation)
    log.error("%s", violation)


def take_violations() -> list[Violation]:
    """Every violation recorded since the last call (and forget them)."""
    with _lock:
        taken = list(_violations)
        _violations.clear()
    return taken


def serve_chain(server: int, chain: Sequence[Certificate] | None) -> None:
    """A lab SMTP server sends ``chain`` from now on (None: it stopped)."""
    with _lock:
        if chain is None:
            _served.pop(server, None)
        else:
            _served[server] = tuple(chain)


def served_chains() -> list[tuple[Certificate, ...]]:
    with _lock:
        return list(dict.fromkeys(_served.values()))


@dataclass
class _Fire:
    changes_before: int  # the session's change count when the test-fire started
    ok: bool | None = None  # None while the job runs


@dataclass
class SessionWatch:
    """One session as the invariants see it."""

    number: int
    eemwatchd: bool
    accepted_at_start: frozenset[tuple[Certificate, ...]] = frozenset()
    changes: int = 0
    in_config: bool = False
    fires: list[_Fire] = field(default_factory=list)
    ended: bool = False


class Invariants:
    """The checks of one lab device. ``trust`` and ``now`` read the device's trustpoints and clock."""

    def __init__(self, device: str, trust: Callable[[], Mapping[str, Sequence[Certificate]]],
                 now: Callable[[], datetime]) -> None:
        self.device = device
        self._trust = trust
        self._now = now
        self._sessions: list[SessionWatch] = []
        self._count = 0
        self.violations: list[Violation] = []

    def _violate(self, invariant: str, session: SessionWatch, detail: str) -> None:
        violation = Violation(invariant, self.device, session.number, detail)
        self.violations.append(violation)
        record(violation)

    def _accepted(self) -> frozenset[tuple[Certificate, ...]]:
        trust, now = self._trust(), self._now()
        return frozenset(chain for chain in served_chains() if validate_chain(chain, trust, now).ok)

    # --- events ---------------------------------------------------------------------------------------------

    def opened(self, client_version: str) -> SessionWatch:
        self._count += 1
        eemwatchd = client_version.startswith(EEMWATCHD_CLIENT)
        watch = SessionWatch(self._count, eemwatchd, self._accepted() if eemwatchd else frozenset())
        self._sessions.append(watch)
        return watch

    def entered_config(self, session: SessionWatch) -> None:
        if session.eemwatchd:
            others = [s.number for s in self._sessions
                      if s is not session and s.eemwatchd and s.in_config and not s.ended]
            if others:
                self._violate(ONE_WRITER, session, f"entered configuration mode while eemwatchd session(s) "
                                                   f"{others} are in configuration mode")
        session.in_config = True

    def left_config(self, session: SessionWatch) -> None:
        session.in_config = False

    def changed(self, session: SessionWatch) -> None:
        session.changes += 1

    def fired(self, session: SessionWatch) -> _Fire:
        fire = _Fire(session.changes)
        session.fires.append(fire)
        return fire

    def saved(self, session: SessionWatch) -> None:
        if not session.eemwatchd:
            return
        if not session.fires:
            self._violate(SAVE, session, "`write memory` without a test-fire in this session")
            return
        last = session.fires[-1]
        if last.ok is None:
            self._violate(SAVE, session, "`write memory` while the last test-fire was still running")
        elif not last.ok:
            self._violate(SAVE, session, "`write memory` after a test-fire that did not deliver its mail")
        elif session.changes != last.changes_before:
            self._violate(SAVE, session, f"`write memory` after {session.changes - last.changes_before} "
                                         "change(s) made since the last successful test-fire")

    def closed(self, session: SessionWatch) -> None:
        session.ended = True
        session.in_config = False
        self._sessions = [s for s in self._sessions if not s.ended]
        if not session.eemwatchd:
            return
        still_served = set(served_chains())
        lost = [chain for chain in session.accepted_at_start - self._accepted() if chain in still_served]
        for chain in lost:
            ids = "/".join(c.short_fingerprint for c in chain)
            self._violate(NEVER_BELOW, session, f"the router accepted chain {ids} when the session began and no "
                                                "longer does, though the server still sends it")
