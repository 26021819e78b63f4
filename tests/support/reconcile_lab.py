"""The reconcile lab: two lab routers over real SSH, a lab SMTP server, the config and the store over them.

The reconcile, alerting, evidence and onboarding tests drive the real Reconciler against it (`lab` fixture).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from eemwatchd.adapters.router import RouterSession, RouterTimeouts
from eemwatchd.adapters.store import Store
from eemwatchd.config import Config, RouterConfig, parse_config
from eemwatchd.core.certificate import Certificate
from eemwatchd.core.ios.formats import render_certificate_block
from eemwatchd.reconcile import Reconciler, RouterSessionLike, RunReport, target_from_config
from eemwatchd_lab.pki import GmailShapedPki
from eemwatchd_lab.router import DeviceSpec, Fleet, User
from eemwatchd_lab.router.trust import validate_chain
from eemwatchd_lab.smtp import LabSmtpServer
from tests.support.audit_check import check_audit

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
class ReconcileLab:
    """Two lab routers (r2 with a trustpoint of its own), a lab SMTP server, the config and store over them."""

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
        """Whether the router accepts ``chain`` now, by the lab's own trust rule (never the product's)."""
        return validate_chain(chain, self.trustpoints(name), datetime.now(UTC)).ok

    def write_anchors(self, anchors: Sequence[Certificate]) -> None:
        self.ca_file.write_text("".join(c.pem for c in anchors))

    async def run(self, *, apply: bool = True, router: str | None = None) -> RunReport:
        """The real Reconciler over the lab; afterwards the audit must explain every router it reached cleanly."""
        reconciler = Reconciler(self.config, self.store, connect=fast_connector, clock=self.clock)
        report = await reconciler.run(apply=apply, router=router)
        check_audit(report, self.store, self.fleet, prefix=self.config.policy.trustpoint_prefix)
        return report


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


@contextlib.asynccontextmanager
async def reconcile_lab(tmp_path: Path) -> AsyncIterator[ReconcileLab]:
    """The lab in TMP_PATH: its config in eemwatchd.yaml, its store in state.db, routers' state under r1/, r2/."""
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
            yield ReconcileLab(tmp_path, pki, smtp, fleet, config, store, Clock(), ca_file)
        for device in fleet:
            await device.state.cancel_jobs()


async def cli(lab: ReconcileLab, *args: str) -> tuple[int, str, str]:
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
