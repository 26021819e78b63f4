"""Router adapter: key-file login, `enable` escalation, dropped connections and crash safety.

Everything runs against lab routers on 127.0.0.1 over real SSH. The `drop after N commands` fault is also
checked with a raw asyncssh client, so the simulator and the adapter cannot share a mistake unnoticed.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, replace
from pathlib import Path

import asyncssh
import pytest

from eemwatchd.adapters.router import RouterSession, RouterTarget, RouterTimeouts
from eemwatchd.errors import AuthenticationFailed, CommandFailed, RouterError, RouterUnreachable
from eemwatchd_lab.pki import GmailShapedPki
from eemwatchd_lab.router import DeviceSpec, LabDevice, User, server
from tests.support.ssh import RawClient

pytestmark = pytest.mark.timeout(10)

ADMIN_PASSWORD = "adm-pw-9931"
OPER_PASSWORD = "oper-pw-2718"
ENABLE_SECRET = "en-secret-3141"
WRONG_SECRET = "en-wrong-1618"
FAST = RouterTimeouts(connect=3.0, command=3.0, running_config=3.0, change=3.0, poll_interval=0.1, fire_grace=1.0)
SECRETS = (ADMIN_PASSWORD, OPER_PASSWORD, ENABLE_SECRET, WRONG_SECRET)


@dataclass
class RouterAccess:
    """The router and what it takes to reach it: its pinned host key, the key file of `robot`."""

    device: LabDevice
    known_hosts: Path
    key_file: Path
    tmp: Path

    def target(self, username: str, **kwargs: object) -> RouterTarget:
        d = self.device
        base = RouterTarget("r1", d.host, d.port, username, known_hosts=self.known_hosts, timeouts=FAST)
        return replace(base, **kwargs)  # type: ignore[arg-type]


def _write_key(path: Path, key: asyncssh.SSHKey) -> Path:
    path.write_bytes(key.export_private_key())
    path.chmod(0o600)
    return path


@pytest.fixture
def robot_key() -> asyncssh.SSHKey:
    return asyncssh.generate_private_key("ssh-ed25519")


@pytest.fixture
def router_spec(tmp_path: Path, robot_key: asyncssh.SSHKey) -> DeviceSpec:
    """An admin, `robot` with a key and no password at all, a privilege-1 user and an enable secret."""
    return DeviceSpec(
        "r1",
        tmp_path / "r1",
        hostname="R1",
        users=(
            User("admin", ADMIN_PASSWORD),
            User("robot", public_keys=(robot_key.export_public_key().decode().strip(),)),  # no password at all
            User("oper", OPER_PASSWORD, privilege=1),
        ),
        enable_secret=ENABLE_SECRET,
    )


@pytest.fixture
def access(router: LabDevice, robot_key: asyncssh.SSHKey, tmp_path: Path) -> RouterAccess:
    key_file = _write_key(tmp_path / "id_ed25519", robot_key)
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(router.known_hosts_line() + "\n")
    return RouterAccess(router, known_hosts, key_file, tmp_path)


def _no_secrets(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text, "a secret leaked"


# --- 1. key-file login ------------------------------------------------------------------------------------


async def test_key_file_login_reads_a_snapshot(access: RouterAccess, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    target = access.target("robot", key_file=access.key_file)
    assert target.password is None
    async with RouterSession(target) as session:
        snapshot = await session.read_snapshot()
    assert snapshot.hostname == "R1"
    assert snapshot.trustpoint("SLA-TrustPoint") is not None
    assert snapshot.clock is not None
    assert access.key_file.read_text() not in caplog.text


async def test_wrong_key_is_authentication_failed(access: RouterAccess, monkeypatch: pytest.MonkeyPatch) -> None:
    attempts: list[str] = []
    # count the password attempts the server sees: a key-only login must send none
    original = server._SshServer.validate_password

    def counting(self: server._SshServer, username: str, password: str) -> bool:
        attempts.append(username)
        return original(self, username, password)

    monkeypatch.setattr(server._SshServer, "validate_password", counting)
    other = _write_key(access.tmp / "other_key", asyncssh.generate_private_key("ssh-ed25519"))
    with pytest.raises(AuthenticationFailed) as info:
        await RouterSession(access.target("robot", key_file=other)).open()
    message = str(info.value)
    assert "user 'robot' was refused" in message
    assert f"key file {other}" in message
    assert not info.value.temporary
    assert other.read_text() not in message
    assert attempts == []  # no empty-password attempt behind the key


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        pytest.param(None, "No such file", id="missing"),
        pytest.param(b"not a key\n", "Invalid private key", id="garbage"),
        pytest.param("encrypted", "Passphrase must be specified", id="encrypted"),
    ],
)
async def test_unusable_key_file_is_authentication_failed(access: RouterAccess, content: object, reason: str) -> None:
    path = access.tmp / "unusable_key"
    if content == "encrypted":
        path.write_bytes(asyncssh.generate_private_key("ssh-ed25519").export_private_key(passphrase="pp-1"))
    elif isinstance(content, bytes):
        path.write_bytes(content)
    session = RouterSession(access.target("robot", key_file=path))
    with pytest.raises(AuthenticationFailed, match=f"cannot use key file {path}: .*{reason}"):
        await session.open()
    with pytest.raises(RouterError, match="opened once"):
        await session.open()


# --- 2. enable-secret escalation ----------------------------------------------------------------------------


async def test_privilege_1_user_lands_in_user_exec(access: RouterAccess) -> None:
    client = await RawClient.open(access.device, username="oper", password=OPER_PASSWORD)
    try:
        assert await client.read_until(r"R1[#>]") == "\r\nR1>"
    finally:
        await client.close()


async def test_enable_secret_escalates_and_installs_a_ca(
    access: RouterAccess, pki: GmailShapedPki, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    cert = pki.old_root.cert
    target = access.target("oper", password=OPER_PASSWORD, enable_secret=ENABLE_SECRET)
    async with RouterSession(target) as session:
        await session.install_certificate("EEMW-ENABLE", cert)
        held = (await session.read_snapshot()).trustpoint("EEMW-ENABLE")
    assert held is not None
    assert held.ca_certificates == (cert,)
    assert access.device.state.trustpoints["EEMW-ENABLE"].ca_cert == cert
    assert any("Configured from console by oper" in line for line in access.device.state.log_lines)
    _no_secrets(caplog.text, repr(target))


async def test_wrong_enable_secret_is_a_typed_error_and_changes_nothing(
    access: RouterAccess, pki: GmailShapedPki, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    state = access.device.state
    before = (set(state.trustpoints), state.last_change, list(state.log_lines))
    target = access.target(
        "oper", password=OPER_PASSWORD, enable_secret=WRONG_SECRET, timeouts=replace(FAST, command=1.0)
    )
    session = RouterSession(target)
    with pytest.raises(AuthenticationFailed) as info:
        await session.open()
    assert "`enable`" in str(info.value)
    assert "enable secret" in str(info.value)
    with pytest.raises(RouterError):
        await session.install_certificate("EEMW-NEVER", pki.old_root.cert)
    assert (set(state.trustpoints), state.last_change, state.log_lines) == before
    _no_secrets(str(info.value), caplog.text)


async def test_missing_enable_secret_fails_fast_without_a_warning(access: RouterAccess) -> None:
    started = asyncio.get_running_loop().time()
    with pytest.raises(AuthenticationFailed, match="no enable secret is set"):
        await RouterSession(access.target("oper", password=OPER_PASSWORD)).open()
    assert asyncio.get_running_loop().time() - started < FAST.command  # not waiting out a `Password:` prompt


# --- 3. fault: drop after N commands ------------------------------------------------------------------------


async def test_drop_after_commands_with_a_raw_client(access: RouterAccess) -> None:
    access.device.spec.faults.drop_after_commands = 3
    client = await RawClient.open(access.device, username="admin", password=ADMIN_PASSWORD)
    assert await client.read_until(r"R1#") == "\r\nR1#"
    assert await client.cmd("terminal length 0") == "terminal length 0\r\nR1#"
    assert await client.cmd("") == "\r\nR1#"  # an empty line is not a command
    assert " UTC " in await client.cmd("show clock")
    out = await client.cmd("show bogus")  # an invalid command is still a command executed
    assert "% Invalid input detected at '^' marker." in out
    client.send("show version\n")  # the 4th command: the connection closes, no output
    with pytest.raises(EOFError) as info:
        await client.read_until("R1#")
    assert "Cisco IOS XE Software" not in str(info.value)
    await asyncio.wait_for(client.conn.wait_closed(), 2.0)

    # the count is per session: a new login gets its own three commands
    again = await RawClient.open(access.device, username="admin", password=ADMIN_PASSWORD)
    await again.read_until("R1#")
    for line in ("terminal length 0", "terminal width 200", "show clock"):
        await again.cmd(line)
    access.device.spec.faults.drop_after_commands = None  # faults change while the device runs
    assert "Cisco IOS XE Software" in await again.cmd("show version")
    await again.close()


async def test_drop_after_commands_with_the_adapter(access: RouterAccess) -> None:
    # scrapli's open runs `terminal length 0` and `terminal width 512`: command 3 is `show running-config`.
    target = access.target("admin", password=ADMIN_PASSWORD)
    faults = access.device.spec.faults
    faults.drop_after_commands = 3
    session = RouterSession(target)
    await session.open()
    with pytest.raises(RouterUnreachable, match="connection lost during show clock") as info:
        await session.read_snapshot()
    assert info.value.temporary
    with pytest.raises(RouterError, match="not usable"):
        await session.read_snapshot()
    with pytest.raises(RouterError, match="opened once"):
        await session.open()
    await session.close()

    faults.drop_after_commands = 1  # dropped while scrapli sets up the terminal
    with pytest.raises(RouterUnreachable):
        await RouterSession(target).open()

    faults.drop_after_commands = None
    async with RouterSession(target) as fresh:
        assert (await fresh.read_snapshot()).hostname == "R1"


async def test_a_drop_at_any_command_of_an_install_leaves_no_half_installed_ca(
    access: RouterAccess, pki: GmailShapedPki
) -> None:
    """Every cut point of open + install: the device holds nothing, an empty trustpoint, or the full CA."""
    target = access.target("admin", password=ADMIN_PASSWORD)
    cert = pki.old_root.cert
    faults = access.device.spec.faults
    outcomes: dict[int, str] = {}
    for n in range(20):
        name = f"EEMW-CUT{n:02d}"
        faults.drop_after_commands = n
        try:
            async with RouterSession(target) as session:
                await session.install_certificate(name, cert)
            outcomes[n] = "installed"
        except RouterUnreachable:
            outcomes[n] = "dropped"
        finally:
            faults.drop_after_commands = None
        tp = access.device.state.trustpoints.get(name)
        assert tp is None or tp.ca_cert is None or tp.ca_cert == cert
        if outcomes[n] == "installed":
            assert tp is not None
            assert tp.ca_cert == cert
            break
    assert "dropped" in outcomes.values()
    assert list(outcomes.values())[-1] == "installed"


# --- 4. crash safety: the connection drops inside `crypto pki authenticate` ----------------------------------


async def test_drop_inside_install_then_reconnect_and_install_again(access: RouterAccess, pki: GmailShapedPki) -> None:
    target = access.target("admin", password=ADMIN_PASSWORD)
    cert = pki.old_root.cert
    name = f"EEMW-{cert.short_fingerprint}"
    access.device.spec.faults.drop_at_command = "crypto pki authenticate"
    crashed = RouterSession(target)
    async with crashed:
        with pytest.raises(RouterUnreachable, match="connection lost during crypto pki authenticate"):
            await crashed.install_certificate(name, cert)
        with pytest.raises(RouterError, match="not usable"):
            await crashed.read_snapshot()
    access.device.spec.faults.drop_at_command = None

    async with RouterSession(target) as session:
        left = (await session.read_snapshot()).trustpoint(name)
        # the trustpoint was created before the cut: it is left empty (no CA certificate, no chain)
        assert left is not None
        assert left.ca_certificates == ()
        assert access.device.state.trustpoints[name].ca_cert is None
        # the adapter never installs into an existing trustpoint; the plan retires the empty one first
        with pytest.raises(CommandFailed, match="already exists"):
            await session.install_certificate(name, cert)
        await session.retire_trustpoint(name)  # empty: no confirmation question
        await session.install_certificate(name, cert)
        held = (await session.read_snapshot()).trustpoint(name)
    assert held is not None
    assert held.ca_certificates == (cert,)
    assert access.device.state.trustpoints[name].ca_cert == cert


async def test_eof_in_the_middle_of_the_paste_installs_nothing(access: RouterAccess, pki: GmailShapedPki) -> None:
    """A raw client cuts the connection halfway through the PEM: the simulator must not import anything."""
    client = await RawClient.open(access.device, username="admin", password=ADMIN_PASSWORD)
    await client.read_until("R1#")
    await client.cmd("configure terminal")
    for line in ("crypto pki trustpoint EEMW-HALF", "enrollment terminal", "exit"):
        await client.cmd(line)
    client.send("crypto pki authenticate EEMW-HALF\n")
    await client.read_until("on a line by itself")
    pem = pki.old_root.cert.pem.splitlines()
    client.send("\n".join(pem[: len(pem) // 2]) + "\n")
    client.conn.abort()
    vtys = access.device._vtys
    async with asyncio.timeout(3):
        while vtys:
            await asyncio.sleep(0.02)
    tp = access.device.state.trustpoints["EEMW-HALF"]
    assert tp.ca_cert is None


# --- issue 8 sec. 6: SHA-1 SSH algorithms only when a router is set to legacy_algorithms --------------------

OLD_IMAGE = {"kex_algs": ["diffie-hellman-group14-sha1"], "mac_algs": ["hmac-sha1"],
             "encryption_algs": ["aes128-ctr"]}


@pytest.mark.parametrize("legacy", [False, True], ids=["strict-default", "legacy_algorithms"])
async def test_sha1_only_router_needs_legacy_algorithms(tmp_path: Path, legacy: bool) -> None:
    device = LabDevice(DeviceSpec("old", tmp_path / "old", users=(User("admin", "pw-1"),),
                                  ssh_algorithms=OLD_IMAGE))
    await device.start()
    try:
        known_hosts = tmp_path / "known_hosts"
        known_hosts.write_text(device.known_hosts_line() + "\n")
        target = RouterTarget("old", device.host, device.port, "admin", password="pw-1", known_hosts=known_hosts,
                              legacy_algorithms=legacy, timeouts=RouterTimeouts(connect=5.0, command=5.0))
        if legacy:
            async with RouterSession(target) as session:
                assert (await session.read_snapshot()).hostname
        else:
            with pytest.raises(RouterUnreachable, match=r"(?i)key exchange|no matching"):
                async with RouterSession(target):
                    pass
    finally:
        await device.stop()
