"""`eemwatchd lab`: a local SMTP server with its own PKI, simulated IOS XE routers, and a rotation to watch.

Everything listens on 127.0.0.1. The routers start with the EEM mail applet an operator would have
configured (with ``bare``, some with no EEM setup at all, for `eemwatchd onboard`) and no trustpoints
for the SMTP server's CAs; eemwatchd then does what it does in production: fetch the chain, plan,
apply (add, confirm, test-fire, retire), while the provider rotates its intermediate and then its root.
After every step each router test-fires its applet and the lab counts the mails that really arrived.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import yaml

from eemwatchd.adapters.store import Store
from eemwatchd.config import Config, load_config
from eemwatchd.core.certificate import Certificate, unique
from eemwatchd.reconcile import Reconciler, RunReport
from eemwatchd.reconcile.onboard import Onboarder, OnboardRequest
from eemwatchd_lab.pki import GmailShapedPki
from eemwatchd_lab.probe import probe_applet
from eemwatchd_lab.router import Fleet, User
from eemwatchd_lab.router.trust import validate_chain
from eemwatchd_lab.smtp import LabSmtpServer
from eemwatchd_lab.wan import Wan

APPLET = "MAIL-ALERT"
MAIL_USER = "alerts"
MAIL_FROM = "alerts@lab.example"
MAIL_TO = "noc@lab.example"
SUCCESS_LINE = "test mail handed to the SMTP server"
Say = Callable[[str], None]


@dataclass
class StepResult:
    title: str
    changes: int
    routers_mailing: int
    routers: int
    in_sync: bool


@dataclass
class LabRun:
    steps: list[StepResult] = field(default_factory=list)
    trust_kept: bool = True  # no router that was sending mail lost the trust it used
    onboarded: bool = True  # every bare router was onboarded and proved mail

    @property
    def ok(self) -> bool:
        return self.trust_kept and self.onboarded and bool(self.steps) and all(
            s.routers_mailing == s.routers for s in self.steps
        ) and self.steps[-1].changes == 0


def _write_secret(path: Path, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(value + "\n")


def _router_config(smtp_port: int, mail_password: str) -> list[str]:
    """The EEM mail setup as the original tech note configures it (the app password is the lab's own)."""
    return [
        f"event manager environment _email_server {MAIL_USER}:{mail_password}@127.0.0.1",
        f"event manager environment _email_from {MAIL_FROM}",
        f"event manager environment _email_to {MAIL_TO}",
        f"event manager applet {APPLET}",
        " event none maxrun 60",
        f' action 0010 mail server "$_email_server" to "$_email_to" from "$_email_from" subject '
        f'"EEM test mail" body "sent by the {APPLET} applet" secure tls port {smtp_port}',
        f' action 0020 syslog msg "{SUCCESS_LINE}"',
        *probe_applet(smtp_port),  # the lab's own prober (probe.py), independent of eemwatchd's test-fires
    ]


class Lab:
    """The lab's moving parts: PKI, SMTP server, routers, the eemwatchd config that points at them.

    The trust store holds the provider's announced next root too (as OS stores hold announced roots years before
    chains use them); with ``prestage`` the config pre-stages it (``servers[0].prestage: [next-root.pem]``).
    """

    def __init__(self, state_dir: Path, *, routers: int, say: Say, live: bool = False, bare: int = 0,
                 wan: Wan | None = None, prestage: bool = False) -> None:
        self.state_dir = state_dir
        self.bare = bare  # the last `bare` routers start with no EEM setup at all (for `eemwatchd onboard`)
        self.live = live  # the daemon runs on this lab: metrics endpoint, log alerts, a router schedule
        self.prestage = prestage
        self.router_count = routers
        self.say = say
        self.pki = GmailShapedPki.create()
        self.trusted: list[Certificate] = list(self.pki.announced_anchors)
        self.mail_password = secrets.token_urlsafe(12)
        self.router_password = secrets.token_urlsafe(12)
        self.smtp = LabSmtpServer(
            mode="starttls", certs=self.pki.served, key=self.pki.leaf.key,
            username=MAIL_USER, password=self.mail_password,
        )
        self.fleet = Fleet.numbered(routers, state_dir / "routers", users=(User("eemwatchd", self.router_password),),
                                    wan=wan)
        self.config_path = state_dir / "eemwatchd.yaml"
        self.anchors_path = state_dir / "trust-store.pem"
        self.prestage_path = state_dir / "next-root.pem"

    async def __aenter__(self) -> Lab:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        await self.smtp.__aenter__()
        await self.fleet.start()
        for device in self.fleet:
            if device.name in self.bare_routers:
                continue
            device.state.apply_config(_router_config(self.smtp.port, self.mail_password))
            device.state.save()
        self._write_config()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.fleet.stop()
        await self.smtp.__aexit__(None, None, None)

    def _write_trust_store(self) -> None:
        self.anchors_path.write_text("".join(c.pem for c in self.trusted), encoding="ascii")
        if self.prestage:
            self.prestage_path.write_text(self.pki.next_root.cert.pem, encoding="ascii")

    @property
    def bare_routers(self) -> list[str]:
        names = [d.name for d in self.fleet]
        return names[len(names) - self.bare:] if self.bare else []

    def _write_config(self) -> None:
        _write_secret(self.state_dir / "router.password", self.router_password)
        _write_secret(self.state_dir / "mail.password", self.mail_password)
        known_hosts = self.state_dir / "known_hosts"
        known_hosts.write_text("".join(d.known_hosts_line() + "\n" for d in self.fleet), encoding="ascii")
        self._write_trust_store()
        document = {
            "state_path": "state.db",
            "servers": [{"name": "lab-smtp", "host": "127.0.0.1", "port": self.smtp.port, "mode": "starttls",
                         "interval": "1s", "servername": "smtp.lab.example",
                         "timeouts": {"connect": "5s", "step": "5s", "total": "15s"},
                         # the account `eemwatchd onboard` puts into _email_server (the lab server's own)
                         "account": {"username": MAIL_USER, "password_file": "mail.password",
                                     "from": MAIL_FROM}}],
            "defaults": {"routers": {"username": "eemwatchd", "password_file": "router.password",
                                     "known_hosts": "known_hosts", "applet": APPLET, "servers": ["lab-smtp"],
                                     "timeouts": {"connect": "5s", "step": "20s", "total": "2m"}}},
            "routers": [{"name": d.name, "host": "127.0.0.1", "port": d.port} for d in self.fleet],
            # Short windows so the lab shows retirement within seconds; production keeps days.
            "policy": {"trust_store": "trust-store.pem", "confirmations": 2, "recent": "3s", "retention": "0s",
                       "aia": False, "max_parallel_routers": 8},
            "alerts": [],  # the lab prints each run's alerts in its own narrative
        }
        if self.prestage:
            document["servers"][0]["prestage"] = [self.prestage_path.name]  # type: ignore[index]
        if self.live:
            document["alerts"] = [{"kind": "log"}]
            document["metrics"] = {"listen": "127.0.0.1:0"}  # any free port; the daemon prints its URL
            document["defaults"]["routers"]["interval"] = "30s"  # type: ignore[index]
        self.config_path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")

    def config(self) -> Config:
        return load_config(self.config_path).config

    def serve(self) -> None:
        """Tell the SMTP server to send the PKI's current chain; the trust store learns any new root (and with
        ``prestage``, the pre-staged file the provider's next announced root: eemwatchd reads it at its next config
        load)."""
        self.trusted = unique([*self.trusted, *self.pki.announced_anchors])
        self._write_trust_store()
        self.smtp.set_chain(self.pki.served, self.pki.leaf.key)

    def mailing_now(self, chain: list[Certificate]) -> list[str]:
        """The routers whose trustpoints would accept ``chain`` right now (IOS's strict rule)."""
        now = datetime.now(UTC)
        return [d.name for d in self.fleet
                if validate_chain(chain, d.state.trustpoint_certs(), now).ok]


async def _fire_all(lab: Lab) -> int:
    """Test-fire every router's applet the way an operator would (`event manager run`); count delivered mail."""
    before = len(lab.smtp.messages)
    for device in lab.fleet:
        device.state.run_applet(APPLET)
    await asyncio.gather(*(d.state.wait_for_jobs(timeout=90) for d in lab.fleet))
    return len(lab.smtp.messages) - before


def _report(lab: Lab, report: RunReport) -> int:
    changes = 0
    for router in report.routers:
        if router.error:
            lab.say(f"    {router.name}: ERROR {router.error}")
            continue
        for step in router.steps:
            mark = "ok" if step.ok else "FAILED"
            what = f"{step.kind} {step.trustpoint or ''}".strip()
            lab.say(f"    {router.name}: {what}: {mark} ({step.detail})")
            if step.ok and step.kind in ("add", "retire"):
                changes += 1
        if not router.steps:
            lab.say(f"    {router.name}: in sync, nothing to change")
    for event in report.events:
        lab.say(f"    event: {event}")
    for alert in report.alerts:
        lab.say(f"    alert {alert.event} {alert.subject}: {alert.summary}")
    return changes


async def _step(lab: Lab, title: str, reconciler_factory: Callable[[], Reconciler], run: LabRun) -> None:
    lab.say(f"\n== {title}")
    before_chain = list(lab.smtp.served)
    reconciler = reconciler_factory()
    first = await reconciler.observe()
    seen = [a.times_seen for s in first for a in s.addresses]
    lab.say(f"  observed the server's chain: seen {max(seen, default=0)}x, the policy acts from "
            f"{reconciler.config.policy.confirmations}x on; apply observes once more, then plans and applies")
    observed = RunReport(first, [], [])
    await reconciler.notify(observed)
    # a sighting counts once per half interval (bursts are one observation): let apply's own count
    await asyncio.sleep(min(s.interval for s in reconciler.config.servers) / 2 + 0.1)
    for alert in observed.alerts:
        lab.say(f"    alert {alert.event} {alert.subject}: {alert.summary}")
    # Trust that lets routers mail the previous chain must hold through every change.
    mailing_before = set(lab.mailing_now(before_chain))
    report = await reconciler.run(apply=True)
    changes = _report(lab, report)
    lost = mailing_before - set(lab.mailing_now(before_chain))
    # Retiring trust for a chain the server no longer sends is expected; losing it while it is
    # still served is the failure the blue-green order exists to prevent.
    if lost and list(lab.smtp.served) == before_chain:
        run.trust_kept = False
        lab.say(f"  !! routers lost the trust they used: {sorted(lost)}")
    delivered = await _fire_all(lab)
    in_sync = all(r.in_sync for r in report.routers)
    lab.say(f"  test-fire from every router: {delivered}/{len(lab.fleet)} mails delivered to the lab SMTP server")
    run.steps.append(StepResult(title, changes, delivered, len(lab.fleet), in_sync))


async def _onboard_bare(lab: Lab, store: Store, run: LabRun) -> None:
    """`eemwatchd onboard` for each bare router: EEM setup, trust, a proven test mail, saved."""
    lab.say(f"\n== 0b. eemwatchd onboard sets up the routers with no EEM setup at all: {', '.join(lab.bare_routers)}")
    config = lab.config()
    await Reconciler(config, store).observe()  # a first sighting; onboard's own makes the policy's second
    await asyncio.sleep(min(s.interval for s in config.servers) / 2 + 0.1)
    for name in lab.bare_routers:
        before = len(lab.smtp.messages)
        result = await Onboarder(config, store).onboard(OnboardRequest(router=name, to=(MAIL_TO,)))
        for refusal in result.refusals:
            lab.say(f"    {name}: REFUSED {refusal.message}")
        for line in result.sent:
            lab.say(f"    {name}: sent  {line}")
        for step in result.trust.steps if result.trust is not None else ():
            mark = "ok" if step.ok else "FAILED"
            lab.say(f"    {name}: {f'{step.kind} {step.trustpoint or str()}'.strip()}: {mark} ({step.detail})")
        error = result.error or (result.trust.error if result.trust is not None else None)
        if error:
            lab.say(f"    {name}: ERROR {error}")
        mailed = len(lab.smtp.messages) - before
        lab.say(f"    {name}: {'onboarded, ' if result.ok else 'NOT onboarded, '}{mailed} test mail(s) delivered")
        run.onboarded = run.onboarded and result.ok and mailed > 0


def wan_note(wan: Wan | None) -> str:
    """How a router is reached, for the lab's story: ` behind a WAN (RTT 100 ms)` or nothing."""
    if wan is None:
        return ""
    jitter = f", jitter up to {wan.jitter * 1000:g} ms each way" if wan.jitter else ""
    return f" behind a WAN (round trip {wan.rtt * 1000:g} ms{jitter})"


async def run_lab(state_dir: Path, *, routers: int = 3, say: Say = print, serve: asyncio.Event | None = None,
                  bare: int = 0, wan: Wan | None = None, prestage: bool = False) -> LabRun:
    """Run the rotation scenario; with ``serve``, keep everything up until the event is set. The last ``bare``
    routers start with no EEM setup: `eemwatchd onboard` sets them up before the rotations."""
    run = LabRun()
    async with Lab(state_dir, routers=routers, say=say, bare=bare, wan=wan, prestage=prestage) as lab:
        say(f"lab SMTP server (STARTTLS, AUTH) on 127.0.0.1:{lab.smtp.port}, serving "
            + " <- ".join(c.common_name for c in lab.pki.served))
        for device in lab.fleet:
            say(f"lab router {device.name} (IOS XE simulator) on 127.0.0.1:{device.port}{wan_note(device.wan)}")
        say(f"eemwatchd config: {lab.config_path}")
        config = lab.config()
        store = Store.open(config.state_path, secrets=[*config.secrets(), lab.mail_password])

        def reconciler() -> Reconciler:
            return Reconciler(lab.config(), store)

        try:
            lab.say("\n== 0. Fresh routers: the applet is configured, the SMTP server's CAs are not")
            delivered = await _fire_all(lab)
            lab.say(f"  test-fire from every router: {delivered}/{len(lab.fleet)} mails delivered "
                    "(the routers log %HA_EM-3-FMPD_SMTP / FMPD_ERROR)"
                    + (f"; no applet at all on {', '.join(lab.bare_routers)}" if lab.bare_routers else ""))
            if lab.bare_routers:
                await _onboard_bare(lab, store, run)
            await _step(lab, "1. eemwatchd installs the chain's CAs", reconciler, run)
            lab.pki.rotate_intermediate("Lab WR2")
            lab.serve()
            await _step(lab, "2. The provider rotates its intermediate (GTS CA 1C3 -> WR2)", reconciler, run)
            lab.pki.rotate_root("Lab GTS Root R4", "Lab WE1")
            lab.serve()
            await _step(lab, "3. The provider moves to a new root, cross-signed by the old one", reconciler, run)
            recent = lab.config().policy.recent
            lab.say(f"\n  (waiting {recent:.0f}s: the lab's policy.recent window, days in production)")
            await asyncio.sleep(recent + 0.5)
            await _step(lab, "4. Old chains are no longer served: their trustpoints are retired", reconciler, run)
            await _step(lab, "5. A second apply changes nothing", reconciler, run)
            first = lab.fleet.devices[next(iter(lab.fleet.devices))].name
            entries = store.audit()
            say(f"\naudit log: {len(entries)} entries; those of {first} "
                f"(all: eemwatchd audit -c {lab.config_path}):")
            for entry in store.audit(router=first):
                say(f"  {entry.at:%H:%M:%S} {entry.action:<9} {entry.trustpoint or '':<14} "
                    f"{(entry.sha256_after or entry.sha256_before or '')[:16]:<16} {entry.test_fire or ''}".rstrip())
            if serve is not None:
                port = lab.fleet.devices[next(iter(lab.fleet.devices))].port
                say(f"\nlab is up; Ctrl-C stops it. Try:\n"
                    f"  ssh -p {port} eemwatchd@127.0.0.1   (password in {state_dir / 'router.password'})\n"
                    f"  eemwatchd plan -c {lab.config_path}\n"
                    f"  eemwatchd audit -c {lab.config_path}")
                await serve.wait()
        finally:
            store.close()
    return run
