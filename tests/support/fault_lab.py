"""The lab the fault schedules run in: two lab routers, a lab SMTP server and a provider PKI, started once and reset
between schedules; one clock for the routers and for eemwatchd (in process and as processes); the lab's own verdicts.

The lab lives on an event loop of its own thread (LabLoop), so a schedule's steps (Hypothesis calls them, plain
functions) can run eemwatchd in that loop, start it as a process beside it, and signal it while the routers serve.
The verdicts are the lab's, never the product's: a router's mail works when it accepts every chain the SMTP server
sends now by the lab's trust rule (eemwatchd_lab.router.trust) at the router's own clock, its applet has a mail
action, and the startup-config holds the trust the running-config holds.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import shutil
import threading
import time
from collections.abc import Coroutine, Iterable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from eemwatchd.adapters.store import AuditEntry
from eemwatchd.config import Config, parse_config
from eemwatchd.core.audit_replay import AuditedChange, expected_holdings
from eemwatchd.core.certificate import Certificate
from eemwatchd_lab.pki import GmailShapedPki
from eemwatchd_lab.router import DeviceSpec, Fleet, LabDevice, User, invariants
from eemwatchd_lab.router.device import STARTUP_FILE, Device
from eemwatchd_lab.router.faults import Faults
from eemwatchd_lab.router.trust import validate_chain
from eemwatchd_lab.smtp import LabSmtpServer
from tests.support.clock import PINNED
from tests.support.reconcile_lab import unmanaged_config

T = TypeVar("T")

ROUTERS = ("r1", "r2")
APPLET = "MAILTEST"
PREFIX = "EEMW-"
SMTP_USER = "alerts"
SMTP_PASSWORD = "app-pass-Fs3"  # lab only; never in the store (the store scrubs it)
ROUTER_PASSWORD = "lab-admin-pw-5"
# The applet's maxrun: a silent SMTP server costs this much per test-fire, a normal mail takes ~50 ms.
MAXRUN = 2
INTERVAL = timedelta(minutes=10)  # servers[].interval: sightings count when at least half of it apart


class LabTime:
    """The one clock of a schedule: lab routers (plus their skew), eemwatchd in process, and eemwatchd as a process
    (started at ``now()``). It starts at PINNED, runs at the real pace and jumps forward when a schedule advances
    it, so no schedule depends on today's date."""

    def __init__(self) -> None:
        self._base = PINNED
        self._origin = time.monotonic()

    def reset(self) -> None:
        self._base, self._origin = PINNED, time.monotonic()

    def now(self) -> datetime:
        return self._base + timedelta(seconds=time.monotonic() - self._origin)

    def advance(self, delta: timedelta) -> None:
        self._base += delta


