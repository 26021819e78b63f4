"""The fourth invariant, checked from the test's side: after a contact that ended without error, replaying the
store's audit gives exactly the managed trustpoints the lab router holds (docs/design.md "Invariants")."""

from __future__ import annotations

from eemwatchd.adapters.store import Store
from eemwatchd.core.audit_replay import AuditedChange, expected_holdings
from eemwatchd.reconcile import RunReport
from eemwatchd_lab.router import Fleet, invariants


def audit_differences(store: Store, fleet: Fleet, router: str, *, prefix: str) -> list[str]:
    """What the audit says the router's managed trustpoints hold that they do not (and the reverse)."""
    rows = [AuditedChange(e.action, e.trustpoint, e.sha256_before, e.sha256_after) for e in store.audit(router=router)]
    expected = expected_holdings(rows, prefix=prefix)
    actual = {name: frozenset(c.sha256 for c in certs)
              for name, certs in fleet[router].state.trustpoint_certs().items() if name.startswith(prefix)}
    return [f"{name}: audit says {sorted(s[:8] for s in expected.get(name, ()))}, router holds "
            f"{sorted(s[:8] for s in actual.get(name, ()))}"
            for name in sorted(expected.keys() | actual.keys()) if expected.get(name) != actual.get(name)]


def check_audit(report: RunReport, store: Store, fleet: Fleet, *, prefix: str) -> None:
    """Record an `audit` violation (it fails the test, see tests/conftest.py) for every router the run reached
    without error whose audit does not explain it."""
    for result in report.routers:
        if result.error is not None or not result.reachable or result.name not in fleet.devices:
            continue  # an interrupted contact is explained by the next one's observed rows
        differences = audit_differences(store, fleet, result.name, prefix=prefix)
        if differences:
            invariants.record(invariants.Violation(invariants.AUDIT, result.name, 0,
                                                   "the audit does not explain the router after a clean run: "
                                                   + "; ".join(differences)))
