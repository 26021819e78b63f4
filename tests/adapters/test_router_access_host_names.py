"""Issue 17 finding 5: routers addressed by host name work as OpenSSH does. Two lab routers on 127.0.0.1 configured
as `localhost`: trust on first use records `[localhost]:PORT` for each of them (it recorded only the first, then
every later router failed with a ValueError traceback); a known_hosts entry hashed by `ssh-keygen -H` matches; a
wrong pinned key is `host-key-rejected`, not `failed`."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import asyncssh
import pytest

from eemwatchd.adapters.router import RouterSession, RouterTarget, RouterTimeouts
from eemwatchd.core.reason import Reason
from eemwatchd.errors import HostKeyRejected
from eemwatchd.reconcile.results import reason_for
from eemwatchd_lab.router.device import DeviceSpec, User
from eemwatchd_lab.router.server import Fleet, LabDevice

pytestmark = pytest.mark.timeout(60)

PASSWORD = "ssh-pw-host-names"
FAST = RouterTimeouts(connect=5.0, command=5.0, running_config=5.0, change=5.0, poll_interval=0.1, fire_grace=1.0)


@pytest.fixture
async def routers(tmp_path: Path) -> AsyncIterator[list[LabDevice]]:
    specs = [DeviceSpec(name, tmp_path / name, users=(User("admin", PASSWORD),)) for name in ("r1", "r2")]
    async with Fleet(specs) as fleet:
        yield [fleet["r1"], fleet["r2"]]


def by_name(device: LabDevice, known_hosts: Path, *, tofu: bool = False) -> RouterTarget:
    return RouterTarget(device.name, "localhost", device.port, "admin", password=PASSWORD, known_hosts=known_hosts,
                        trust_on_first_use=tofu, timeouts=FAST)


def key_line(device: LabDevice) -> str:
    """The device's key as OpenSSH writes it for a host name on a non-standard port."""
    assert device.host_key is not None
    return f"[localhost]:{device.port} {device.host_key.export_public_key().decode().strip()}\n"


async def test_trust_on_first_use_records_every_router_by_its_name(routers: list[LabDevice], tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    for device in routers:
        async with RouterSession(by_name(device, known, tofu=True)) as session:
            assert (await session.read_snapshot()).hostname
    assert known.read_text().splitlines() == [line.strip() for line in map(key_line, routers)]
    # and the recorded keys are used from then on, without trust on first use
    for device in routers:
        async with RouterSession(by_name(device, known)) as session:
            assert (await session.read_snapshot()).hostname


async def test_a_wrong_pinned_key_for_a_name_is_host_key_rejected(routers: list[LabDevice], tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    other = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()
    known.write_text(f"[localhost]:{routers[0].port} {other}\n" + key_line(routers[1]))
    for tofu in (False, True):  # trust on first use never replaces a pinned key
        with pytest.raises(HostKeyRejected, match="does NOT match") as caught:
            async with RouterSession(by_name(routers[0], known, tofu=tofu)) as session:
                await session.read_snapshot()
        assert reason_for(caught.value) is Reason.HOST_KEY_REJECTED
        assert f"[localhost]:{routers[0].port}" in str(caught.value)
    async with RouterSession(by_name(routers[1], known)) as session:  # the other router is unaffected
        assert (await session.read_snapshot()).hostname


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="OpenSSH's ssh-keygen is not installed")
async def test_hashed_known_hosts_entries_match_names(routers: list[LabDevice], tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text("".join(key_line(d) for d in routers))
    hashed = subprocess.run(["ssh-keygen", "-H", "-f", str(known)], capture_output=True, text=True, timeout=30,
                            check=False)
    assert hashed.returncode == 0, hashed.stderr
    assert "localhost" not in known.read_text() and known.read_text().startswith("|1|")
    for device in routers:
        async with RouterSession(by_name(device, known)) as session:
            assert (await session.read_snapshot()).hostname
        async with RouterSession(by_name(device, known, tofu=True)) as session:  # nothing appended: it is known
            assert (await session.read_snapshot()).hostname
    assert len(known.read_text().splitlines()) == len(routers)
