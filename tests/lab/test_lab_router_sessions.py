"""Session limits: `line vty 0 4` is five concurrent SSH connections; a sixth is closed before the SSH banner.

Sources (no captured transcript of the refusal itself): a telnet to a router whose vtys are all taken gets
"Connection refused" (Cisco Cookbook, VTY lockout recipe); Ansible against a CSR1000v that ran out of sessions
reports "Unable to connect to port 22" (ansible/ansible-modules-core#5181); a netmiko user who never
disconnected saw every later login fail (ktbyers/netmiko#2570). How exactly the TCP connection ends is inferred.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncssh
import pytest

from eemwatchd.adapters.router import RouterSession, RouterTarget, RouterTimeouts
from eemwatchd.errors import RouterError
from eemwatchd_lab.router import DeviceSpec, Fleet, LabDevice, User
from eemwatchd_lab.router.clock import ticking_clock
from tests.support.clock import PINNED
from tests.support.lab_router import PASSWORD
from tests.support.ssh import RawClient, login


def _target(router: LabDevice, tmp_path: Path) -> RouterTarget:
    known = tmp_path / "known_hosts"
    known.write_text(router.known_hosts_line() + "\n")
    fast = RouterTimeouts(connect=3.0, command=3.0, running_config=3.0, change=3.0, poll_interval=0.1,
                          fire_grace=1.0)
    return RouterTarget("r1", router.host, router.port, "admin", password=PASSWORD, known_hosts=known, timeouts=fast)


async def test_five_sessions_then_the_sixth_is_refused_and_a_freed_line_is_reused(router: LabDevice) -> None:
    clients = [await login(router) for _ in range(5)]
    assert "line vty 0 4" in await clients[0].cmd("show running-config | include line vty")
    with pytest.raises((asyncssh.Error, ConnectionError, OSError)):
        await asyncio.wait_for(RawClient.open(router), 5)
    assert router.refused_logins == 1
    # the five keep working
    for client in clients:
        assert (await client.cmd("show clock")).endswith("R1#")
    await clients.pop().close()
    await asyncio.sleep(0.1)  # the router notices the closed connection
    again = await login(router)
    assert (await again.cmd("show clock")).endswith("R1#")
    for client in [*clients, again]:
        await client.close()


async def test_vty_lines_is_configurable_and_shown_like_ios(tmp_path: Path) -> None:
    spec = DeviceSpec("v2", tmp_path / "v2", hostname="R1", users=(User("admin", PASSWORD),), vty_lines=16,
                      clock=ticking_clock(PINNED))
    async with Fleet([spec]) as fleet:
        c = await login(fleet["v2"])
        out = await c.cmd("show running-config | include line vty")
        assert out.split("\r\n")[1:3] == ["line vty 0 4", "line vty 5 15"]
        await c.close()
    with pytest.raises(ValueError, match="vty_lines"):
        DeviceSpec("v3", tmp_path / "v3", vty_lines=0)


async def test_the_product_uses_one_session_per_router(router: LabDevice, tmp_path: Path) -> None:
    """eemwatchd keeps to one session per router: with four lines taken by operators it still gets in."""
    operators = [await login(router) for _ in range(4)]
    async with RouterSession(_target(router, tmp_path)) as session:
        snapshot = await session.read_snapshot()
        assert snapshot.hostname == "R1"
        assert len(router._connections) == 5
    assert router.refused_logins == 0
    for client in operators:
        await client.close()


async def test_the_product_reports_a_refused_sixth_login_clearly(router: LabDevice, tmp_path: Path) -> None:
    operators = [await login(router) for _ in range(5)]
    try:
        with pytest.raises(RouterError) as info:
            async with RouterSession(_target(router, tmp_path)):
                pass
        assert "vty lines" in str(info.value)
    finally:
        for client in operators:
            await client.close()
