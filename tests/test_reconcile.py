"""End to end: lab routers over real SSH, a real loopback SMTP server, the reconcile service and its store."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from eemwatchd.adapters.router import RouterSession, RouterTimeouts
from eemwatchd.adapters.store import Store
from eemwatchd.config import Config, RouterConfig, parse_config
from eemwatchd.core.certificate import Certificate
from eemwatchd.core.ios.formats import render_certificate_block
from eemwatchd.core.ios.trust import validate_as_ios
from eemwatchd.reconcile import Reconciler, RouterSessionLike, RunReport, target_from_config
from eemwatchd_lab.pki import GmailShapedPki, Issued, make_intermediate, make_leaf, make_root
from eemwatchd_lab.router import DeviceSpec, Fleet, User
from eemwatchd_lab.smtp import LabSmtpServer

APPLET = "MAILTEST"
SMTP_USER = "alerts"
SMTP_PASSWORD = "app-pass-Xq7"  # lab only; the tests check it never reaches the store
ROUTER_PASSWORD = "lab-admin-pw-9"


class Clock:
    """Our side's clock (store timestamps, recent, retention); certificates are judged at real time."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@dataclass
class Lab:
    tmp: Path
    pki: GmailShapedPki
    smtp: LabSmtpServer
    fleet: Fleet
    config: Config
    store: Store
    clock: Clock
    ca_file: Path

    def trustpoints(self, name: str) -> dict[str, list[Certificate]]:
        return {k: list(v) for k, v in self.fleet[name].state.trustpoint_certs().items()}

    def unmanaged(self, name: str) -> dict[str, list[Certificate]]:
        return {k: v for k, v in self.trustpoints(name).items() if not k.startswith("EEMW-")}

    def accepts(self, name: str, chain: Sequence[Certificate]) -> bool:
        return validate_as_ios(chain, self.trustpoints(name), datetime.now(UTC)).ok

    def write_anchors(self, anchors: Sequence[Certificate]) -> None:
        self.ca_file.write_text("".join(c.pem for c in anchors))

    async def run(self, *, apply: bool = True, router: str | None = None) -> RunReport:
        reconciler = Reconciler(self.config, self.store, connect=fast_connector, clock=self.clock)
        return await reconciler.run(apply=apply, router=router)


@contextlib.asynccontextmanager
async def fast_connector(router: RouterConfig) -> AsyncIterator[RouterSessionLike]:
    """The real SSH adapter, polling the log faster than the default so tests stay short."""
    target = dataclasses.replace(
        target_from_config(router),
        timeouts=RouterTimeouts(connect=5.0, command=10.0, poll_interval=0.2, fire_grace=2.0),
    )
    async with RouterSession(target) as session:
        yield session


def applet_config(smtp_port: int) -> list[str]:
    return [
        f"event manager environment _email_server {SMTP_USER}:{SMTP_PASSWORD}@127.0.0.1",
        f"event manager applet {APPLET}",
        " event none maxrun 20",
        f' action 0010 mail server "$_email_server" to "ops@lab.example" from "{SMTP_USER}@lab.example"'
        f' subject "eemwatchd test" body "test-fire" secure tls port {smtp_port}',
        f' action 0020 syslog msg "{APPLET} mail sent"',
    ]


def unmanaged_config(name: str, cert: Certificate) -> list[str]:
    return [
        f"crypto pki trustpoint {name}",
        " enrollment terminal",
        " revocation-check none",
        f"crypto pki certificate chain {name}",
        *(" " + line if not line.startswith(" ") else line for line in render_certificate_block(cert)),
    ]


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[Lab]:
    pki = GmailShapedPki.create()
    ca_file = tmp_path / "anchors.pem"
    ca_file.write_text("".join(c.pem for c in pki.anchors))
    (tmp_path / "router.pw").write_text(ROUTER_PASSWORD + "\n")
    specs = [
        DeviceSpec(name=n, state_dir=tmp_path / n, users=(User("admin", ROUTER_PASSWORD),))
        for n in ("r1", "r2")
    ]
    async with (
        LabSmtpServer(
            mode="starttls", certs=pki.served, key=pki.leaf.key, username=SMTP_USER, password=SMTP_PASSWORD
        ) as smtp,
        Fleet(specs) as fleet,
    ):
        known_hosts = tmp_path / "known_hosts"
        known_hosts.write_text("".join(d.known_hosts_line() + "\n" for d in fleet))
        for device in fleet:
            device.state.apply_config(applet_config(smtp.port))
        # r2 already trusts the old root in a trustpoint of its own (the tech note's CA-GlobalSign-Root).
        fleet["r2"].state.apply_config(unmanaged_config("CA-GlobalSign-Root", pki.old_root.cert))
        routers = "\n".join(
            f"""  - name: {d.name}
    host: 127.0.0.1
    port: {d.port}
    username: admin
    password_file: router.pw
    known_hosts: known_hosts
    applet: {APPLET}
    servers: [lab]"""
            for d in fleet
        )
        text = f"""
state_path: state.db
servers:
  - name: lab
    host: 127.0.0.1
    port: {smtp.port}
    mode: starttls
    interval: 10m
    ca_file: anchors.pem
routers:
{routers}
policy:
  confirmations: 2
  recent: 1d
  retention: 1d
"""
        (tmp_path / "eemwatchd.yaml").write_text(text)
        config = parse_config(text, base=tmp_path).config
        with Store.open(config.state_path, secrets=[ROUTER_PASSWORD, SMTP_PASSWORD]) as store:
            yield Lab(tmp_path, pki, smtp, fleet, config, store, Clock(), ca_file)
        for device in fleet:
            await device.state.cancel_jobs()


async def converge(lab: Lab) -> RunReport:
    """Two sightings (confirmations: 2) then the apply that acts on them."""
    first = await lab.run()
    assert all(r.plan is not None and not r.plan.actions for r in first.routers), "acted before confirmation"
    lab.clock.advance(timedelta(minutes=10))
    return await lab.run()


def names(report: RunReport, router: str) -> list[tuple[str, str]]:
    result = next(r for r in report.routers if r.name == router)
    assert result.plan is not None, result.error
    return [(a.kind, a.sha256) for a in result.plan.actions]


async def test_fresh_router_gets_trust_and_sends_mail_and_second_apply_changes_nothing(lab: Lab) -> None:
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


async def test_rotation_intermediate_then_root_never_loses_used_trust(lab: Lab) -> None:
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


async def test_unverified_chain_changes_nothing_and_is_reported(lab: Lab) -> None:
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


async def test_failed_test_fire_retires_nothing_and_next_run_converges(lab: Lab) -> None:
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


async def cli(lab: Lab, *args: str) -> tuple[int, str, str]:
    """`eemwatchd ARGS -c CONFIG` in a child process (stdin not a terminal), while the lab runs here."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "eemwatchd.cli",
        *args,
        "-c",
        str(lab.tmp / "eemwatchd.yaml"),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_cli_plan_apply_audit(lab: Lab) -> None:
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
