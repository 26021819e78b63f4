"""Issue 17 finding 7 (the smaller ones) and the store's side of finding 1, against real peers on 127.0.0.1:

- a newline in a certificate's CN cannot start a line of its own in the text log;
- a trustpoint named with the managed prefix whose name cannot be sent to IOS is a finding, not a failed refresh on
  every run;
- a peer that accepts TCP and never sends an SSH banner is a timeout after the connect timeout, not the total;
- right after an apply, a router is not `waiting` for a new chain that the trust it just received accepts;
- a sighting recorded while the wall clock ran ahead does not keep later sightings from counting.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from eemwatchd.adapters.store import Store
from eemwatchd.core.certificate import Certificate
from eemwatchd.core.reason import Reason
from eemwatchd.logformat import configure_logging
from eemwatchd.reconcile import Reconciler
from eemwatchd_lab.environment import MutePeer
from eemwatchd_lab.scenario import Lab

pytestmark = pytest.mark.timeout(60)

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


@pytest.fixture
async def small_lab(tmp_path: Path) -> AsyncIterator[Lab]:
    async with Lab(tmp_path / "lab", routers=1, say=lambda _text: None) as lab:
        document = yaml.safe_load(lab.config_path.read_text())
        document["policy"]["recent"] = "10m"
        document["alerts"] = []
        lab.config_path.write_text(yaml.safe_dump(document, sort_keys=False))
        yield lab


@pytest.fixture
def small_store(small_lab: Lab) -> Iterator[Store]:
    with Store.open(small_lab.config().state_path) as store:
        yield store


async def confirm(reconciler: Reconciler, lab: Lab, times: int = 2) -> None:
    """``times`` sightings of what the lab serves, spaced beyond half the server's interval."""
    for _ in range(times):
        await reconciler.observe()
        await asyncio.sleep(lab.config().servers[0].interval / 2 + 0.1)


def test_a_newline_in_a_certificate_cn_stays_on_its_log_line() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Evil CA\n2026-03-02 12:00:00,000 ERROR forged line")])
    der = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
           .serial_number(1).not_valid_before(NOW).not_valid_after(NOW + timedelta(days=1))
           .sign(key, hashes.SHA256()).public_bytes(serialization_der()))
    cert = Certificate(der)
    stream = io.StringIO()
    handler = configure_logging(verbosity=1, fmt="text", stream=stream, env={})
    try:
        logging.getLogger("eemwatchd.narrative").info("router r1: add EEMW-1 ok: %s", cert.subject)
    finally:
        logging.getLogger().removeHandler(handler)
    text = stream.getvalue()
    assert text.count("\n") == 1 and text.endswith("\n"), text
    assert "Evil CA\\n2026-03-02" in text and " ERROR forged" in text


def serialization_der() -> object:
    from cryptography.hazmat.primitives.serialization import Encoding

    return Encoding.DER


async def test_an_unsendable_managed_trustpoint_is_a_finding_not_a_failure_on_every_run(small_lab: Lab,
                                                                                          small_store: Store) -> None:
    lab = small_lab
    store = small_store
    device = next(iter(lab.fleet))
    # named like ours (the EEMW- prefix) by someone else, with a '.' IOS accepts but eemwatchd never sends
    device.state.apply_config(["crypto pki trustpoint EEMW-OLD.BACKUP", " enrollment terminal",
                               " revocation-check none"])
    reconciler = Reconciler(lab.config(), store)
    await confirm(reconciler, lab)
    for _run in range(2):
        report = await reconciler.run(apply=True)
        [result] = report.routers
        assert result.error is None, result.error
        assert result.in_sync, result.reason
        assert [f.rule for f in result.lint].count("EEM016-unsendable-trustpoint") == 1
        assert result.plan is not None and any(r.kind == "kept" and r.trustpoint == "EEMW-OLD.BACKUP"
                                               for r in result.plan.reports)
        assert not [a for a in report.alerts if a.event == "refresh_failed"]
    assert "crypto pki trustpoint EEMW-OLD.BACKUP" in device.state.config_lines()  # left alone


async def test_a_peer_that_never_sends_a_banner_is_a_connect_timeout(small_lab: Lab, small_store: Store) -> None:
    lab = small_lab
    store = small_store
    document = yaml.safe_load(lab.config_path.read_text())
    with MutePeer() as peer:
        document["routers"][0]["port"] = peer.port
        document["defaults"]["routers"]["timeouts"] = {"connect": "2s", "step": "20s", "total": "30s"}
        lab.config_path.write_text(yaml.safe_dump(document, sort_keys=False))
        config = lab.config()
        started = time.monotonic()
        result = await Reconciler(config, store).reconcile_router(config.routers[0], apply=True)
        took = time.monotonic() - started
    assert result.reason is Reason.TIMEOUT, (result.reason, result.error)
    assert took < 2.0 + 1.5, took
    assert peer.accepted == 1


async def test_right_after_an_apply_a_chain_the_new_trust_accepts_is_not_waiting(
    small_lab: Lab, small_store: Store
) -> None:
    lab = small_lab
    store = small_store
    reconciler = Reconciler(lab.config(), store)
    await confirm(reconciler, lab)  # the chain is confirmed; the router holds none of its CAs yet
    lab.pki.rotate_leaf()  # a new leaf under the same CAs: seen once, not confirmed, not accepted yet
    lab.serve()
    await reconciler.observe()
    [result] = (await reconciler.run(apply=True, observe=False)).routers
    assert result.error is None, result.error
    assert any(s.kind == "add" and s.ok for s in result.steps)
    # the CAs it just received accept the new leaf's chain too: nothing is waiting
    assert result.plan is not None and result.plan.waiting == ()
    assert result.reason is Reason.APPLIED and result.in_sync
    assert lab.mailing_now(list(lab.pki.served)) == [d.name for d in lab.fleet]


def test_a_sighting_recorded_ahead_of_the_clock_does_not_hold_later_ones_back(tmp_path: Path) -> None:
    from eemwatchd_lab.pki import GmailShapedPki

    pki = GmailShapedPki.create(now=NOW)
    with Store.open(tmp_path / "state.db") as store:
        def see(at: datetime) -> int:
            return store.record_observation(server="s", address="127.0.0.1", chain=pki.served, verified=True,
                                            path=pki.served, error=None, now=at,
                                            min_spacing=timedelta(minutes=30)).times_seen

        assert see(NOW + timedelta(days=1)) == 1  # the clock ran a day ahead
        assert see(NOW) == 2  # stepped back: a later sighting in real time, it counts
        assert see(NOW + timedelta(minutes=1)) == 2  # and spacing works from there as before
        assert see(NOW + timedelta(hours=1)) == 3
