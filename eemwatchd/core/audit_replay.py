"""What the audit log says a router holds, and how that differs from what the router really holds.

The audit must always explain a router's state: a session that drops after a certificate was installed but
before its read-back, or after `no crypto pki trustpoint` but before the retire row, leaves the router and
the log apart. On the next contact each difference gets its own row (`observed-add`, `observed-retire`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

# Rows that put a certificate into a trustpoint, and rows that take a trustpoint away.
ADDING = frozenset({"add", "rollback", "observed-add"})
REMOVING = frozenset({"retire", "observed-retire"})


@dataclass(frozen=True)
class AuditedChange:
    """The part of an audit row that says what a trustpoint holds after it (rows in log order)."""

    action: str
    trustpoint: str | None
    sha256_before: str | None
    sha256_after: str | None


@dataclass(frozen=True)
class ObservedDifference:
    """One difference between the audit's account and the router: the audit row that explains it."""

    action: str  # observed-add | observed-retire
    trustpoint: str
    sha256_before: str | None
    sha256_after: str | None
    reason: str


def expected_holdings(rows: Iterable[AuditedChange], *, prefix: str) -> dict[str, frozenset[str]]:
    """Trustpoint name -> SHA-256 of the certificates the audit says it holds (our trustpoints only).

    `add-failed`, `test-fire` and `save` rows say nothing about holdings: an add that failed in its
    read-back may or may not have left the certificate, and the next contact records what is there.
    A removing row with a certificate removes that certificate; without one, the whole trustpoint.
    """
    held: dict[str, set[str]] = {}
    for row in rows:
        name = row.trustpoint
        if name is None or not name.startswith(prefix):
            continue
        if row.action in ADDING and row.sha256_after:
            held.setdefault(name, set()).add(row.sha256_after)
        elif row.action in REMOVING:
            if row.sha256_before:
                held.get(name, set()).discard(row.sha256_before)
            else:
                held.pop(name, None)
            if not held.get(name):
                held.pop(name, None)
    return {name: frozenset(shas) for name, shas in held.items()}


def observed_differences(
    expected: Mapping[str, frozenset[str]], actual: Mapping[str, tuple[str, ...]], *, prefix: str
) -> list[ObservedDifference]:
    """The rows that make the audit agree with ``actual`` (trustpoint -> SHA-256 of its CA certificates).

    Only trustpoints with our prefix count; an empty trustpoint of ours holds no trust and is left to the
    planner (it retires it).
    """
    out: list[ObservedDifference] = []
    ours = {name: frozenset(shas) for name, shas in actual.items() if name.startswith(prefix) and shas}
    for name in sorted(expected.keys() | ours.keys()):
        want = expected.get(name, frozenset())
        have = ours.get(name, frozenset())
        for sha in sorted(want - have):
            out.append(ObservedDifference(
                "observed-retire", name, sha, None,
                "the audit says the router holds it, the router does not (a change made without its audit "
                "row: an interrupted session or a change by hand)",
            ))
        for sha in sorted(have - want):
            out.append(ObservedDifference(
                "observed-add", name, None, sha,
                "the router holds it, the audit did not say so (an install whose read-back was interrupted, "
                "or a change by hand)",
            ))
    return out
