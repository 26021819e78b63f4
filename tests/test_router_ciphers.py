"""Router sessions prefer AES-GCM (hardware) over asyncssh's first choice ChaCha20-Poly1305 (per-packet Python)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from eemwatchd.adapters.router import RouterSession, RouterTarget, RouterTimeouts
from eemwatchd.lab.router.device import DeviceSpec, User
from eemwatchd.lab.router.server import LabDevice

PASSWORD = "ssh-pw-4711"
FAST = RouterTimeouts(connect=5.0, command=5.0, running_config=5.0, change=5.0, poll_interval=0.1, fire_grace=1.0)


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[LabDevice]:
    device = LabDevice(DeviceSpec("r1", tmp_path / "r1", users=(User("admin", PASSWORD),)))
    await device.start()
    try:
        yield device
    finally:
        await device.stop()


@pytest.mark.parametrize("legacy", [False, True], ids=["strict", "legacy_algorithms"])
async def test_a_session_to_a_router_offering_both_negotiates_aes_gcm(
    lab: LabDevice, tmp_path: Path, legacy: bool
) -> None:
    """The lab router (asyncssh's server) offers ChaCha20-Poly1305 and AES-GCM, as OpenSSH does."""
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(lab.known_hosts_line() + "\n")
    target = RouterTarget("r1", lab.host, lab.port, "admin", password=PASSWORD, known_hosts=known_hosts,
                          legacy_algorithms=legacy, timeouts=FAST)
    async with RouterSession(target) as session:
        connection = session._live().transport.session  # scrapli's asyncssh transport: the SSH connection
        ciphers = (connection.get_extra_info("send_cipher"), connection.get_extra_info("recv_cipher"))
        assert (await session.read_snapshot()).hostname == "r1"
    assert ciphers == ("aes128-gcm@openssh.com", "aes128-gcm@openssh.com")
