"""The lab router as the router adapter's tests meet it: on the wall clock, its hostname its name, one admin."""

from __future__ import annotations

from pathlib import Path

from eemwatchd.adapters.router import RouterTimeouts
from eemwatchd_lab.router import DeviceSpec, User

PASSWORD = "ssh-pw-4711"
FAST = RouterTimeouts(connect=5.0, command=5.0, running_config=5.0, change=5.0, poll_interval=0.1, fire_grace=1.0)


def adapter_router_spec(tmp_path: Path) -> DeviceSpec:
    """r1 with one admin (PASSWORD), no hostname of its own (it shows `r1`), the host's clock."""
    return DeviceSpec("r1", tmp_path / "r1", users=(User("admin", PASSWORD),))


def admin_password(spec: DeviceSpec) -> str | None:
    """The password of the spec's `admin` user (None: it logs in with a key)."""
    return next(user.password for user in spec.users if user.name == "admin")
