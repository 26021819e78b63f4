"""End to end: lab routers over real SSH, a real loopback SMTP server, the reconcile service and its store."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from eemwatchd.core.certificate import Certificate
from eemwatchd.reconcile import RunReport
from eemwatchd_lab.pki import GmailShapedPki, Issued, make_intermediate, make_leaf, make_root
from tests.support.reconcile_lab import ROUTER_PASSWORD, SMTP_PASSWORD, SMTP_USER, ReconcileLab, applet_config, cli


async def converge(lab: ReconcileLab) -> RunReport:
    """Two sightings (confirmations: 2) then the apply that acts on them."""
    first = await lab.run()
    assert all(r.plan is not None and not r.plan.actions for r in first.routers), "acted before confirmation"
    lab.clock.advance(timedelta(minutes=10))
    return await lab.run()


def names(report: RunReport, router: str) -> list[tuple[str, str]]:
    result = next(r for r in report.routers if r.name == router)
    assert result.plan is not None, result.error
    return [(a.kind, a.sha256) for a in result.plan.actions]


async def test_fresh_router_gets_trust_and_sends_mail_and_second_apply_changes_nothing(lab: ReconcileLab) -> None:
    pki = lab.pki
    assert not lab.accepts("r1", pki.served)
    unmanaged_before = {n: lab.unmanaged(n) for n in ("r1", "r2")}
    assert "SLA-TrustPoint" in unmanaged_before["r1"]

    report = await converge(lab)

    r1, r2 = report.routers
    assert (r1.error, r2.error) == (None, None)
    assert (r1.result, r2.result) == ("applied", "applied")
    assert {sha for _, sha in names(report, "r1")} == {
        pki.old_root.cert.sha256,
        pki.new_root.cert.sha256,
        pki.intermediate.cert.sha256,
    }
    # r2 holds the old root already in its own trustpoint: not installed twice, that trustpoint untouched.
    assert {sha for _, sha in names(report, "r2")} == {pki.new_root.cert.sha256, pki.intermediate.cert.sha256}
    assert lab.trustpoints("r2")["CA-GlobalSign-Root"] == [pki.old_root.cert]
    assert {n: lab.unmanaged(n) for n in ("r1", "r2")} == unmanaged_before
    for name in ("r1", "r2"):
        assert lab.accepts(name, pki.served)
    # each router's test-fire really sent a mail through the lab server, over TLS, authenticated
    messages = await lab.smtp.wait_for_messages(2, timeout=5)
    assert {m.login for m in messages} == {SMTP_USER} and all(m.tls for m in messages)

    document = report.to_json()
    router_doc = document["routers"][0]
    assert set(router_doc) >= {
        "name",
        "reachable",
        "error",
        "trustpoints",
        "actions",
        "in_sync",
        "lint",
        "result",
    }
    assert set(router_doc["actions"][0]) >= {"kind", "trustpoint", "sha256", "reason"}
    assert {tp["name"]: tp["managed"] for tp in document["routers"][1]["trustpoints"]}[
        "CA-GlobalSign-Root"
    ] is False

    audit_before = lab.store.audit()
    assert [e.action for e in audit_before if e.router == "r1"].count("add") == 3
    assert any(e.action == "test-fire" and e.test_fire == "ok" for e in audit_before)
    assert [e.action for e in audit_before if e.router == "r1"].count("save") == 1

    lab.clock.advance(timedelta(minutes=10))
    again = await lab.run()
    assert all(r.in_sync and r.result == "in-sync" and not r.steps for r in again.routers)
    assert lab.store.audit() == audit_before
    assert len(lab.smtp.messages) == len(messages)

    raw = b"".join(p.read_bytes() for p in lab.tmp.glob("state.db*"))
    assert ROUTER_PASSWORD.encode() not in raw
    assert SMTP_PASSWORD.encode() not in raw


def new_root_chain(under: Issued) -> tuple[Issued, Issued, Issued]:
    now = datetime.now(UTC)
    root = under
    inter = make_intermediate("Lab WR4", by=root, now=now)
    leaf = make_leaf(["localhost", "127.0.0.1"], by=inter, now=now)
    return root, inter, leaf


async def test_rotation_intermediate_then_root_never_loses_used_trust(lab: ReconcileLab) -> None:
    pki = lab.pki
    await converge(lab)
    original = list(pki.served)
    unmanaged_before = {n: lab.unmanaged(n) for n in ("r1", "r2")}

    def check(using: Sequence[Sequence[Certificate]]) -> None:
        for name in ("r1", "r2"):
            for chain in using:
                assert lab.accepts(name, chain), f"{name} lost trust for {[c.common_name for c in chain]}"

    # --- 1. new intermediate under the same root (GTS CA 1C3 -> WR2) ---------------------------------
    pki.rotate_intermediate("Lab WR2")
    rotated = list(pki.served)
    lab.smtp.set_chain(rotated, pki.leaf.key)
    check([original, rotated])  # the roots installed before already cover it (strict IOS rule)
    lab.clock.advance(timedelta(hours=1))
    report = await converge(lab)
    assert {sha for _, sha in names(report, "r1")} == {pki.intermediate.cert.sha256}
    check([original, rotated])  # old chain still recent: old intermediate kept
    # old chain ages out of `recent`; then retention runs; then it is retired
    lab.clock.advance(timedelta(days=1, hours=1))
    report = await lab.run()
    assert all(r.plan is not None and not r.plan.retires for r in report.routers)
    check([rotated])
    lab.clock.advance(timedelta(days=1, hours=1))
    report = await lab.run()
    assert [k for k, _ in names(report, "r1")] == ["retire"]
    assert all(r.result == "applied" for r in report.routers), [r.error for r in report.routers]
    check([rotated])

    # --- 2. a new root without cross-sign: routers cannot send until apply brings them back --------------
    root4 = make_root("Lab Root R4", now=datetime.now(UTC))
    _, inter4, leaf4 = new_root_chain(root4)
    lab.write_anchors([*pki.anchors, root4.cert])
    served4 = [leaf4.cert, inter4.cert]
    lab.smtp.set_chain(served4, leaf4.key)
    assert not lab.accepts("r1", served4)
    lab.clock.advance(timedelta(hours=1))
    report = await converge(lab)
    assert {sha for _, sha in names(report, "r1")} == {root4.cert.sha256, inter4.cert.sha256}
    assert all(r.result == "applied" for r in report.routers)
    check([rotated, served4])
    lab.clock.advance(timedelta(days=1, hours=1))
    await lab.run()
    lab.clock.advance(timedelta(days=1, hours=1))
    report = await lab.run()
    retired = {sha for kind, sha in names(report, "r1") if kind == "retire"}
    assert retired == {pki.old_root.cert.sha256, pki.new_root.cert.sha256, pki.intermediate.cert.sha256}
    check([served4])
    # unmanaged trustpoints are never touched, even when their certificates are no longer needed
    assert {n: lab.unmanaged(n) for n in ("r1", "r2")} == unmanaged_before
    assert lab.trustpoints("r2")["CA-GlobalSign-Root"] == [pki.old_root.cert]
    lab.clock.advance(timedelta(minutes=10))
    final = await lab.run()
    assert all(r.in_sync for r in final.routers)


async def test_unverified_chain_changes_nothing_and_is_reported(lab: ReconcileLab) -> None:
    await converge(lab)
    before = {n: lab.trustpoints(n) for n in ("r1", "r2")}
    audit_before = lab.store.audit()
    intruder = GmailShapedPki.create(prefix="Intruder")
    lab.smtp.set_chain(intruder.served, intruder.leaf.key)
    for _ in range(3):
        lab.clock.advance(timedelta(days=1, hours=1))  # past recent and retention: the good chain ages out
        report = await lab.run()
        assert report.events, "an unverified chain must be reported"
        assert all(r.plan is not None and not r.plan.actions for r in report.routers)
        assert any(e.startswith("security event: lab 127.0.0.1") for e in report.events)
    assert {n: lab.trustpoints(n) for n in ("r1", "r2")} == before
    assert lab.store.audit() == audit_before


async def test_failed_test_fire_retires_nothing_and_next_run_converges(lab: ReconcileLab) -> None:
    pki = lab.pki
    await converge(lab)
    old_inter = pki.intermediate.cert
    pki.rotate_intermediate("Lab WR2")
    lab.smtp.set_chain(pki.served, pki.leaf.key)
    lab.clock.advance(timedelta(hours=1))
    await converge(lab)
    lab.clock.advance(timedelta(days=1, hours=1))
    await lab.run()  # the old intermediate is unneeded from now on
    lab.clock.advance(timedelta(days=1, hours=1))
    # the applet breaks (wrong SMTP password): the test-fire before retiring must fail
    lab.fleet["r1"].state.apply_config(
        [f"event manager environment _email_server {SMTP_USER}:wrong@127.0.0.1"]
    )
    before = lab.trustpoints("r1")
    report = await lab.run(router="r1")
    [r1] = report.routers
    assert [k for k, _ in names(report, "r1")] == ["retire"]
    assert r1.result == "failed" and r1.error is not None and "test-fire failed" in r1.error
    assert lab.trustpoints("r1") == before
    assert any(tp == [old_inter] for tp in before.values())
    r1_audit = lab.store.audit(router="r1")
    assert r1_audit[-1].action == "test-fire" and (r1_audit[-1].test_fire or "").startswith("failed")
    assert "retire" not in [e.action for e in r1_audit]
    # fixed: the next run retires
    lab.fleet["r1"].state.apply_config(applet_config(lab.smtp.port)[:1])
    lab.clock.advance(timedelta(minutes=10))
    report = await lab.run(router="r1")
    assert report.routers[0].result == "applied", report.routers[0].error
    assert all(tp != [old_inter] for tp in lab.trustpoints("r1").values())


async def test_cli_plan_apply_audit(lab: ReconcileLab) -> None:
    # the CLI runs on the real clock: fetch every second, so sightings half a second apart count
    config_file = lab.tmp / "eemwatchd.yaml"
    config_file.write_text(config_file.read_text().replace("interval: 10m", "interval: 1s"))
    code, out, _ = await cli(lab, "plan", "--json")
    # First sighting: nothing to act on yet, and no router is in sync while the server has no confirmed
    # chain (r2 already accepts it, through its own trustpoint, but nothing proves what it will need).
    first = json.loads(out)["routers"]
    assert code == 3  # not in sync, and nothing is wrong: the chain awaits its confirmation
    assert [len(r["actions"]) for r in first] == [0, 0]
    assert [r["in_sync"] for r in first] == [False, False]
    assert [r["reason"] for r in first] == ["unconfirmed", "unconfirmed"]
    assert any(r["kind"] == "pending" and "not accepted by the router yet" in r["message"] for r in first[0]["reports"])
    assert any(r["kind"] == "pending" and "not accepted" not in r["message"] for r in first[1]["reports"])
    await asyncio.sleep(0.6)
    code, out, _ = await cli(lab, "plan", "--json")
    doc = json.loads(out)
    assert code == 1
    assert [len(r["actions"]) for r in doc["routers"]] == [3, 2]
    assert all(r["reachable"] and r["error"] is None and not r["in_sync"] for r in doc["routers"])
    assert lab.trustpoints("r1") == lab.unmanaged("r1")  # plan changed nothing

    code, _, err = await cli(lab, "apply")
    assert code == 2 and "not a terminal" in err
    assert lab.trustpoints("r1") == lab.unmanaged("r1")

    code, out, err = await cli(lab, "apply", "--yes", "--json", "--router", "r1")
    doc = json.loads(out)
    assert code == 0, err
    assert [r["name"] for r in doc["routers"]] == ["r1"]
    assert doc["routers"][0]["result"] == "applied"
    assert lab.accepts("r1", lab.pki.served)

    code, out, _ = await cli(lab, "plan", "--router", "r1")
    assert code == 0 and "in sync" in out
    code, out, _ = await cli(lab, "audit", "--json", "--router", "r1")
    entries = json.loads(out)["entries"]
    assert code == 0
    assert [e["action"] for e in entries].count("add") == 3
    assert set(entries[0]) >= {
        "at",
        "router",
        "action",
        "trustpoint",
        "sha256_before",
        "sha256_after",
        "test_fire",
        "reason",
    }
    code, _, err = await cli(lab, "plan", "--router", "nope")
    assert code == 2 and "unknown router" in err
    for text in (out, err):
        assert ROUTER_PASSWORD not in text and SMTP_PASSWORD not in text
