"""Pre-staging over the lab (issue 20): lab routers over real SSH, real test mails, the real Reconciler.

A pre-staged root is installed like the path's (its own managed trustpoint, proven by a test-fire, saved), shown
as `prestaged` in plan and --json, kept while configured, and retired only after a test-fire once it leaves the
config. "The router can mail" is judged by the lab's own trust rule (`lab.accepts`) and by mails that arrived.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from eemwatchd.config import load_config, parse_config
from eemwatchd.daemon.reload import load_instance
from eemwatchd.errors import ConfigError
from eemwatchd.reconcile import RunReport
from eemwatchd_lab.pki import make_intermediate, make_leaf, make_root
from tests.support.reconcile_lab import ReconcileLab, cli


def prestage(lab: ReconcileLab, entries: list[object]) -> None:
    """Set `servers[0].prestage` in the lab's config file and load it again (as a reload would)."""
    path = lab.tmp / "eemwatchd.yaml"
    document = yaml.safe_load(path.read_text())
    document["servers"][0]["prestage"] = entries
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    lab.config = parse_config(path.read_text(), base=lab.tmp).config


async def converge(lab: ReconcileLab) -> RunReport:
    await lab.run()
    lab.clock.advance(timedelta(minutes=10))
    return await lab.run()


def actions(report: RunReport, router: str) -> list[tuple[str, str, str | None]]:
    result = next(r for r in report.routers if r.name == router)
    assert result.plan is not None, result.error
    return [(a.kind, a.sha256, a.role) for a in result.plan.actions]


async def test_a_pre_staged_root_is_installed_proven_saved_kept_and_retired_after_a_test_fire_once_removed(
    lab: ReconcileLab,
) -> None:
    announced = make_root("Lab Announced Root R9", now=datetime.now(UTC))
    (lab.tmp / "announced.pem").write_text(announced.cert.pem)
    lab.write_anchors([*lab.pki.anchors, announced.cert])  # as OS trust stores carry announced roots
    prestage(lab, ["announced.pem"])

    report = await converge(lab)
    for name in ("r1", "r2"):
        assert ("add", announced.cert.sha256, "prestaged") in actions(report, name)
        result = next(r for r in report.routers if r.name == name)
        assert result.result == "applied", result.error
        held = lab.trustpoints(name)
        [holder] = [tp for tp, certs in held.items() if certs == [announced.cert]]
        assert holder == "EEMW-" + announced.cert.short_fingerprint  # the same naming as every managed trustpoint
        assert lab.accepts(name, lab.pki.served)
        startup = lab.fleet[name].state.startup_config() or ""
        assert f"crypto pki trustpoint {holder}" in startup  # saved, after the test-fire proved it harmless
    r1_audit = [e for e in lab.store.audit(router="r1") if e.action in ("add", "test-fire", "save")]
    added = next(i for i, e in enumerate(r1_audit) if e.sha256_after == announced.cert.sha256)
    assert r1_audit[added].reason.startswith("prestaged: pre-staged for lab (")
    assert [e.action for e in r1_audit[added:]][-2:] == ["test-fire", "save"]

    # --json: the role of what each trustpoint holds, and which chains using the root the router accepts today
    document = report.to_json()["routers"][0]
    roles = {c["sha256"]: c["role"] for tp in document["trustpoints"] for c in tp["certs"]}
    assert roles[announced.cert.sha256] == "prestaged"
    assert roles[lab.pki.intermediate.cert.sha256] == "intermediate"
    [staged] = document["prestaged"]
    assert staged["trustpoint"] == holder and staged["server"] == "lab"
    assert {c["shape"]: c["accepted"] for c in staged["chains"]} == {
        "signed-by": True, "on-top": True, "cross-signed-on-top": None}

    # kept while configured: retention and chain changes do not touch it
    lab.clock.advance(timedelta(days=3))
    again = await lab.run()
    assert all(not r.plan.actions for r in again.routers if r.plan is not None)
    assert all(r.in_sync for r in again.routers), [r.reason for r in again.routers]

    # removed from the config: unneeded from now, retired after retention, and only after a test-fire
    prestage(lab, [])
    lab.clock.advance(timedelta(minutes=10))
    kept = await lab.run()
    assert all(not r.plan.retires for r in kept.routers if r.plan is not None)
    lab.clock.advance(timedelta(days=1, hours=1))
    retired = await lab.run()
    for name in ("r1", "r2"):
        assert actions(retired, name) == [("retire", announced.cert.sha256, None)]
        assert announced.cert not in [c for certs in lab.trustpoints(name).values() for c in certs]
        assert lab.accepts(name, lab.pki.served)
        steps = [s.kind for s in next(r for r in retired.routers if r.name == name).steps]
        assert steps == ["test-fire", "retire", "test-fire", "save"], steps
    tail = [(e.action, e.test_fire) for e in lab.store.audit(router="r1")][-4:]
    assert tail == [("test-fire", "ok"), ("retire", None), ("test-fire", "ok"), ("save", None)]
    retire_row = lab.store.audit(router="r1")[-3]
    assert retire_row.sha256_before == announced.cert.sha256
    assert "no longer needed (on no chain in use, not pre-staged)" in retire_row.reason


