"""The router adapter against lab routers on 127.0.0.1 over real SSH, and a lab SMTP server for test-fires."""

from __future__ import annotations

import asyncio
import logging
import re
import socket
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from eemwatchd.adapters.router import RouterSession, RouterTarget, record_first_host_key
from eemwatchd.core.certificate import Certificate
from eemwatchd.core.ios.formats import render_certificate_block
from eemwatchd.errors import (
    AuthenticationFailed,
    CommandFailed,
    CommandRefused,
    HostKeyRejected,
    RouterError,
    RouterTimeout,
    RouterUnreachable,
)
from eemwatchd_lab.pki import GmailShapedPki
from eemwatchd_lab.router import SilentPeer
from eemwatchd_lab.router.device import DeviceSpec, User
from eemwatchd_lab.router.pki import sla_root
from eemwatchd_lab.router.server import LabDevice
from tests.support.router_adapter import (
    FAST,
    MAIL_PASSWORD,
    PASSWORD,
    adapter_applet_config,
    adapter_mail_server,
    adapter_router_spec,
)


@pytest.fixture
def router_spec(tmp_path: Path) -> DeviceSpec:
    return adapter_router_spec(tmp_path)


async def test_read_snapshot(router: LabDevice, router_target: RouterTarget) -> None:
    router.state.apply_config(adapter_applet_config(2525))
    async with RouterSession(router_target) as session:
        snapshot = await session.read_snapshot()
    assert snapshot.hostname == "r1"
    sla = snapshot.trustpoint("SLA-TrustPoint")
    assert sla is not None
    assert sla.ca_certificates == (sla_root(),)
    assert snapshot.clock is not None
    assert abs(snapshot.clock - datetime.now(UTC)) < timedelta(seconds=5)
    assert snapshot.environment["_email_server"] == f"alerts:{MAIL_PASSWORD}@127.0.0.1"
    applet = snapshot.applet("MAIL-TEST")
    assert applet is not None
    assert applet.is_event_none
    assert applet.maxrun == 15.0
    assert applet.mail_actions[0].port == 2525
    assert applet.syslog_messages_after_mail() == ("mail sent to $_email_to",)
    assert MAIL_PASSWORD not in repr(snapshot)


@pytest.mark.breaks_invariants("save")  # the adapter's save, without the reconciler's test-fire before it
async def test_install_and_retire_round_trip(
    router: LabDevice, router_target: RouterTarget, wall_clock_pki: GmailShapedPki, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="eemwatchd.router")
    root = wall_clock_pki.old_root.cert
    name = f"EEMW-{root.short_fingerprint}"
    async with RouterSession(router_target) as session:
        await session.install_certificate(name, root)
        tp = (await session.read_snapshot()).trustpoint(name)
        assert tp is not None
        assert tp.ca_certificates == (root,)
        assert (tp.enrollment, tp.revocation_check, tp.chain_validation) == ("terminal", "none", "stop")
        assert tp.fingerprint == root.sha1_hex
        assert router.state.trustpoints[name].ca_cert == root  # the device's own view, not our parser's

        with pytest.raises(CommandFailed, match="already exists"):
            await session.install_certificate(name, wall_clock_pki.new_root.cert)

        await session.retire_trustpoint(name)
        assert (await session.read_snapshot()).trustpoint(name) is None
        assert name not in router.state.trustpoints

        with pytest.raises(CommandFailed) as info:
            await session.retire_trustpoint(name)
        assert info.value.command == f"no crypto pki trustpoint {name}"

        await session.save_config()
    assert (router.spec.state_dir / "startup-config").exists()
    events = [getattr(r, "event", None) for r in caplog.records]
    assert events.count("certificate_installed") == 1
    assert events.count("trustpoint_retired") == 1
    installed = next(r for r in caplog.records if getattr(r, "event", None) == "certificate_installed")
    assert root.sha256 in installed.getMessage()
    assert name in installed.getMessage()
    assert PASSWORD not in caplog.text


async def test_install_second_ca_into_same_trustpoint_is_refused_by_the_device(
    router: LabDevice, router_target: RouterTarget, wall_clock_pki: GmailShapedPki
) -> None:
    """The device's own refusal (a CA is already held) comes back as CommandFailed with its text."""
    async with RouterSession(router_target) as session:
        await session.install_certificate("EEMW-A", wall_clock_pki.old_root.cert)
        with pytest.raises(CommandFailed) as info:
            await session._authenticate("EEMW-A", wall_clock_pki.new_root.cert)
        assert "delete your existing CA certificate" in info.value.output
        assert router.state.trustpoints["EEMW-A"].ca_cert == wall_clock_pki.old_root.cert


