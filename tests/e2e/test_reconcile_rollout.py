"""A provider rollout (two addresses, two chains) and one bad router among good ones, against real loopback peers.

The whole of 127.0.0.0/8 is local on Linux: two lab SMTP servers share one port number on 127.0.0.1 and
127.0.0.2, and a fake resolver hands out both addresses for ``smtp.lab.example``. Nothing leaves loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from eemwatchd.adapters.smtp import AddressResult, fetch_server
from eemwatchd.adapters.store import Store
from eemwatchd.config import Config, ServerConfig, parse_config
from eemwatchd.core.certificate import Certificate
from eemwatchd.core.ios.trust import validate_as_ios
from eemwatchd.reconcile import Reconciler, RouterResult, RunReport
from eemwatchd_lab.pki import GmailShapedPki
from eemwatchd_lab.router import DeviceSpec, Fleet, User
from eemwatchd_lab.router.faults import Faults
from eemwatchd_lab.smtp import LabSmtpServer
from tests.support.reconcile_lab import Clock, fast_connector

NAME = "smtp.lab.example"
OLD_ADDRESS, NEW_ADDRESS = "127.0.0.1", "127.0.0.2"
APPLET = "MAILTEST"
SMTP_USER = "alerts"
SMTP_PASSWORD = "app-pass-Rl4"  # lab only
ROUTER_PASSWORD = "lab-admin-pw-R"


async def both_addresses(host: str, port: int) -> list[str]:
    """The rollout's DNS answer: the name has two A records."""
    assert host == NAME
    return [OLD_ADDRESS, NEW_ADDRESS]


@dataclass
class Pair:
    """Two lab SMTP servers on one port number: ``old`` on 127.0.0.1, ``new`` on 127.0.0.2."""

    old: LabSmtpServer
    new: LabSmtpServer

    @property
    def port(self) -> int:
        return self.old.port


@contextlib.asynccontextmanager
async def server_pair(
    old_chain: Sequence[Certificate],
    old_key: PrivateKeyTypes,
    new_chain: Sequence[Certificate],
    new_key: PrivateKeyTypes,
    *,
    username: str | None = None,
    password: str | None = None,
) -> AsyncIterator[Pair]:
    """Bind 127.0.0.1 to any free port, then 127.0.0.2 to the same number; retry when that is taken."""
    last: OSError | None = None
    for _ in range(5):
        old = LabSmtpServer(
            mode="starttls", certs=old_chain, key=old_key, host=OLD_ADDRESS, username=username, password=password
        )
        await old.start()
        new = LabSmtpServer(
            mode="starttls",
            certs=new_chain,
            key=new_key,
            host=NEW_ADDRESS,
            port=old.port,
            username=username,
            password=password,
        )
        try:
            await new.start()
        except OSError as exc:  # the port number is taken on 127.0.0.2 (or on every address)
            last = exc
            await old.stop()
            continue
        try:
            yield Pair(old, new)
        finally:
            await new.stop()
            await old.stop()
        return
    raise RuntimeError(f"no port free on both {OLD_ADDRESS} and {NEW_ADDRESS}: {last}")


def shas(chain: Sequence[Certificate]) -> list[str]:
    return [c.sha256 for c in chain]


# --- a. every address reported on its own ----------------------------------------------------------------


async def test_fetch_server_reports_each_address_with_its_own_chain() -> None:
    pki = GmailShapedPki.create()
    old_chain, old_key = list(pki.served), pki.leaf.key
    pki.rotate_intermediate("Lab WR2")
    new_chain, new_key = list(pki.served), pki.leaf.key
    assert shas(old_chain) != shas(new_chain)

    async with server_pair(old_chain, old_key, new_chain, new_key) as pair:
        results = await fetch_server(NAME, pair.port, mode="starttls", resolve=both_addresses)

    assert [(r.address, r.port, r.error) for r in results] == [
        (OLD_ADDRESS, pair.port, None),
        (NEW_ADDRESS, pair.port, None),
    ]
    by_address = {r.address: r for r in results}
    assert shas(by_address[OLD_ADDRESS].chain) == shas(old_chain)  # exactly as served: order kept
    assert shas(by_address[NEW_ADDRESS].chain) == shas(new_chain)
    assert (pair.old.connections, pair.new.connections) == (1, 1)


