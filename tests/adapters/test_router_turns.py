"""Round trips of the router adapter, counted by the lab's WAN link (eemwatchd_lab.wan), not by the adapter.

A turn is the client speaking again after the router answered; over a WAN each costs a round trip. The
adapter writes one `command\\n` per command and types ahead what IOS takes as type-ahead (docs/design.md),
so: a plan session's reads are one turn after the terminal set-up, an install on a free name five. And a
line of the trustpoint definition that the router does not take still stops the install before
`crypto pki authenticate` runs (the whole echo is checked).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from eemwatchd.adapters.router import RouterSession, RouterTarget, RouterTimeouts
from eemwatchd.errors import CommandFailed, CommandRefused
from eemwatchd_lab.pki import GmailShapedPki
from eemwatchd_lab.router import DeviceSpec, LabDevice, User, Wan
from tests.support.router_adapter import MAIL_PASSWORD, adapter_applet_config, adapter_mail_server

PASSWORD = "ssh-pw-2213"
FAST = RouterTimeouts(connect=5.0, command=5.0, running_config=5.0, change=5.0, poll_interval=0.5, fire_grace=1.0)
DEFINITION = ("crypto pki trustpoint EEMW-T", "enrollment terminal", "revocation-check none", "chain-validation stop")


async def _device(tmp_path: Path, wan: Wan, users: tuple[User, ...] = (User("admin", PASSWORD),)) -> LabDevice:
    device = LabDevice(DeviceSpec("t1", tmp_path / "t1", hostname="T1", users=users, wan=wan))
    await device.start()
    return device


@pytest.fixture
async def wan_router(tmp_path: Path) -> AsyncIterator[LabDevice]:
    device = await _device(tmp_path, Wan(0.01))
    try:
        yield device
    finally:
        await device.stop()


def _target(lab: LabDevice, tmp_path: Path, username: str = "admin") -> RouterTarget:
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(lab.known_hosts_line() + "\n")
    return RouterTarget("t1", lab.host, lab.port, username, password=PASSWORD, known_hosts=known_hosts, timeouts=FAST)


async def _turns(lab: LabDevice) -> int:
    """The turns of the link's last connection, once the relay saw it end."""
    session = lab.link_sessions[-1]
    async with asyncio.timeout(3):
        while session.closed is None:
            await asyncio.sleep(0.005)
    return session.turns


def _so_far(lab: LabDevice) -> int:
    """The turns of the open connection so far. Counted from here: how many round trips SSH's own handshake
    takes varies by one with packet timing (whether the router's version and KEXINIT arrive together), ours
    do not."""
    return lab.link_sessions[-1].turns


@pytest.mark.breaks_invariants("save")  # the adapter saves on its own here, below the reconciler
async def test_a_plan_sessions_reads_are_one_turn(wan_router: LabDevice, tmp_path: Path) -> None:
    lab = wan_router
    target = _target(lab, tmp_path)
    async with RouterSession(target) as session:
        opened = _so_far(lab)  # SSH up to the shell and the terminal set-up (one write)
        snapshot = await session.read_snapshot()
        saved = await session.read_saved_trustpoints()  # read with the snapshot: no turn of its own
    assert await _turns(lab) - opened == 2  # the reads; `exit` with the close
    assert snapshot.hostname == "T1"
    assert snapshot.clock is not None
    assert saved == {}
    # after a change the saved trustpoints are read again, not taken from before it (the lab's startup-config
    # was empty; saved, it holds the SLA-TrustPoint every IOS XE box has)
    async with RouterSession(target) as session:
        opened = _so_far(lab)
        await session.read_snapshot()
        await session.save_config()
        assert await session.read_saved_trustpoints() == {"SLA-TrustPoint": ("01",)}
    assert await _turns(lab) - opened == 4