async def test_plan_says_per_server_and_pre_staged_root_which_future_chains_the_routers_accept(
    lab: ReconcileLab,
) -> None:
    now = datetime.now(UTC)
    announced = make_root("Lab Announced Root R7", now=now)
    (lab.tmp / "announced.pem").write_text(announced.cert.pem)
    prestage(lab, [{"file": "announced.pem", "sha256": announced.cert.sha256}])  # pinned: not in the trust store
    await converge(lab)

    code, out, err = await cli(lab, "plan")
    assert code == 0, out + err
    assert "  prestaged " + announced.cert.short_fingerprint + " Lab Announced Root R7 for lab: held in EEMW-" in out
    assert f"pre-staged for lab: {announced.cert.describe()}: held by 2/2 router(s)" in out
    assert "  the top sent certificate is signed by Lab Announced Root R7 (not sent): 2/2 accept" in out
    assert "  Lab Announced Root R7 itself sent on top: 2/2 accept" in out
    assert "  a cross-sign of Lab Announced Root R7 by another CA sent on top: 0/2 accept, 2 cannot tell" in out

    # the lab's own rule agrees, on real chains of the first two shapes (the lab holds the provider's keys)
    inter = make_intermediate("Lab Announced CA", by=announced, now=now)
    leaf = make_leaf(lab.pki.hostnames, by=inter, now=now).cert
    for name in ("r1", "r2"):
        assert lab.accepts(name, [leaf, inter.cert])
        assert lab.accepts(name, [leaf, inter.cert, announced.cert])

    code, out, _ = await cli(lab, "plan", "--json")
    chains = json.loads(out)["routers"][0]["prestaged"][0]["chains"]
    assert [c["accepted"] for c in chains] == [True, True, None]


def test_check_config_refuses_what_cannot_be_pre_staged_and_names_key_file_and_reason(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    root = make_root("Lab Root", now=now)
    server_cert = make_leaf(["smtp.example"], by=root, now=now).cert
    expired = make_root("Lab Old Root", now=now - timedelta(days=400), days=100).cert
    stranger = make_root("Lab Stranger Root", now=now).cert
    (tmp_path / "store.pem").write_text(root.cert.pem)
    for name, cert in {"server.pem": server_cert, "expired.pem": expired, "stranger.pem": stranger}.items():
        (tmp_path / name).write_text(cert.pem)
    (tmp_path / "unchanged.yaml").write_text("servers: [{name: gmail, host: smtp.gmail.com}]\n")
    config = tmp_path / "eemwatchd.yaml"
    config.write_text(f"""
servers:
  - name: gmail
    host: smtp.gmail.com
    ca_file: store.pem
    prestage: [server.pem, expired.pem, stranger.pem, {{file: stranger.pem, sha256: "{stranger.sha256}"}}]
""")
    done = subprocess.run([sys.executable, "-m", "eemwatchd.cli", "check-config", "-c", str(config)],
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 2, done.stdout + done.stderr
    lines = [line.strip() for line in done.stderr.splitlines() if "prestage" in line]
    assert len(lines) == 3, done.stderr
    assert lines[0].startswith(f"servers[0].prestage[0]: {tmp_path / 'server.pem'}: ")
    assert "is not a CA certificate" in lines[0]
    assert lines[1].startswith("servers[0].prestage[1]:") and "expired on" in lines[1]
    assert lines[2].startswith("servers[0].prestage[2]:") and "not in the trust store" in lines[2]
    # pinned, the same root is accepted although it does not chain to the trust store
    config.write_text(config.read_text().replace("server.pem, expired.pem, stranger.pem, ", ""))
    done = subprocess.run([sys.executable, "-m", "eemwatchd.cli", "check-config", "-c", str(config)],
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    assert f"  pre-staged for gmail: {stranger.describe()} ({tmp_path / 'stranger.pem'})" in done.stdout
    # and the daemon's reload reads the files again: a file changed into a server certificate is refused there
    (tmp_path / "stranger.pem").write_text(server_cert.pem)
    with pytest.raises(ConfigError, match=r"servers\[0\]\.prestage\[0\]: .*stranger\.pem: .*is not a CA certificate"):
        load_instance(config, shard=None, listen=None, running=load_config(tmp_path / "unchanged.yaml").config)
