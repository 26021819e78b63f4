"""The simulated IOS XE router as the tests build it: its spec, the admin password, the EEM mail applet."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from eemwatchd_lab.router import DeviceSpec, Fleet, LabDevice, User
from eemwatchd_lab.router.clock import ticking_clock
from tests.support.clock import PINNED

PASSWORD = "lab-Pass-1"
SMTP_PASSWORD = "app-secret-77"

# An EEM applet that mails through `_email_server`; format with server= (the `_email_server` value) and port=.
APPLET = [
    "event manager environment _email_server {server}",
    "event manager environment _email_to ops@lab.example",
    "event manager environment _email_from router@lab.example",
    "event manager applet CERTCHECK authorization bypass",
    "event none maxrun 8",
    'action 0010 mail server "$_email_server" to "$_email_to" from "$_email_from" '
    'subject "EEM test" body "hello from $_email_from" secure tls port {port}',
    "exit",
]


def router_spec_for(tmp_path: Path, name: str = "r1", **changes: Any) -> DeviceSpec:
    """Router NAME, hostname R1, one admin with PASSWORD, its clock ticking from PINNED; ``changes`` replace
    any of those (or set another DeviceSpec field)."""
    fields: dict[str, Any] = {"hostname": "R1", "users": (User("admin", PASSWORD),), "clock": ticking_clock(PINNED)}
    return DeviceSpec(name, tmp_path / name, **{**fields, **changes})


@contextlib.asynccontextmanager
async def running_router(spec: DeviceSpec) -> AsyncIterator[LabDevice]:
    """One lab router built from ``spec``, listening on 127.0.0.1 until the block ends."""
    async with Fleet([spec]) as fleet:
        yield fleet[spec.name]