async def test_login_asks_for_password_before_keyboard_interactive(
    wan_router: LabDevice, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    lab = wan_router
    caplog.set_level(logging.DEBUG, logger="asyncssh")
    async with RouterSession(_target(lab, tmp_path)):
        pass
    tried = [r.getMessage().rsplit("] ", 1)[-1] for r in caplog.records if "Trying " in r.getMessage()]
    assert "Trying password auth" in tried, tried
    assert "Trying keyboard-interactive auth" not in tried  # asked first, it costs a round trip more


async def test_an_install_on_a_free_name_is_five_turns_and_a_retire_three(
    wan_router: LabDevice, tmp_path: Path, wall_clock_pki: GmailShapedPki
) -> None:
    lab = wan_router
    pki = wall_clock_pki
    target = _target(lab, tmp_path)
    cert = pki.old_root.cert
    # is the name free? / the definition (configure terminal typed ahead) / authenticate / the paste /
    # `end` and the read-back; then `exit`
    async with RouterSession(target) as session:
        opened = _so_far(lab)
        await session.install_certificate("EEMW-T", cert)
    assert await _turns(lab) - opened == 5 + 1
    assert lab.state.trustpoints["EEMW-T"].ca_cert == cert
    # removal (configure terminal typed ahead) / the confirmation / `end` and the read-back; then `exit`
    async with RouterSession(target) as session:
        opened = _so_far(lab)
        await session.retire_trustpoint("EEMW-T")
    assert await _turns(lab) - opened == 3 + 1
    assert "EEMW-T" not in lab.state.trustpoints


class _Executed(dict[str, str]):
    """A `command_errors` fault (these errors, else nothing) that records every line the device executed."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__(errors)
        self.lines: list[str] = []

    def get(self, key: str, default: str | None = None) -> str | None:  # type: ignore[override]
        self.lines.append(key)
        return super().get(key, default)


@pytest.mark.parametrize(
    ("allowed", "errors", "failed", "kind"),
    [
        pytest.param(("show", "terminal", "configure", "crypto", "enrollment", "chain-validation", "fingerprint",
                      "end", "exit"), {}, "revocation-check none", CommandRefused, id="aaa-refuses-a-setting"),
        pytest.param(None, {"chain-validation stop": "                    ^\n% Invalid input detected at '^' marker."},
                     "chain-validation stop", CommandFailed, id="invalid-input"),
        pytest.param(("show", "terminal", "end"), {}, "configure terminal", CommandRefused,
                     id="aaa-refuses-configure-terminal"),
        pytest.param(None, {"crypto pki trustpoint EEMW-T": "Trustpoint EEMW-T is being modified"},
                     "crypto pki trustpoint EEMW-T", CommandFailed, id="trustpoint-mode-not-entered"),
    ],
)
async def test_a_definition_line_the_router_does_not_take_stops_the_install_before_anything_is_trusted(
    tmp_path: Path, wall_clock_pki: GmailShapedPki, allowed: tuple[str, ...] | None, errors: dict[str, str],
    failed: str, kind: type[CommandFailed],
) -> None:
    pki = wall_clock_pki
    lab = await _device(tmp_path, Wan(0.005), users=(User("admin", PASSWORD, allowed_commands=allowed),))
    try:
        executed = _Executed(errors)
        lab.spec.faults.command_errors = executed
        async with RouterSession(_target(lab, tmp_path)) as session:
            with pytest.raises(kind) as info:
                await session.install_certificate("EEMW-T", pki.old_root.cert)
            assert info.value.command == failed
            # the session is still usable and back in privileged EXEC
            assert (await session.read_snapshot()).hostname == "T1"
        tp = lab.state.trustpoints.get("EEMW-T")
        assert tp is None or tp.ca_cert is None
        assert not any(line.startswith("crypto pki authenticate") for line in executed.lines)
        # every line of the definition reached the router in the same write, the refused one too
        if failed != "configure terminal":
            assert [line for line in executed.lines if line in DEFINITION] == list(DEFINITION)
    finally:
        await lab.stop()


async def test_a_test_fire_over_a_wan_is_one_write_and_a_look(tmp_path: Path, wall_clock_pki: GmailShapedPki) -> None:
    pki = wall_clock_pki
    smtp = await adapter_mail_server(pki)
    lab = await _device(tmp_path, Wan(0.15))
    try:
        lab.state.apply_config(adapter_applet_config(smtp.port))
        target = _target(lab, tmp_path)
        async with RouterSession(target) as session:
            await session.install_certificate("EEMW-OLD-ROOT", pki.old_root.cert)
            before = lab.link_sessions[-1].turns
            result = await session.fire_applet("MAIL-TEST", maxrun=15.0, success_messages=("mail sent to $_email_to",))
            during = lab.link_sessions[-1].turns - before
        assert result.ok, result
        assert MAIL_PASSWORD not in result.evidence
        # the history, the log marker and the run in one write; then looks (history and log in one write),
        # the first as soon as the run was answered: the lab's job ends within the round trip it had
        assert during <= 3, during
        await smtp.wait_for_messages(1)
    finally:
        await lab.stop()
        await smtp.stop()
