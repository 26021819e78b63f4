"""Router sessions prefer AES-GCM (hardware) over asyncssh's first choice ChaCha20-Poly1305 (per-packet Python)."""

from __future__ import annotations

from pathlib import Path

import pytest

from eemwatchd.adapters.router import RouterSession, RouterTarget
from eemwatchd_lab.router import DeviceSpec, LabDevice
from tests.support.router_adapter import FAST, PASSWORD, adapter_router_spec


@pytest.fixture
def router_spec(tmp_path: Path) -> DeviceSpec:
    """The lab router of the adapter tests."""
    return adapter_router_spec(tmp_path)


@pytest.mark.parametrize("legacy", [False, True], ids=["strict", "legacy_algorithms"])
async def test_a_session_to_a_router_offering_both_negotiates_aes_gcm(
    router: LabDevice, tmp_path: Path, legacy: bool
) -> None:
    """The lab router (asyncssh's server) offers ChaCha20-Poly1305 and AES-GCM, as OpenSSH does."""
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(router.known_hosts_line() + "\n")
    target = RouterTarget("r1", router.host, router.port, "admin", password=PASSWORD, known_hosts=known_hosts,
                          legacy_algorithms=legacy, timeouts=FAST)
    async with RouterSession(target) as session:
        connection = session._live().transport.session  # scrapli's asyncssh transport: the SSH connection
        ciphers = (connection.get_extra_info("send_cipher"), connection.get_extra_info("recv_cipher"))
        assert (await session.read_snapshot()).hostname == "r1"
    assert ciphers == ("aes128-gcm@openssh.com", "aes128-gcm@openssh.com")
