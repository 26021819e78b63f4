"""A reconcile run for people: the text report of `plan` and `apply`, their JSON and their exit code."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from typing import Any, TextIO

from eemwatchd.core.fingerprints import chain_text, short_fingerprint
from eemwatchd.reconcile import Reason, RouterResult, RunReport
from eemwatchd.reconcile.results import without_router

_WORDS = {
    Reason.IN_SYNC: "in sync",
    Reason.APPLIED: "applied and proven by a test-fire",
    Reason.WAITING: "waiting: a new chain is not confirmed yet",
    Reason.CHAIN_UNVERIFIED: "not in sync: a server sends a chain that does not verify and the router rejects",
    Reason.CLOCK_SKEW: "not in sync: the router's clock makes it reject a chain its server sends",
    Reason.UNCONFIRMED: "not in sync: a server has no confirmed verified chain, or its last fetch failed",
    Reason.UNPROVEN: "not in sync: trust not proven by a test-fire yet",
    Reason.UNSAVED: "not in sync: changes not saved to the startup-config",
    Reason.NOT_ONBOARDED: "not onboarded: its applet cannot prove mail (run `eemwatchd onboard`)",
}


def print_report(report: RunReport, *, out: TextIO = sys.stdout) -> None:
    """Per server address, then per router its actions, reports and lint."""
    for server in report.servers:
        if server.error:
            print(f"server {server.name}: {server.error}", file=out)
        for addr in server.addresses:
            if not addr.chain:  # nothing was served: nothing was verified or rejected
                print(f"server {server.name} {addr.address}: fetch failed: {addr.error}", file=out)
                continue
            state = "verified" if addr.verified else f"NOT verified: {addr.error}"
            if addr.verified and not addr.pinned:
                state = "verified but matches NO pin"
            chain = chain_text(addr.chain)
            seen = f", seen {addr.times_seen}x" if addr.times_seen else ""
            print(f"server {server.name} {addr.address}: chain {chain} {state}{seen}", file=out)
    for event in report.events:
        print(f"SECURITY: {event}", file=out)
    for router in report.routers:
        print_router(router, out=out)
    print_prestaged(report, out=out)


_ACCEPTED = {True: "accepts", False: "REJECTS", None: "cannot tell"}


def print_prestaged(report: RunReport, *, out: TextIO) -> None:
    """Per server and pre-staged certificate: how many of the routers read would accept each shape of chain that
    uses it, today (each router's own answer is under the router)."""
    tally: dict[tuple[str, str], dict[str, Any]] = {}
    for router in report.routers:
        if router.error is not None and not router.reachable:
            continue
        for item in router.prestaged:
            key = (item.server, item.certificate.sha256)
            entry = tally.setdefault(key, {"cert": item.certificate, "routers": 0, "held": 0, "shapes": {}})
            entry["routers"] += 1
            entry["held"] += item.held_in is not None
            for shape in item.shapes:
                counts = entry["shapes"].setdefault(shape.description, [0, 0, 0])
                counts[0 if shape.accepted else 1 if shape.accepted is False else 2] += 1
    for (server, _sha), entry in sorted(tally.items()):
        routers = entry["routers"]
        print(f"pre-staged for {server}: {entry['cert'].describe()}: held by {entry['held']}/{routers} router(s)",
              file=out)
        for description, (yes, no, unknown) in entry["shapes"].items():
            words = f"{yes}/{routers} accept" + (f", {no} reject" if no else "") + (
                f", {unknown} cannot tell" if unknown else "")
            print(f"  {description}: {words}", file=out)


def print_router(router: RouterResult | Mapping[str, Any], *, out: TextIO) -> None:
    """A router's result in words, from its JSON document (what `--json` prints, and what the daemon sends back
    for an onboarding it ran): one rendering whoever produced the result."""
    doc = router.to_json() if isinstance(router, RouterResult) else router
    name = doc["name"]
    reason = Reason(doc.get("result") or doc["reason"])
    error = doc.get("error")
    if error is not None and not doc["reachable"]:
        print(f"router {name}: {reason}: {without_router(error, name)}", file=out)
        return
    actions = doc.get("actions", [])
    state = f"{len(actions)} action(s)" if actions else _WORDS.get(reason, str(reason))
    print(f"router {name}: {len(doc.get('trustpoints', []))} trustpoint(s), {state}", file=out)
    for action in actions:
        short = short_fingerprint(action["sha256"]) or "-"
        print(f"  {action['kind']:<6} {action['trustpoint']:<24} {short}  {action['reason']}", file=out)
    for report in doc.get("reports", []):
        if report["kind"] != "event":
            where = f" {report['trustpoint']}" if report["trustpoint"] else ""
            print(f"  note   {report['kind']}{where}: {report['message']}", file=out)
    for item in doc.get("prestaged", []):
        held = f"held in {item['trustpoint']}" if item["trustpoint"] else "not held yet"
        print(f"  prestaged {short_fingerprint(item['sha256'])} {item['subject_cn']} for {item['server']}: {held}",
              file=out)
        for chain in item["chains"]:
            print(f"         {_ACCEPTED[chain['accepted']]}: {chain['description']} ({chain['why']})", file=out)
    for finding in doc.get("lint", []):
        print(f"  lint   {finding['severity']} {finding['rule']}: {finding['message']}", file=out)
        print(f"         fix: {finding['fix']}", file=out)
    for step in doc.get("steps", []):
        if step["kind"] == "observed":  # found on the router, not done by us: the audit explains it
            print(f"  found  {step['trustpoint'] or ''}: {step['detail']}", file=out)
            continue
        what = " ".join(w for w in (step["kind"], step["trustpoint"], "ok" if step["ok"] else "FAILED") if w)
        evidence = f" [evidence: {step['evidence']}]" if step["evidence"] else ""
        print(f"  done   {what}: {step['detail']}{evidence}", file=out)
    if error is not None:
        print(f"  error ({reason}): {without_router(error, name)}", file=out)
    if doc.get("summary") is not None:
        print(f"  result: {doc['summary']}", file=out)


def emit(report: RunReport, *, as_json: bool, out: TextIO = sys.stdout) -> None:
    if as_json:
        print(json.dumps(report.to_json(), indent=2), file=out)
    else:
        print_report(report, out=out)


# Exit status of plan and apply (README "Exit codes"): 3 is "not in sync yet, and nothing is wrong": a chain a
# router needs is seen but not confirmed yet. Run again after half the server's interval (the apply timer
# unit counts it a success: SuccessExitStatus=3).
EXIT_IN_SYNC, EXIT_NOT_IN_SYNC, EXIT_AWAITING_CONFIRMATION = 0, 1, 3


def exit_code(report: RunReport) -> int:
    """0 only when every router is in sync (proven, saved, every chain confirmed) and every chain trusted; 3 when
    the only thing missing is the confirmation of a chain on its way; 1 otherwise."""
    if report.untrusted_servers or not report.routers:
        return EXIT_NOT_IN_SYNC
    if all(r.in_sync for r in report.routers):
        return EXIT_IN_SYNC
    if all(r.in_sync or r.awaiting_confirmation for r in report.routers):
        return EXIT_AWAITING_CONFIRMATION
    return EXIT_NOT_IN_SYNC