async def test_fetch_server_resolver_seam_reports_a_dead_address_on_its_own() -> None:
    pki = GmailShapedPki.create()
    async with LabSmtpServer(mode="starttls", certs=pki.served, key=pki.leaf.key) as smtp:

        async def with_dead(host: str, port: int) -> list[str]:
            return [OLD_ADDRESS, NEW_ADDRESS]  # nothing listens on 127.0.0.2 at this port

        results = await fetch_server(NAME, smtp.port, mode="starttls", resolve=with_dead)
    ok, dead = results
    assert ok.ok and shas(ok.chain) == shas(pki.served)
    assert not dead.ok and dead.error is not None and NEW_ADDRESS in str(dead.error)
    assert "refused" in str(dead.error)


# --- b. reconcile during a rollout -------------------------------------------------------------------------


def applet_config(address: str, port: int) -> list[str]:
    """An applet that mails through ``address`` (each lab router uses a different one of the two)."""
    return [
        f"event manager environment _email_server {SMTP_USER}:{SMTP_PASSWORD}@{address}",
        f"event manager applet {APPLET}",
        " event none maxrun 20",
        f' action 0010 mail server "$_email_server" to "ops@lab.example" from "{SMTP_USER}@lab.example"'
        f' subject "eemwatchd test" body "test-fire" secure tls port {port}',
        f' action 0020 syslog msg "{APPLET} mail sent"',
    ]


def router_yaml(name: str, port: int) -> str:
    return f"""  - name: {name}
    host: 127.0.0.1
    port: {port}
    username: admin
    password_file: router.pw
    known_hosts: known_hosts
    applet: {APPLET}
    servers: [lab]"""


def config_text(*, smtp_host: str, smtp_port: int, routers: Sequence[str], confirmations: int) -> str:
    return f"""
state_path: state.db
servers:
  - name: lab
    host: {smtp_host}
    port: {smtp_port}
    mode: starttls
    interval: 10m
    ca_file: anchors.pem
routers:
{chr(10).join(routers)}
policy:
  confirmations: {confirmations}
  recent: 1d
  retention: 1d
"""


async def rollout_fetcher(server: ServerConfig) -> list[AddressResult]:
    """The real fetch, with the rollout's resolver."""
    return await fetch_server(
        server.host,
        server.effective_port,
        mode=server.mode,
        servername=server.servername,
        resolve=both_addresses,
    )


def result_of(report: RunReport, name: str) -> RouterResult:
    return next(r for r in report.routers if r.name == name)


def fired_ok(result: RouterResult) -> bool:
    fires = [s for s in result.steps if s.kind == "test-fire"]
    return bool(fires) and all(s.ok for s in fires)


