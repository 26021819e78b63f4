"""Reason codes: why a router is where it is. One vocabulary for output, metrics labels, alerts and the audit."""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """Why a router is where it is: one vocabulary for output, metrics labels, alerts and the audit."""

    IN_SYNC = "in-sync"
    APPLIED = "applied"  # apply made its changes, proved them by a test-fire and saved them
    DRIFT = "drift"  # changes are needed (plan)
    WAITING = "waiting"  # a new chain awaits confirmation and the router does not accept it yet
    # a server sends a chain that does not verify (or misses its pins) and the router does not accept it: its
    # mail fails, and nothing is installed for a chain that may be an interception
    CHAIN_UNVERIFIED = "chain-unverified"
    # the router's clock makes it reject a chain a server sends now (not yet valid or expired at its clock)
    CLOCK_SKEW = "clock-skew"
    # a server it mails through has no confirmed verified chain, or its last fetch failed (what it sends is unknown)
    UNCONFIRMED = "unconfirmed"
    UNPROVEN = "unproven"  # its trust was never proven by a successful test-fire
    UNSAVED = "unsaved"  # managed trustpoints differ between running- and startup-config
    # its applet is missing or has no mail action: no test-fire can prove mail, so nothing is changed or fired
    # until `eemwatchd onboard` sets it up
    NOT_ONBOARDED = "not-onboarded"
    UNREACHABLE = "unreachable"
    AUTH_FAILED = "auth-failed"
    HOST_KEY_REJECTED = "host-key-rejected"
    TIMEOUT = "timeout"
    REFUSED = "refused"  # the router refused a command (AAA authorization, invalid input)
    COMMAND_FAILED = "command-failed"
    PARSE_ERROR = "parse-error"
    TESTFIRE_FAILED = "testfire-failed"
    INTERRUPTED = "interrupted"
    FAILED = "failed"  # anything else (a bug: see the log)

    @property
    def is_error(self) -> bool:
        """A job that ended in an error (as opposed to a state that needs no fault to be fixed)."""
        return self in _ERRORS


_ERRORS = frozenset({
    Reason.UNREACHABLE, Reason.AUTH_FAILED, Reason.HOST_KEY_REJECTED, Reason.TIMEOUT, Reason.REFUSED,
    Reason.COMMAND_FAILED, Reason.PARSE_ERROR, Reason.TESTFIRE_FAILED, Reason.INTERRUPTED, Reason.FAILED,
})
