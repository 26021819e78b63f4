"""The onboarding lab: two bare lab routers (one with its clock 400 days ahead), a lab SMTP server with an account,
the config and the store over them; and `eemwatchd onboard` run as a process."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from eemwatchd.adapters.store import Store
from eemwatchd.config import Config, parse_config
from eemwatchd.reconcile.onboard import Onboarder, OnboardRequest, OnboardResult
from eemwatchd_lab.pki import GmailShapedPki
from eemwatchd_lab.router import DeviceSpec, Fleet, LabDevice, User
from eemwatchd_lab.router.clock import Clock
from eemwatchd_lab.smtp import LabSmtpServer
from tests.support.reconcile_lab import fast_connector

NOW = datetime(2031, 3, 4, 10, 0, tzinfo=UTC)  # a pinned date: nothing here depends on today's
APPLET = "MAIL-ALERT"
SMTP_USER = "alerts"
SMTP_PASSWORD = "app-pass-Kd82"
ROUTER_PASSWORD = "lab-admin-pw-3"


@dataclass
class OnboardingLab:
    """Two bare routers (`skewed` 400 days ahead), a lab SMTP server with an account, the config and store."""

    tmp: Path
    smtp: LabSmtpServer
    fleet: Fleet
    config: Config
    store: Store
    clock: Callable[[], datetime]

    def device(self, name: str) -> LabDevice:
        return self.fleet[name]

    def state_of(self, name: str) -> tuple[list[str], list[str], str | None]:
        """What a refusal must leave untouched: running-config, log buffer, startup-config."""
        state = self.fleet[name].state
        return list(state.config_lines()), list(state.log_lines), state.startup_config()

    async def onboard(self, router: str = "bare", **request: object) -> OnboardResult:
        onboarder = Onboarder(self.config, self.store, connect=fast_connector, clock=self.clock)
        return await onboarder.onboard(OnboardRequest(router=router, **request))  # type: ignore[arg-type]


def config_text(smtp_port: int, routers: str, *, account: str, extra_servers: str = "") -> str:
    return f"""
state_path: state.db
servers:
  - name: lab
    host: 127.0.0.1
    port: {smtp_port}
    mode: starttls
    interval: 1s
    ca_file: anchors.pem
    timeouts: {{connect: 5s, step: 5s, total: 15s}}
{account}
{extra_servers}
routers:
{routers}
policy:
  confirmations: 1
  recent: 1d
  retention: 1d
alerts: []
"""


ACCOUNT = f"""    account:
      username: {SMTP_USER}
      password_file: smtp.pw
      from: alerts@lab.example"""


def write_config(tmp: Path, text: str) -> Config:
    (tmp / "eemwatchd.yaml").write_text(text)
    return parse_config(text, base=tmp).config


def routers_yaml(fleet: Fleet) -> str:
    return "\n".join(
        f"""  - name: {d.name}
    host: 127.0.0.1
    port: {d.port}
    username: admin
    password_file: router.pw
    known_hosts: known_hosts
    applet: {APPLET}
    servers: [lab]
    timeouts: {{connect: 5s, step: 20s, total: 2m}}"""
        for d in fleet
    )


@contextlib.asynccontextmanager
async def make_onboarding_lab(
    tmp_path: Path, *, now: datetime, clock: Clock | None
) -> AsyncIterator[OnboardingLab]:
    pki = GmailShapedPki.create(now=now)
    (tmp_path / "anchors.pem").write_text("".join(c.pem for c in pki.anchors))
    (tmp_path / "router.pw").write_text(ROUTER_PASSWORD + "\n")
    (tmp_path / "smtp.pw").write_text(SMTP_PASSWORD + "\n")
    specs = [DeviceSpec(name="bare", state_dir=tmp_path / "bare", users=(User("admin", ROUTER_PASSWORD),),
                        clock=clock),
             DeviceSpec(name="skewed", state_dir=tmp_path / "skewed", users=(User("admin", ROUTER_PASSWORD),),
                        clock=clock, clock_offset=timedelta(days=400))]
    async with (
        LabSmtpServer(mode="starttls", certs=pki.served, key=pki.leaf.key, username=SMTP_USER,
                      password=SMTP_PASSWORD) as smtp,
        Fleet(specs) as fleet,
    ):
        (tmp_path / "known_hosts").write_text("".join(d.known_hosts_line() + "\n" for d in fleet))
        config = write_config(tmp_path, config_text(smtp.port, routers_yaml(fleet), account=ACCOUNT))
        with Store.open(config.state_path, secrets=[ROUTER_PASSWORD, SMTP_PASSWORD]) as store:
            yield OnboardingLab(tmp_path, smtp, fleet, config, store, clock or (lambda: datetime.now(UTC)))
        for device in fleet:
            await device.state.cancel_jobs()



@dataclass
class Ran:
    code: int
    out: str
    err: str


async def run_cli(*argv: str) -> Ran:
    """The command in its own process (it installs signal handlers), against the lab in this one."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "eemwatchd.cli", *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout=50)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return Ran(proc.returncode, out.decode(), err.decode())



def has_applet(onboarding_lab: OnboardingLab, name: str = "bare") -> bool:
    return APPLET in onboarding_lab.device(name).state.applets