@pytest.mark.parametrize(
    ("known_hosts", "message"),
    [
        pytest.param("absent", "does not exist", id="no-file"),
        pytest.param("empty", "is not in", id="unknown"),
        pytest.param("other-key", "does NOT match", id="changed"),
    ],
)
async def test_host_key_refused(router: LabDevice, tmp_path: Path, known_hosts: str, message: str) -> None:
    path = tmp_path / "kh"
    if known_hosts == "empty":
        path.write_text("")
    elif known_hosts == "other-key":
        other = LabDevice(DeviceSpec("other", tmp_path / "other"))
        await other.start()
        await other.stop()
        path.write_text(f"[{router.host}]:{router.port} " + other.known_hosts_line().split(" ", 1)[1] + "\n")
    target = RouterTarget("r1", router.host, router.port, "admin", password=PASSWORD, known_hosts=path, timeouts=FAST)
    with pytest.raises(HostKeyRejected) as info:
        async with RouterSession(target):
            pass
    assert message in str(info.value)
    assert f"ssh-keyscan -p {router.port} {router.host}" in str(info.value)
    assert PASSWORD not in str(info.value)


async def test_trust_on_first_use(router: LabDevice, tmp_path: Path) -> None:
    path = tmp_path / "ssh" / "known_hosts"
    tofu = RouterTarget(
        "r1",
        router.host,
        router.port,
        "admin",
        password=PASSWORD,
        known_hosts=path,
        trust_on_first_use=True,
        timeouts=FAST,
    )
    async with RouterSession(tofu) as session:
        assert (await session.read_snapshot()).hostname == "r1"
    assert path.read_text() == router.known_hosts_line() + "\n"
    assert path.stat().st_mode & 0o777 == 0o600
    assert await record_first_host_key(tofu) is False  # recorded once, never again

    pinned = replace(tofu, trust_on_first_use=False)
    async with RouterSession(pinned) as session:
        await session.read_snapshot()

    await router.change_host_key()
    for variant in (tofu, pinned):  # TOFU never replaces a recorded key
        with pytest.raises(HostKeyRejected, match="does NOT match"):
            await RouterSession(variant).open()
    assert path.read_text().count("\n") == 1


async def test_authentication_failed(router_target: RouterTarget) -> None:
    wrong = replace(router_target, password="not-the-password")
    with pytest.raises(AuthenticationFailed) as info:
        await RouterSession(wrong).open()
    assert "not-the-password" not in str(info.value)