class LabLoop:
    """An event loop on a thread of its own; ``run(coro)`` waits for a coroutine run there."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="fault-lab", daemon=True)
        self._thread.start()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 120.0) -> T:
        return self.submit(coro).result(timeout)

    def call(self, func: Any, *args: Any) -> None:
        """Run a plain function on the loop's thread and wait for it (changes to the routers' faults)."""

        async def call() -> None:
            func(*args)

        self.run(call())

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


def applet_config(smtp_port: int) -> list[str]:
    return [
        f"event manager environment _email_server {SMTP_USER}:{SMTP_PASSWORD}@127.0.0.1",
        f"event manager applet {APPLET}",
        f" event none maxrun {MAXRUN}",
        f' action 0010 mail server "$_email_server" to "ops@lab.example" from "{SMTP_USER}@lab.example"'
        f' subject "eemwatchd test" body "test-fire" secure tls port {smtp_port}',
        f' action 0020 syslog msg "{APPLET} mail sent"',
    ]


def chain_id(chain: Sequence[Certificate]) -> str:
    return "/".join(c.short_fingerprint for c in chain)


class FaultLab:
    """The routers and the SMTP server (started once), and per schedule: the provider's PKI and the chains it has
    served, eemwatchd's config, trust store and state directory."""

    def __init__(self, root: Path, clock: LabTime) -> None:
        self.root = root
        self.clock = clock
        specs = [DeviceSpec(name=n, state_dir=root / "routers" / n, users=(User("admin", ROUTER_PASSWORD),),
                            clock=clock.now) for n in ROUTERS]
        self.fleet = Fleet(specs)
        self.pki = GmailShapedPki.create(now=clock.now())
        self.smtp = LabSmtpServer(mode="starttls", certs=self.pki.served, key=self.pki.leaf.key,
                                  username=SMTP_USER, password=SMTP_PASSWORD)
        self.smtp_running = False
        # per schedule
        self.directory = root
        self.config: Config | None = None
        self.chains: list[tuple[tuple[Certificate, ...], PrivateKeyTypes]] = []
        self.trusted: list[Certificate] = []
        self.rotations = 0

    # --- life ----------------------------------------------------------------------------------------

    async def start(self) -> None:
        await self.smtp.start()
        self.smtp_running = True
        await self.fleet.start()
        (self.root / "known_hosts").write_text("".join(d.known_hosts_line() + "\n" for d in self.fleet))
        (self.root / "router.pw").write_text(ROUTER_PASSWORD + "\n")

    async def stop(self) -> None:
        await self.fleet.stop()
        await self.smtp.stop()

    def device(self, name: str) -> LabDevice:
        return self.fleet[name]

    def state(self, name: str) -> Device:
        return self.fleet[name].state

    async def reset(self, directory: Path) -> None:
        """A new schedule: a fresh PKI served, the routers rebooted with only their applet (r2 also trusting the old
        root in a trustpoint of its own), no faults, no skew, and eemwatchd's config and state in ``directory``."""
        self.clock.reset()
        if self.directory != self.root:
            shutil.rmtree(self.directory, ignore_errors=True)
        self.directory = directory
        directory.mkdir(parents=True)
        self.pki = GmailShapedPki.create(now=self.clock.now())
        self.chains = [(tuple(self.pki.served), self.pki.leaf.key)]
        self.trusted = list(self.pki.anchors)
        self.rotations = 0
        await self.provider_up()
        self.smtp.set_chain(self.pki.served, self.pki.leaf.key)
        self.smtp.messages.clear()
        for device in self.fleet:
            device.spec.faults = Faults()
            device.spec.clock_offset = timedelta(0)
            with contextlib.suppress(FileNotFoundError):
                (device.spec.state_dir / STARTUP_FILE).unlink()
            await device.restart()
            device.state.apply_config(applet_config(self.smtp.port))
            if device.name == "r2":
                device.state.apply_config(unmanaged_config("CA-GlobalSign-Root", self.pki.old_root.cert))
            device.state.save()
        self._write_anchors()
        text = self.config_text()
        (directory / "eemwatchd.yaml").write_text(text)
        self.config = parse_config(text, base=directory).config

    def config_text(self) -> str:
        routers = "\n".join(f"""  - name: {d.name}
    host: 127.0.0.1
    port: {d.port}
    username: admin
    password_file: {self.root / 'router.pw'}
    known_hosts: {self.root / 'known_hosts'}
    applet: {APPLET}
    servers: [lab]
    timeouts: {{connect: 2s, step: 2s, total: 30s}}""" for d in self.fleet)
        return f"""state_path: state.db
servers:
  - name: lab
    host: 127.0.0.1
    port: {self.smtp.port}
    mode: starttls
    interval: {int(INTERVAL.total_seconds())}s
    ca_file: anchors.pem
    timeouts: {{connect: 2s, step: 2s, total: 5s}}
routers:
{routers}
policy:
  confirmations: 2
  recent: 1h
  retention: 30m
"""

    @property
    def config_path(self) -> Path:
        return self.directory / "eemwatchd.yaml"

    def _write_anchors(self) -> None:
        (self.directory / "anchors.pem").write_text("".join(c.pem for c in self.trusted))

    # --- the provider --------------------------------------------------------------------------------------

    async def provider_down(self) -> None:
        """The SMTP server is down: connections are refused (eemwatchd's fetch and the routers' mail alike)."""
        if self.smtp_running:
            await self.smtp.stop()
            self.smtp_running = False

    async def provider_up(self) -> None:
        if not self.smtp_running:
            await self.smtp.start()
            self.smtp_running = True

    def rotate(self, kind: str, back: int = 0) -> str:
        """The provider changes what it serves: `intermediate`, `root` (a new root cross-signed by the old one),
        `anchor` (a root nothing the routers hold signed), `back` (the ``back``-th chain it served before, counted
        from the oldest) or `untrusted` (a chain no trust store holds: an interception). A new root joins the trust
        store (as OS stores learn it). Returns what was done."""
        now = self.clock.now()
        self.rotations += 1
        n = self.rotations
        if kind == "back":
            older = self.chains[:-1]
            if not older:
                return "back: no older chain yet"
            served, key = older[back % len(older)]
            self.chains.append((served, key))
            self.smtp.set_chain(served, key)
            return f"back to chain {chain_id(served)}"
        if kind == "untrusted":
            intruder = GmailShapedPki.create(now=now, prefix=f"Intruder{n}")
            self.smtp.set_chain(intruder.served, intruder.leaf.key)
            return f"untrusted chain {chain_id(intruder.served)}"
        if kind == "intermediate":
            self.pki.rotate_intermediate(f"Lab CA {n}", now=now)
        elif kind == "root":
            self.pki.rotate_root(f"Lab Root R{n}", f"Lab CA {n}", now=now)
        elif kind == "anchor":
            self.pki.move_to_new_anchor(f"Other Root X{n}", f"Other CA {n}", now=now)
        else:
            raise ValueError(f"unknown rotation {kind!r}")
        if self.pki.new_root.cert not in self.trusted:
            self.trusted.append(self.pki.new_root.cert)
            self._write_anchors()
        self.chains.append((tuple(self.pki.served), self.pki.leaf.key))
        self.smtp.set_chain(self.pki.served, self.pki.leaf.key)
        return f"{kind}: chain {chain_id(self.pki.served)}"

    def serve_trusted(self) -> None:
        """The provider serves the last chain the trust store verifies (after an `untrusted` rotation)."""
        served, key = self.chains[-1]
        if self.smtp.served != served:
            self.smtp.set_chain(served, key)

    # --- the lab's verdicts ------------------------------------------------------------------------------

    def mail_verdict(self, name: str) -> str | None:
        """Why router ``name`` cannot mail now by the lab's own rule, or None when it can. Chains are judged at the
        router's clock, as it judges them."""
        state = self.state(name)
        trust, now = state.trustpoint_certs(), state.now()
        for chain in invariants.served_chains():
            verdict = validate_chain(chain, trust, now)
            if not verdict.ok:
                return f"it rejects the chain the server sends now ({chain_id(chain)}): {verdict.reason}"
        applet = state.applets.get(APPLET)
        if applet is None or not any(a.kind == "mail" for a in applet.actions):
            return f"applet {APPLET} is missing or has no mail action"
        saved = self.saved_trust(name)
        running = managed(state.trustpoint_certs())
        if saved != running:
            return (f"the startup-config holds other managed trust ({sorted(saved)}) than the running-config "
                    f"({sorted(running)})")
        return None

    def saved_trust(self, name: str) -> dict[str, frozenset[str]]:
        """The managed trust the router's startup-config holds (read by the lab booting a copy of it)."""
        spec = self.device(name).spec
        copy = Device(DeviceSpec(name=f"{name}-startup", state_dir=spec.state_dir, clock=spec.clock))
        return managed(copy.trustpoint_certs())

    def holdings(self, name: str) -> dict[str, frozenset[str]]:
        return managed(self.state(name).trustpoint_certs())

    def audit_difference(self, name: str, rows: Iterable[AuditEntry]) -> str | None:
        """How the audit's account of router ``name``'s managed trust (replayed) differs from what it holds."""
        expected = expected_holdings([AuditedChange(e.action, e.trustpoint, e.sha256_before, e.sha256_after)
                                      for e in rows], prefix=PREFIX)
        actual = self.holdings(name)
        if expected == actual:
            return None
        return f"the audit says {_describe(expected)}, the router holds {_describe(actual)}"


def managed(trust: Any) -> dict[str, frozenset[str]]:
    return {name: frozenset(c.sha256 for c in certs) for name, certs in trust.items()
            if name.startswith(PREFIX) and certs}


def _describe(holdings: dict[str, frozenset[str]]) -> str:
    if not holdings:
        return "nothing"
    return ", ".join(f"{name}={'/'.join(s[:8] for s in sorted(shas))}" for name, shas in sorted(holdings.items()))