async def test_reconcile_during_rollout_trusts_both_chains_then_retires_the_old(tmp_path: Path) -> None:
    pki = GmailShapedPki.create()
    old_chain, old_key, old_inter = list(pki.served), pki.leaf.key, pki.intermediate.cert
    pki.rotate_intermediate("Lab WR2")
    new_chain, new_key, new_inter = list(pki.served), pki.leaf.key, pki.intermediate.cert
    (tmp_path / "anchors.pem").write_text("".join(c.pem for c in pki.anchors))
    (tmp_path / "router.pw").write_text(ROUTER_PASSWORD + "\n")
    specs = [
        DeviceSpec(name=n, state_dir=tmp_path / n, users=(User("admin", ROUTER_PASSWORD),)) for n in ("r1", "r2")
    ]
    mails_via = {"r1": OLD_ADDRESS, "r2": NEW_ADDRESS}
    async with (
        server_pair(old_chain, old_key, new_chain, new_key, username=SMTP_USER, password=SMTP_PASSWORD) as pair,
        Fleet(specs) as fleet,
    ):
        (tmp_path / "known_hosts").write_text("".join(d.known_hosts_line() + "\n" for d in fleet))
        for device in fleet:
            device.state.apply_config(applet_config(mails_via[device.name], pair.port))
        text = config_text(
            smtp_host=NAME, smtp_port=pair.port, routers=[router_yaml(d.name, d.port) for d in fleet], confirmations=2
        )
        config = parse_config(text, base=tmp_path).config
        clock = Clock()

        def trustpoints(name: str) -> dict[str, list[Certificate]]:
            return {k: list(v) for k, v in fleet[name].state.trustpoint_certs().items()}

        def accepts(name: str, chain: Sequence[Certificate]) -> bool:
            return validate_as_ios(chain, trustpoints(name), datetime.now(UTC)).ok

        try:
            with Store.open(config.state_path, secrets=[ROUTER_PASSWORD, SMTP_PASSWORD]) as store:
                reconciler = Reconciler(config, store, connect=fast_connector, fetch=rollout_fetcher, clock=clock)

                async def run() -> RunReport:
                    report = await reconciler.run(apply=True)
                    for r in report.routers:
                        assert r.error is None, f"{r.name}: {r.error}"
                    return report

                # 1. both addresses, each with its own chain, seen twice: the routers learn both
                first = await run()
                [server] = first.servers
                assert {(a.address, a.chain, a.verified) for a in server.addresses} == {
                    (OLD_ADDRESS, tuple(shas(old_chain)), True),
                    (NEW_ADDRESS, tuple(shas(new_chain)), True),
                }
                assert all(r.plan is not None and not r.plan.actions for r in first.routers)
                clock.advance(timedelta(minutes=10))
                report = await run()
                for name in ("r1", "r2"):
                    result = result_of(report, name)
                    assert result.result == "applied" and fired_ok(result), result.steps
                    assert result.plan is not None
                    added = {a.sha256 for a in result.plan.adds}
                    assert {old_inter.sha256, new_inter.sha256} <= added
                    held = {c.sha256 for certs in trustpoints(name).values() for c in certs}
                    assert {old_inter.sha256, new_inter.sha256} <= held
                    assert accepts(name, old_chain) and accepts(name, new_chain)
                await pair.old.wait_for_messages(1, timeout=5)
                await pair.new.wait_for_messages(1, timeout=5)

                # 2. the old address moves to the new chain; the old chain is still recent: nothing retired
                pair.old.set_chain(new_chain, new_key)
                clock.advance(timedelta(hours=1))
                report = await run()
                [server] = report.servers
                assert {a.chain for a in server.addresses} == {tuple(shas(new_chain))}
                assert all(r.plan is not None and not r.plan.actions for r in report.routers)
                assert all(accepts(n, old_chain) and accepts(n, new_chain) for n in ("r1", "r2"))

                # 3. the old chain ages out of `recent` (unneeded from now), then retention runs out
                clock.advance(timedelta(days=1, hours=1))
                report = await run()
                assert all(r.plan is not None and not r.plan.retires for r in report.routers)
                clock.advance(timedelta(days=1, hours=1))
                before = (len(pair.old.messages), len(pair.new.messages))
                report = await run()
                for name in ("r1", "r2"):
                    result = result_of(report, name)
                    assert result.plan is not None
                    assert [(a.kind, a.sha256) for a in result.plan.actions] == [("retire", old_inter.sha256)]
                    assert result.result == "applied" and fired_ok(result), result.steps
                    held = {c.sha256 for certs in trustpoints(name).values() for c in certs}
                    assert old_inter.sha256 not in held and new_inter.sha256 in held
                    assert accepts(name, new_chain)
                # mail still works through both addresses after the retirement
                await pair.old.wait_for_messages(before[0] + 1, timeout=5)
                await pair.new.wait_for_messages(before[1] + 1, timeout=5)
                assert all(m.tls and m.login == SMTP_USER for m in (*pair.old.messages, *pair.new.messages))

                clock.advance(timedelta(minutes=10))
                final = await run()
                assert all(r.in_sync and not r.steps for r in final.routers)
        finally:
            for device in fleet:
                await device.state.cancel_jobs()


