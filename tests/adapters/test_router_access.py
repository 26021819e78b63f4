"""How a router is reached: known_hosts is parsed once per file version, not per connection, and a changed file is
seen at the next login; sessions prefer AES-GCM (hardware) over asyncssh's first choice ChaCha20-Poly1305
(per-packet Python)."""

from __future__ import annotations

import os
from pathlib import Path

import asyncssh
import pytest

from eemwatchd.adapters.router import RouterSession, RouterTarget, read_known_hosts
from eemwatchd.errors import HostKeyRejected
from eemwatchd_lab.router import DeviceSpec, LabDevice
from tests.support.router_adapter import FAST, PASSWORD, adapter_router_spec


def _line(host: str, port: int, key: asyncssh.SSHKey) -> str:
    return f"[{host}]:{port} {key.export_public_key().decode().strip()}\n"


def _replace(path: Path, text: str) -> None:
    """As `ssh-keygen -R` and editors do: a new file renamed over the old one."""
    tmp = path.with_suffix(".new")
    tmp.write_text(text)
    os.replace(tmp, path)


@pytest.fixture
def router_spec(tmp_path: Path) -> DeviceSpec:
    """The lab router of the adapter tests."""
    return adapter_router_spec(tmp_path)


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


async def test_a_replaced_key_is_refused_at_the_next_login(router: LabDevice, tmp_path: Path) -> None:
    path = tmp_path / "known_hosts"
    path.write_text(router.known_hosts_line() + "\n")
    target = RouterTarget("r1", router.host, router.port, "admin", password=PASSWORD, known_hosts=path, timeouts=FAST)
    for _ in range(2):  # the second login uses the parsed file
        async with RouterSession(target) as session:
            assert (await session.read_snapshot()).hostname == "r1"
    _replace(path, _line(router.host, router.port, asyncssh.generate_private_key("ssh-ed25519")))
    with pytest.raises(HostKeyRejected, match="does NOT match"):
        async with RouterSession(target):
            pass
    _replace(path, router.known_hosts_line() + "\n")
    async with RouterSession(target) as session:
        assert (await session.read_snapshot()).hostname == "r1"


async def test_a_malformed_known_hosts_file_is_refused_naming_it(router: LabDevice, tmp_path: Path) -> None:
    path = tmp_path / "known_hosts"
    path.write_text("garbage-line\n" + router.known_hosts_line() + "\n")
    target = RouterTarget("r1", router.host, router.port, "admin", password=PASSWORD, known_hosts=path, timeouts=FAST)
    with pytest.raises(HostKeyRejected, match=f"known_hosts file {path} cannot be used: .*garbage-line"):
        async with RouterSession(target):
            pass


# --- ciphers ---------------------------------------------------------------------------------------------


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
