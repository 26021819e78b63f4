"""known_hosts is parsed once per file version, not per connection; a changed file is seen at the next login."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import asyncssh
import pytest

from eemwatchd.adapters.router import RouterSession, RouterTarget, RouterTimeouts, read_known_hosts
from eemwatchd.errors import HostKeyRejected
from eemwatchd_lab.router.device import DeviceSpec, User
from eemwatchd_lab.router.server import LabDevice

PASSWORD = "ssh-pw-4711"
FAST = RouterTimeouts(connect=5.0, command=5.0, running_config=5.0, change=5.0, poll_interval=0.1, fire_grace=1.0)


def _line(host: str, port: int, key: asyncssh.SSHKey) -> str:
    return f"[{host}]:{port} {key.export_public_key().decode().strip()}\n"


def _replace(path: Path, text: str) -> None:
    """As `ssh-keygen -R` and editors do: a new file renamed over the old one."""
    tmp = path.with_suffix(".new")
    tmp.write_text(text)
    os.replace(tmp, path)


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[LabDevice]:
    device = LabDevice(DeviceSpec("r1", tmp_path / "r1", users=(User("admin", PASSWORD),)))
    await device.start()
    try:
        yield device
    finally:
        await device.stop()


def test_an_unchanged_file_is_parsed_once(tmp_path: Path) -> None:
    path = tmp_path / "known_hosts"
    path.write_text(_line("127.0.0.1", 2201, asyncssh.generate_private_key("ssh-ed25519")))
    first = read_known_hosts(path)
    assert read_known_hosts(path) is first


@pytest.mark.parametrize("change", ["append", "replace-same-size"])
def test_a_changed_file_is_parsed_again(tmp_path: Path, change: str) -> None:
    path = tmp_path / "known_hosts"
    old, new = (asyncssh.generate_private_key("ssh-ed25519") for _ in range(2))
    path.write_text(_line("127.0.0.1", 2201, old))
    first = read_known_hosts(path)
    if change == "append":
        with path.open("a") as handle:
            handle.write(_line("127.0.0.1", 2202, new))
    else:  # an ed25519 line has a fixed length: only the inode tells the versions apart
        _replace(path, _line("127.0.0.1", 2201, new))
        assert path.stat().st_size == len(_line("127.0.0.1", 2201, old))
    second = read_known_hosts(path)
    assert second is not first
    host_keys = second.match("127.0.0.1", "127.0.0.1", 2202 if change == "append" else 2201)[0]
    assert {k.public_data for k in host_keys} == {new.convert_to_public().public_data}


async def test_a_replaced_key_is_refused_at_the_next_login(lab: LabDevice, tmp_path: Path) -> None:
    path = tmp_path / "known_hosts"
    path.write_text(lab.known_hosts_line() + "\n")
    target = RouterTarget("r1", lab.host, lab.port, "admin", password=PASSWORD, known_hosts=path, timeouts=FAST)
    for _ in range(2):  # the second login uses the parsed file
        async with RouterSession(target) as session:
            assert (await session.read_snapshot()).hostname == "r1"
    _replace(path, _line(lab.host, lab.port, asyncssh.generate_private_key("ssh-ed25519")))
    with pytest.raises(HostKeyRejected, match="does NOT match"):
        async with RouterSession(target):
            pass
    _replace(path, lab.known_hosts_line() + "\n")
    async with RouterSession(target) as session:
        assert (await session.read_snapshot()).hostname == "r1"


async def test_a_malformed_known_hosts_file_is_refused_naming_it(lab: LabDevice, tmp_path: Path) -> None:
    path = tmp_path / "known_hosts"
    path.write_text("garbage-line\n" + lab.known_hosts_line() + "\n")
    target = RouterTarget("r1", lab.host, lab.port, "admin", password=PASSWORD, known_hosts=path, timeouts=FAST)
    with pytest.raises(HostKeyRejected, match=f"known_hosts file {path} cannot be used: .*garbage-line"):
        async with RouterSession(target):
            pass