# --- c. one bad router never stops a cycle ------------------------------------------------------------------


def free_port() -> int:
    """A loopback port with nothing listening (bound once, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def cli_apply(tmp_path: Path) -> tuple[int, dict[str, object], str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "eemwatchd.cli",
        "apply",
        "--yes",
        "--json",
        "-c",
        str(tmp_path / "eemwatchd.yaml"),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode is not None
    return proc.returncode, json.loads(out), err.decode()


@pytest.mark.parametrize(
    ("case", "cause"),
    # the router adapter words a refused TCP connect as the OS does ("[Errno 111] Connect call failed")
    [("nothing-listening", ("refused", "connect call failed")), ("login-refused", ("was refused",))],
    # (the reason code in `result` names the failure: unreachable, or auth-failed for a refused login)
    ids=["nothing-listening", "login-refused"],
)
async def test_one_bad_router_never_stops_a_cycle(tmp_path: Path, case: str, cause: tuple[str, ...]) -> None:
    pki = GmailShapedPki.create()
    (tmp_path / "anchors.pem").write_text("".join(c.pem for c in pki.anchors))
    (tmp_path / "router.pw").write_text(ROUTER_PASSWORD + "\n")
    users = (User("admin", ROUTER_PASSWORD),)
    specs = [DeviceSpec(name="good", state_dir=tmp_path / "good", users=users)]
    if case == "login-refused":
        specs.append(
            DeviceSpec(name="bad", state_dir=tmp_path / "bad", users=users, faults=Faults(refuse_login=True))
        )
    async with (
        LabSmtpServer(
            mode="starttls", certs=pki.served, key=pki.leaf.key, username=SMTP_USER, password=SMTP_PASSWORD
        ) as smtp,
        Fleet(specs) as fleet,
    ):
        (tmp_path / "known_hosts").write_text("".join(d.known_hosts_line() + "\n" for d in fleet))
        for device in fleet:
            device.state.apply_config(applet_config(OLD_ADDRESS, smtp.port))
        bad_port = fleet["bad"].port if case == "login-refused" else free_port()
        text = config_text(
            smtp_host=OLD_ADDRESS,
            smtp_port=smtp.port,
            routers=[router_yaml("good", fleet["good"].port), router_yaml("bad", bad_port)],
            confirmations=1,
        )
        (tmp_path / "eemwatchd.yaml").write_text(text)
        config: Config = parse_config(text, base=tmp_path).config
        try:
            with Store.open(config.state_path, secrets=[ROUTER_PASSWORD, SMTP_PASSWORD]) as store:
                report = await Reconciler(config, store, connect=fast_connector).run(apply=True)
            assert [r.name for r in report.routers] == ["good", "bad"]
            good, bad = report.routers
            assert good.error is None and good.result == "applied" and fired_ok(good), good.steps
            assert validate_as_ios(
                pki.served, fleet["good"].state.trustpoint_certs(), datetime.now(UTC)
            ).ok
            await smtp.wait_for_messages(1, timeout=5)
            word = {"nothing-listening": "unreachable", "login-refused": "auth-failed"}[case]
            assert not bad.reachable and bad.result == word and not bad.steps
            assert bad.error is not None
            assert "bad" in bad.error, bad.error  # names the router
            assert any(c in bad.error.lower() for c in cause), bad.error  # and the cause

            code, doc, err = await cli_apply(tmp_path)
            assert code != 0, err
            routers = doc["routers"]
            assert isinstance(routers, list)
            by_name = {r["name"]: r for r in routers}
            assert list(by_name) == ["good", "bad"]
            assert by_name["good"]["error"] is None and by_name["good"]["result"] in ("applied", "in-sync")
            assert by_name["bad"]["reachable"] is False and by_name["bad"]["result"] == word
            bad_error = str(by_name["bad"]["error"])
            assert "bad" in bad_error and any(c in bad_error.lower() for c in cause), bad_error
        finally:
            for device in fleet:
                await device.state.cancel_jobs()