async def test_unreachable_port(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    path = tmp_path / "kh"
    path.write_text("")
    target = RouterTarget("r9", "127.0.0.1", port, "admin", password=PASSWORD, known_hosts=path, timeouts=FAST)
    with pytest.raises(RouterUnreachable) as info:
        await RouterSession(target).open()
    assert info.value.temporary
    tofu = replace(target, trust_on_first_use=True)
    with pytest.raises(RouterUnreachable):
        await RouterSession(tofu).open()


async def test_session_is_used_once(router_target: RouterTarget) -> None:
    session = RouterSession(router_target)
    async with session:
        await session.read_snapshot()
    with pytest.raises(RouterError, match="not usable"):
        await session.read_snapshot()
    with pytest.raises(RouterError, match="opened once"):
        await session.open()


async def test_fire_applet_success(
    router: LabDevice, router_target: RouterTarget, wall_clock_pki: GmailShapedPki
) -> None:
    smtp = await adapter_mail_server(wall_clock_pki)
    try:
        router.state.apply_config(adapter_applet_config(smtp.port))
        async with RouterSession(router_target) as session:
            # The served top is the new root cross-signed by the old one: IOS needs the OLD root
            # (field notes sec. 1b).
            await session.install_certificate("EEMW-OLD-ROOT", wall_clock_pki.old_root.cert)
            snapshot = await session.read_snapshot()
            applet = snapshot.applet("MAIL-TEST")
            assert applet is not None
            result = await session.fire_applet(
                "MAIL-TEST",
                maxrun=applet.effective_maxrun,
                success_messages=applet.syslog_messages_after_mail(),
            )
        assert result.ok, result
        # Either proof may come first: the applet logs its success line, then the job ends and its row appears;
        # a look between the two sees the line (both are this run's, after our marker).
        if result.reason == "the applet ran to its end after its mail action":
            assert re.match(r"show event manager history events: job \d+ success .+ none applet: MAIL-TEST; "
                            r".*%HA_EM-6-LOG: MAIL-TEST: mail sent to noc@example.com", result.evidence), result
        else:
            assert result.reason == "the applet logged its success line", result
            assert "%HA_EM-6-LOG: MAIL-TEST: mail sent to noc@example.com" in result.evidence
        assert any("mail sent to noc@example.com" in line for line in result.lines)
        assert result.marker.startswith("eemwatchd-test-fire-")
        assert MAIL_PASSWORD not in result.evidence
        (message,) = await smtp.wait_for_messages(1)
        assert "EEM mail test" in str(message)
    finally:
        await smtp.stop()


async def test_fire_applet_without_the_ca_fails_with_the_routers_lines(
    router: LabDevice, router_target: RouterTarget, wall_clock_pki: GmailShapedPki
) -> None:
    smtp = await adapter_mail_server(wall_clock_pki)
    try:
        router.state.apply_config(adapter_applet_config(smtp.port))
        async with RouterSession(router_target) as session:
            # the self-signed twin alone is not enough under IOS's strict rule
            await session.install_certificate("EEMW-NEW-ROOT", wall_clock_pki.new_root.cert)
            started = asyncio.get_running_loop().time()
            result = await session.fire_applet("MAIL-TEST", maxrun=15.0)
            elapsed = asyncio.get_running_loop().time() - started
        assert not result.ok
        assert [line.split(": ", 1)[1].split(":")[0] for line in result.lines] == [
            "%HA_EM-3-FMPD_SMTP",
            "%HA_EM-3-FMPD_ERROR",
        ]
        assert result.lines[-1].endswith("Error executing applet MAIL-TEST statement 0010")
        assert elapsed < 5.0  # judged on FMPD_ERROR, not after maxrun
        assert MAIL_PASSWORD not in "".join(result.lines)
        assert smtp.messages == []
    finally:
        await smtp.stop()


async def test_fire_applet_not_event_none_is_refused(router: LabDevice, router_target: RouterTarget) -> None:
    router.state.apply_config(adapter_applet_config(2525, event="timer watchdog time 3600"))
    async with RouterSession(router_target) as session:
        result = await session.fire_applet("MAIL-TEST", maxrun=5.0)
    assert not result.ok
    assert result.lines == ("EEM policy MAIL-TEST not registered with event none Event Detector",)
    assert result.evidence == "EEM policy MAIL-TEST not registered with event none Event Detector"


async def test_fire_applet_proves_a_run_by_its_history_row_without_a_success_line(
    router: LabDevice, router_target: RouterTarget
) -> None:
    router.state.apply_config(["event manager applet QUIET", " event none maxrun 60", ' action 1.0 syslog msg "hello"'])
    async with RouterSession(router_target) as session:
        started = asyncio.get_running_loop().time()
        result = await session.fire_applet("QUIET", maxrun=60.0)
        elapsed = asyncio.get_running_loop().time() - started
    assert result.ok
    assert result.evidence.startswith("show event manager history events: job ")
    assert " success " in result.evidence
    assert elapsed < 5.0  # as soon as the job ended, not after maxrun


# --- no evidence, no success (issue 8 sec. 1) ---------------------------------------------------------

SILENT_APPLET = [
    "event manager applet SILENT",
    " event none maxrun {maxrun}",
    ' action 0010 mail server "alerts:pw@127.0.0.1" to "noc@example.com" from "alerts" subject "t" body "b" '
    "secure tls port {port}",
    ' action 0020 syslog msg "mail sent"',
]


async def test_fire_applet_with_an_smtp_server_that_never_answers_fails_when_the_job_aborts(
    router: LabDevice, router_target: RouterTarget
) -> None:
    async with SilentPeer() as peer:
        router.state.apply_config([ln.format(maxrun=2, port=peer.port) for ln in SILENT_APPLET])
        async with RouterSession(router_target) as session:
            started = asyncio.get_running_loop().time()
            result = await session.fire_applet("SILENT", maxrun=2.0, success_messages=("mail sent",))
            elapsed = asyncio.get_running_loop().time() - started
        assert peer.accepted >= 1
    assert not result.ok
    # The job's `abort` row and its FMPD lines appear together; which one the poll reads first decides the words.
    assert "ended with status 'abort'" in result.reason or "FMPD_SMTP" in result.evidence
    assert "history" in result.evidence or "timeout error" in result.reason
    assert elapsed < 2.0 + FAST.fire_grace + 2.0


async def test_fire_applet_without_evidence_within_the_bound_is_a_failure(
    router: LabDevice, router_target: RouterTarget
) -> None:
    """The job still runs when our bound ends (its real maxrun is longer): no row, no success line -> failed."""
    async with SilentPeer() as peer:
        router.state.apply_config([ln.format(maxrun=30, port=peer.port) for ln in SILENT_APPLET])
        async with RouterSession(router_target) as session:
            result = await session.fire_applet("SILENT", maxrun=1.0, success_messages=("mail sent",))
        await router.state.cancel_jobs()
    assert not result.ok
    assert result.reason.startswith("could not prove mail works: no history row for this run")
    assert result.evidence == ""


async def test_fire_applet_when_the_log_buffer_drops_informational_messages(
    router: LabDevice, router_target: RouterTarget, wall_clock_pki: GmailShapedPki
) -> None:
    """The marker and the applet's success line are lost; the history row still proves the run."""
    smtp = await adapter_mail_server(wall_clock_pki)
    try:
        router.state.apply_config([*adapter_applet_config(smtp.port), "logging buffered 8192 warnings"])
        async with RouterSession(router_target) as session:
            await session.install_certificate("EEMW-OLD-ROOT", wall_clock_pki.old_root.cert)
            result = await session.fire_applet("MAIL-TEST", maxrun=15.0, success_messages=("mail sent to $_email_to",))
        assert result.ok, result
        assert result.lines == ()
        assert " success " in result.evidence
        assert len(await smtp.wait_for_messages(1)) == 1
    finally:
        await smtp.stop()


@pytest.mark.parametrize(
    ("allowed", "words"),
    [
        pytest.param(("show", "terminal", "send log"), "Command authorization failed.", id="aaa-refuses-the-run"),
    ],
)
async def test_fire_applet_refused_by_aaa_is_a_failure_in_the_routers_words(
    tmp_path: Path, allowed: tuple[str, ...], words: str
) -> None:
    device = LabDevice(DeviceSpec("aaa", tmp_path / "aaa", users=(User("ro", PASSWORD, allowed_commands=allowed),)))
    await device.start()
    try:
        device.state.apply_config(adapter_applet_config(2525))
        known_hosts = tmp_path / "known_hosts_aaa"
        known_hosts.write_text(device.known_hosts_line() + "\n")
        target = RouterTarget("aaa", device.host, device.port, "ro", password=PASSWORD, known_hosts=known_hosts,
                              timeouts=FAST)
        async with RouterSession(target) as session:
            result = await session.fire_applet("MAIL-TEST", maxrun=5.0)
    finally:
        await device.stop()
    assert not result.ok
    assert result.evidence == words
    assert result.reason == f"the router refused to run the applet: {words}"


async def test_a_refused_terminal_length_is_a_refusal_at_login_not_a_timeout_at_the_pager(
    router: LabDevice, router_target: RouterTarget
) -> None:
    """AAA refusing `terminal length 0` leaves paging on: every long output would stop at ` --More-- ` and the job
    wait for a prompt until its timeout, reported as `timeout` (found by the fault schedules: a refusal of the
    session's first line cost timeouts.total). It is a refusal naming the command, at once."""
    router.spec.faults.refuse_commands = frozenset({1})  # the first line of the session: `terminal length 0`
    started = asyncio.get_running_loop().time()
    with pytest.raises(CommandRefused) as info:
        async with RouterSession(router_target) as session:
            await session.read_snapshot()
    assert (info.value.router, info.value.command) == ("r1", "terminal length 0")
    assert "Command authorization failed." in str(info.value)
    assert asyncio.get_running_loop().time() - started < FAST.command


async def test_device_error_during_paste_is_command_failed_and_cleaned_up(
    router: LabDevice, router_target: RouterTarget, wall_clock_pki: GmailShapedPki
) -> None:
    error = "% Error in saving certificate: status = FAIL"
    router.spec.faults.command_errors = {"crypto pki authenticate EEMW-X": error}
    async with RouterSession(router_target) as session:
        with pytest.raises(CommandFailed) as info:
            await session.install_certificate("EEMW-X", wall_clock_pki.old_root.cert)
        assert info.value.command == "crypto pki authenticate EEMW-X"
        assert error in info.value.output
        # a clean refusal leaves a usable session and no half-made trustpoint
        assert (await session.read_snapshot()).trustpoint("EEMW-X") is None
    assert "EEMW-X" not in router.state.trustpoints


async def test_dropped_connection_mid_dialogue_abandons_the_session(
    router: LabDevice, router_target: RouterTarget, wall_clock_pki: GmailShapedPki
) -> None:
    router.spec.faults.drop_at_command = "crypto pki authenticate"
    session = RouterSession(router_target)
    async with session:
        with pytest.raises(RouterUnreachable, match="connection lost during crypto pki authenticate"):
            await session.install_certificate("EEMW-Y", wall_clock_pki.old_root.cert)
        with pytest.raises(RouterError, match="not usable"):
            await session.read_snapshot()


async def test_slow_device_times_out_with_the_step(router: LabDevice, router_target: RouterTarget) -> None:
    slow = replace(router_target, timeouts=replace(FAST, running_config=0.5))
    session = RouterSession(slow)
    async with session:
        router.spec.faults.output_delay = 2.0
        with pytest.raises(RouterTimeout) as info:
            await session.read_snapshot()
        assert info.value.step == "show running-config"
        with pytest.raises(RouterError, match="not usable"):
            await session.read_snapshot()


class _LyingRouter(RouterSession):
    """Reads back another certificate than the one sent: the install must not be trusted."""

    def __init__(self, target: RouterTarget, *, sent: Certificate, shown: Certificate) -> None:
        super().__init__(target)
        self._sent, self._shown = sent, shown

    async def _command(self, command: str, *, timeout: float | None = None) -> str:
        output = await super()._command(command, timeout=timeout)
        if not command.startswith("show running-config"):  # the whole config, or the trustpoint's sections
            return output
        lines = [line.strip() for line in output.splitlines()]
        sent = [line.strip() for line in render_certificate_block(self._sent)]
        for i in range(len(lines)):
            if lines[i : i + len(sent)] == sent:
                lines[i : i + len(sent)] = render_certificate_block(self._shown)
        return "\n".join(lines)


async def test_install_is_verified_by_der(
    router: LabDevice, router_target: RouterTarget, wall_clock_pki: GmailShapedPki
) -> None:
    sent, shown = wall_clock_pki.old_root.cert, wall_clock_pki.new_root.cert
    async with _LyingRouter(router_target, sent=sent, shown=shown) as session:
        with pytest.raises(CommandFailed, match="holds"):
            await session.install_certificate("EEMW-Z", sent)


# --- issue 11: the verdict holds with every log and clock style a real router may have ------------------------

@pytest.mark.parametrize(
    ("settings", "offset"),
    [
        pytest.param(["service sequence-numbers"], timedelta(0), id="sequence-numbers"),
        pytest.param(["clock timezone CET 1 0", "service timestamps log datetime msec localtime show-timezone"],
                     timedelta(0), id="localtime-show-timezone-CET"),
        pytest.param(["clock timezone IST 5 30", "service sequence-numbers",
                      "service timestamps log datetime msec localtime show-timezone year"], timedelta(0),
                     id="IST-sequence-year"),
        pytest.param([], timedelta(minutes=7), id="router-clock-7-minutes-ahead"),
        pytest.param([], -timedelta(minutes=13), id="router-clock-13-minutes-behind"),
        pytest.param(["logging buffered 8192 warnings"], timedelta(0), id="buffer-drops-informational"),
    ],
)
async def test_fire_applet_verdict_holds_with_every_log_and_clock_style(
    router: LabDevice, router_target: RouterTarget, wall_clock_pki: GmailShapedPki, settings: list[str],
    offset: timedelta,
) -> None:
    smtp = await adapter_mail_server(wall_clock_pki)
    try:
        router.spec.clock_offset = offset
        router.state.apply_config([*settings, *adapter_applet_config(smtp.port)])
        async with RouterSession(router_target) as session:
            await session.install_certificate("EEMW-OLD-ROOT", wall_clock_pki.old_root.cert)
            ok = await session.fire_applet("MAIL-TEST", maxrun=15.0, success_messages=("mail sent to $_email_to",))
            await session.retire_trustpoint("EEMW-OLD-ROOT")
            failed = await session.fire_applet("MAIL-TEST", maxrun=15.0, success_messages=("mail sent to $_email_to",))
        assert ok.ok and (" success " in ok.evidence or "mail sent to noc@example.com" in ok.evidence), ok
        assert not failed.ok and failed.evidence, failed  # and a failing mail is still seen as failing
        assert len(await smtp.wait_for_messages(1)) == 1
    finally:
        await smtp.stop()
