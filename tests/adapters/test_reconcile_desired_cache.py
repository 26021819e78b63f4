"""Desired trust is computed once for the routers that share its inputs, and never served after an input changed."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from eemwatchd.adapters.store import Store
from eemwatchd.config import Config, PrestageFile, parse_config
from eemwatchd.core.certificate import Certificate
from eemwatchd.core.desired import DesiredTrust
from eemwatchd.reconcile import Reconciler
from eemwatchd_lab.pki import GmailShapedPki
from tests.support.clock import NOW

ROUTER_PASSWORD = "lab-admin-pw-9"


@dataclass
class Setup:
    pki: GmailShapedPki
    config: Config
    store: Store
    reconciler: Reconciler
    ca_file: Path

    def see(self, chain: list[Certificate], path: list[Certificate], at: datetime, server: str = "lab") -> None:
        self.store.record_observation(server=server, address="127.0.0.1", chain=chain, verified=True, path=path,
                                      error=None, now=at)

    def desired(self, router: str, at: datetime) -> DesiredTrust:
        return asyncio.run(self.reconciler.desired_for(self.config.router(router), at))

    def write_anchors(self, anchors: list[Certificate], *, stamp: int) -> None:
        self.ca_file.write_text("".join(c.pem for c in anchors))
        os.utime(self.ca_file, ns=(stamp, stamp))  # a new version even within the file system's time grain


@pytest.fixture
def setup(tmp_path: Path, pki: GmailShapedPki) -> Iterator[Setup]:
    ca_file = tmp_path / "anchors.pem"
    ca_file.write_text(pki.old_root.cert.pem)
    (tmp_path / "router.pw").write_text(ROUTER_PASSWORD + "\n")
    (tmp_path / "known_hosts").write_text("")
    routers = "\n".join(
        f"""  - name: {name}
    host: 127.0.0.1
    port: {2200 + i}
    username: admin
    password_file: router.pw
    known_hosts: known_hosts
    applet: MAILTEST
    servers: [{servers}]"""
        for i, (name, servers) in enumerate([("r1", "lab"), ("r2", "lab"), ("r3", "lab, other")])
    )
    text = f"""
state_path: state.db
servers:
  - name: lab
    host: 127.0.0.1
    port: 2525
    mode: starttls
    interval: 10m
    ca_file: anchors.pem
  - name: other
    host: 127.0.0.1
    port: 2526
    mode: starttls
    interval: 10m
    ca_file: anchors.pem
routers:
{routers}
policy:
  confirmations: 2
  recent: 1d
alerts: []
"""
    config = parse_config(text, base=tmp_path).config
    with Store.open(config.state_path, secrets=[ROUTER_PASSWORD]) as store:
        yield Setup(pki, config, store, Reconciler(config, store, clock=lambda: NOW), ca_file)


def _served(pki: GmailShapedPki) -> tuple[list[Certificate], list[Certificate]]:
    """The served chain and its verified path through the cross-sign to the old root."""
    return pki.served, [*pki.served, pki.old_root.cert]


def test_routers_with_the_same_servers_share_one_computation(setup: Setup) -> None:
    chain, path = _served(setup.pki)
    setup.see(chain, path, NOW - timedelta(hours=2))
    setup.see(chain, path, NOW - timedelta(hours=1))
    r1 = setup.desired("r1", NOW)
    assert r1.certificates and not r1.holds
    assert setup.desired("r2", NOW) is r1  # the same servers and sightings: computed once
    assert setup.desired("r1", NOW + timedelta(minutes=5)) is r1  # later, nothing new seen: still the same
    r3 = setup.desired("r3", NOW)  # another server set
    assert r3 is not r1
    assert "other: no confirmed verified chain seen recently" in r3.holds


def test_a_new_sighting_is_never_hidden(setup: Setup) -> None:
    chain, path = _served(setup.pki)
    setup.see(chain, path, NOW - timedelta(hours=2))
    first = setup.desired("r1", NOW)
    assert not first.certificates and first.pending  # seen once of two
    setup.see(chain, path, NOW - timedelta(minutes=1))  # the confirming sighting
    confirmed = setup.desired("r1", NOW)
    assert confirmed is not first
    assert confirmed.certificates and not confirmed.pending
    assert setup.desired("r2", NOW) is confirmed


def test_a_new_chain_is_never_hidden(setup: Setup, pki: GmailShapedPki) -> None:
    chain, path = _served(pki)
    setup.see(chain, path, NOW - timedelta(hours=2))
    setup.see(chain, path, NOW - timedelta(hours=1))
    before = setup.desired("r1", NOW)
    rotated = GmailShapedPki.create(now=NOW, prefix="Rotated")  # another provider chain, other certificates
    new_chain = [rotated.leaf.cert, rotated.intermediate.cert, rotated.new_root_cross]
    setup.see(new_chain, [*new_chain, rotated.old_root.cert], NOW - timedelta(minutes=1))
    after = setup.desired("r1", NOW)
    assert after is not before
    assert after.pending_chains == (tuple(new_chain),)
    assert setup.desired("r2", NOW) is after


def test_new_anchors_are_never_hidden(setup: Setup, pki: GmailShapedPki) -> None:
    chain, path = _served(pki)
    setup.see(chain, path, NOW - timedelta(hours=2))
    setup.see(chain, path, NOW - timedelta(hours=1))
    before = setup.desired("r1", NOW)
    assert pki.new_root.cert.sha256 not in before.sha256s
    setup.write_anchors([pki.old_root.cert, pki.new_root.cert], stamp=1_700_000_000_000_000_000)
    after = setup.desired("r1", NOW)
    assert after is not before
    twin = after.get(pki.new_root.cert.sha256)  # the served cross-sign's self-signed twin, now in the store
    assert twin is not None and twin.role == "twin"
    assert setup.desired("r2", NOW) is after


def test_a_sighting_that_ages_out_is_never_served_from_the_cache(setup: Setup) -> None:
    chain, path = _served(setup.pki)
    setup.see(chain, path, NOW - timedelta(hours=2))
    setup.see(chain, path, NOW - timedelta(hours=1))
    fresh = setup.desired("r1", NOW)
    assert fresh.certificates
    later = NOW + timedelta(days=1)  # `recent` is 1d: the last sighting (NOW - 1h) no longer counts
    aged = setup.desired("r1", later)
    assert aged is not fresh
    assert not aged.certificates
    assert "lab: no confirmed verified chain seen recently" in aged.holds


def test_pre_staged_certificates_are_in_the_key(setup: Setup, pki: GmailShapedPki) -> None:
    """Every input of compute_desired is in the key: the same sightings with another pre-staged set are another
    desired trust (the config is fixed per reconciler today; the key does not rely on that)."""
    chain, path = _served(pki)
    setup.see(chain, path, NOW - timedelta(hours=2))
    setup.see(chain, path, NOW - timedelta(hours=1))
    before = setup.desired("r1", NOW)
    announced = GmailShapedPki.create(now=NOW, prefix="Announced").next_root.cert
    lab = setup.config.server("lab")
    staged = lab.model_copy(update={"prestage": (PrestageFile(file=Path("next.pem"), certificates=(announced,)),)})
    setup.reconciler.config = setup.config.model_copy(
        update={"servers": tuple(staged if s.name == "lab" else s for s in setup.config.servers)})
    after = setup.desired("r1", NOW)
    assert after is not before
    item = after.get(announced.sha256)
    assert item is not None and item.role == "prestaged"
    assert setup.desired("r2", NOW) is after
    assert setup.reconciler.prestaged_for(setup.config.router("r3"))[0].server == "lab"
