"""The lab router's faults for the fault schedules (eemwatchd_lab/router/faults.py), each behaving as a real router
would: a vty that stops answering, AAA refusing a line, what a busy router logs beside us, an SMTP server that
refuses, never answers or greets late, and the hook that lets a test act at an exact line. Driven by a raw asyncssh
client; the log and history read back with the product's parsers."""

from __future__ import annotations

import asyncio

import pytest

from eemwatchd.core.ios.parsers import parse_event_history, parse_log_lines
from eemwatchd_lab.pki import GmailShapedPki
from eemwatchd_lab.router import LabDevice
from eemwatchd_lab.router.faults import MAIL_REFUSED, MAIL_SILENT, NOISE, Faults
from eemwatchd_lab.smtp import LabSmtpServer
from tests.support.lab_router import APPLET, SMTP_PASSWORD
from tests.support.reconcile_lab import unmanaged_config
from tests.support.ssh import configure, login


async def test_a_hung_vty_reads_and_never_answers_until_the_client_goes(router: LabDevice) -> None:
    router.spec.faults.hang_after_commands = 1
    c = await login(router)
    assert await c.cmd("terminal length 0") == "terminal length 0\r\nR1#"
    assert router.sessions == 1
    c.send("show clock\n")
    with pytest.raises(TimeoutError):
        await c.read_until("UTC", timeout=0.5)
    assert c.buffer == "show clock\r\n"  # the echo of what it read, then nothing
    await c.close()
    for _ in range(100):
        if router.sessions == 0 and router.connections == 0:
            break
        await asyncio.sleep(0.02)
    assert (router.sessions, router.connections) == (0, 0)


async def test_aaa_refuses_the_numbered_lines_and_nothing_runs(router: LabDevice) -> None:
    seen: list[tuple[int, str]] = []
    router.spec.faults = Faults(refuse_commands=frozenset({2, 4}),
                                before_command=lambda n, line: seen.append((n, line)))
    c = await login(router)
    assert await c.cmd("terminal length 0") == "terminal length 0\r\nR1#"
    assert await c.cmd("configure terminal") == "configure terminal\r\nCommand authorization failed.\r\n\r\nR1#"
    assert "UTC" in await c.cmd("show clock")
    assert await c.cmd("write memory") == "write memory\r\nCommand authorization failed.\r\n\r\nR1#"
    assert router.state.startup_config() is None  # nothing ran
    assert seen == [(1, "terminal length 0"), (2, "configure terminal"), (3, "show clock"), (4, "write memory")]
    router.spec.faults.refuse_commands = frozenset({5})
    c.send("exit\n")  # never refused (docs/lab-router.md "AAA")
    with pytest.raises(EOFError):
        await c.read_until("R1#")


async def test_noise_is_what_a_busy_router_logs_and_runs_beside_our_applet(router: LabDevice) -> None:
    c = await login(router)
    await c.cmd("terminal length 0")
    await configure(c, ["event manager applet MAILTEST", "event none", 'action 1.0 syslog msg "MAILTEST mail sent"'])
    await c.cmd("send log 6 MARK-NOISE")
    router.spec.faults.log_noise = len(NOISE)
    await c.cmd("event manager run MAILTEST")
    router.spec.faults.log_noise = 0
    await asyncio.wait_for(router.state.wait_for_jobs(), 5)
    text = await c.cmd("show logging")
    lines = parse_log_lines(text, marker="MARK-NOISE")
    # untagged debug output, timestamped like the rest (Cisco doc 117337, C8000V 17.16.1a)
    assert any(line.endswith(": CRYPTO_PKI: (A16A8) Check for identical certs") for line in text.splitlines())
    assert not any("CRYPTO_PKI" in x.message for x in lines)  # a line of its own, glued onto nothing
    assert ("%HA_EM-6-LOG", "MAILTEST2: MAILTEST2 mail sent") in [(x.tag, x.message) for x in lines]
    assert ("%HA_EM-3-FMPD_ERROR", "Error executing applet MAILTEST2 statement 0010") in [
        (x.tag, x.message) for x in lines]
    rows = parse_event_history(await c.cmd("show event manager history events"))
    # the look-alike's jobs take job ids too, and our job's row is among theirs
    assert {r.name for r in rows} == {"MAILTEST", "MAILTEST2"}
    ours = [r for r in rows if r.name == "MAILTEST"]
    assert [r.status for r in ours] == ["success"] and ours[0].job_id > min(r.job_id for r in rows)
    await c.close()


@pytest.mark.parametrize(
    ("fault", "delay", "reason", "status"),
    [
        pytest.param(MAIL_REFUSED, 0.0, "error in connecting to SMTP server", "abort", id="refused"),
        pytest.param(MAIL_SILENT, 0.0, "timeout error", "abort", id="silent"),
        pytest.param(None, 0.6, None, "success", id="late-greeting"),
    ],
)
async def test_the_mail_faults_are_the_smtp_server_refusing_hanging_or_greeting_late(
    router: LabDevice, mail_server: tuple[LabSmtpServer, GmailShapedPki], fault: str | None, delay: float,
    reason: str | None, status: str,
) -> None:
    server, pki = mail_server
    router.state.apply_config(unmanaged_config("CA-ROOT", pki.old_root.cert))
    c = await login(router)
    await c.cmd("terminal length 0")
    await configure(c, [line.format(server=f"user:{SMTP_PASSWORD}@127.0.0.1", port=server.port) for line in APPLET])
    router.state.applets["CERTCHECK"].maxrun = 2
    router.spec.faults = Faults(mail=fault, mail_delay=delay)
    await c.cmd("send log 6 MARK-MAIL")
    loop = asyncio.get_running_loop()
    started = loop.time()
    await c.cmd("event manager run CERTCHECK")
    await asyncio.wait_for(router.state.wait_for_jobs(), 5)
    took = loop.time() - started
    (row,) = parse_event_history(await c.cmd("show event manager history events"))
    assert row.status == status
    lines = [(x.tag, x.message) for x in parse_log_lines(await c.cmd("show logging"), marker="MARK-MAIL")]
    if reason is None:
        assert took >= delay and len(server.messages) == 1 and lines == []
    else:
        assert server.messages == []
        assert lines == [
            ("%HA_EM-3-FMPD_SMTP", f"Error occurred when sending mail to SMTP server: 127.0.0.1 : {reason}"),
            ("%HA_EM-3-FMPD_ERROR", "Error executing applet CERTCHECK statement 0010"),
        ]
        assert (took >= 1.5) == (fault == MAIL_SILENT)  # a silent server costs maxrun, a refusal nothing
    await c.close()


def test_an_unknown_mail_fault_is_refused() -> None:
    with pytest.raises(ValueError, match=r"Faults\.mail"):
        Faults(mail="slow")
