"""The lab router as the router adapter's tests meet it: on the wall clock, its hostname its name, one admin."""

from __future__ import annotations

from pathlib import Path

from eemwatchd.adapters.router import RouterTimeouts
from eemwatchd_lab.pki import GmailShapedPki
from eemwatchd_lab.router import DeviceSpec, User
from eemwatchd_lab.smtp import LabSmtpServer

PASSWORD = "ssh-pw-4711"
FAST = RouterTimeouts(connect=5.0, command=5.0, running_config=5.0, change=5.0, poll_interval=0.1, fire_grace=1.0)


def adapter_router_spec(tmp_path: Path) -> DeviceSpec:
    """r1 with one admin (PASSWORD), no hostname of its own (it shows `r1`), the host's clock."""
    return DeviceSpec("r1", tmp_path / "r1", users=(User("admin", PASSWORD),))


def admin_password(spec: DeviceSpec) -> str | None:
    """The password of the spec's `admin` user (None: it logs in with a key)."""
    return next(user.password for user in spec.users if user.name == "admin")


MAIL_PASSWORD = "mail-pw-0815"


def adapter_applet_config(smtp_port: int, *, event: str = "none maxrun 15") -> list[str]:
    """The MAIL-TEST applet the adapter tests fire: mails through 127.0.0.1:SMTP_PORT, then logs its success line."""
    return [
        f"event manager environment _email_server alerts:{MAIL_PASSWORD}@127.0.0.1",
        "event manager environment _email_to noc@example.com",
        "event manager environment _email_from alerts",
        "event manager applet MAIL-TEST",
        f" event {event}",
        f' action 0010 mail server "$_email_server" to "$_email_to" from "$_email_from" subject "test" '
        f'body "EEM mail test" secure tls port {smtp_port}',
        ' action 0020 syslog msg "mail sent to $_email_to"',
    ]


async def adapter_mail_server(pki: GmailShapedPki) -> LabSmtpServer:
    """A started STARTTLS lab SMTP server for adapter_applet_config's account (stop it when done)."""
    server = LabSmtpServer(
        mode="starttls", certs=pki.served, key=pki.leaf.key, username="alerts", password=MAIL_PASSWORD
    )
    await server.start()
    return server
