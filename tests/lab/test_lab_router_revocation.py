"""`revocation-check crl`, the IOS default, in the lab router: a mail whose chain is anchored to such a trustpoint
fails with `%PKI-3-CRL_FETCH_FAIL` (show_logging_PKI-3-CRL_FETCH_FAIL__gh_dnac_switch.txt); eemwatchd's own
trustpoints (enrollment terminal, revocation-check none, chain-validation stop, fingerprint) never hit it.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest

from eemwatchd.adapters.router import RouterSession, RouterTarget, RouterTimeouts
from eemwatchd.core.ios.parsers import parse_log_lines
from eemwatchd.core.lint import REVOCATION_CHECK, KnownServer, lint_router
from eemwatchd_lab.pki import GmailShapedPki
from eemwatchd_lab.router import LabDevice
from eemwatchd_lab.smtp import LabSmtpServer
from tests.support.clock import PINNED
from tests.support.lab_router import APPLET, PASSWORD, SMTP_PASSWORD
from tests.support.ssh import RawClient, login
from tests.support.transcripts import transcript_lines

CRL_TRANSCRIPT = "show_logging_PKI-3-CRL_FETCH_FAIL__gh_dnac_switch.txt"


async def _install(c: RawClient, name: str, pem: str, *settings: str) -> None:
    await c.cmd("conf t")
    await c.cmd(f"crypto pki trustpoint {name}")
    for line in ("enrollment terminal", *settings):
        assert await c.cmd(line) == f"{line}\r\nR1(ca-trustpoint)#"
    await c.cmd("exit")
    c.send(f"crypto pki authenticate {name}\n{pem}quit\n")
    await c.read_until(re.escape("[yes/no]: "))
    c.send("yes\n")
    assert "successfully imported" in await c.read_until(r"R1\(config\)#")


async def _fire(c: RawClient, router: LabDevice, port: int) -> list[str]:
    for line in APPLET:
        out = await c.cmd(line.format(server=f"user:{SMTP_PASSWORD}@127.0.0.1", port=port))
        assert "%" not in out, out
    await c.cmd("end")
    before = len(router.state.log_lines)
    await c.cmd("event manager run CERTCHECK")
    await router.state.wait_for_jobs(10)
    return router.state.log_lines[before:]


@pytest.mark.parametrize(
    "settings",
    [pytest.param((), id="default-crl"), pytest.param(("revocation-check crl",), id="crl"),
     pytest.param(("revocation-check ocsp",), id="ocsp")],
)
async def test_crl_default_on_the_anchor_fails_the_mail_like_the_dnac_switch(
    router: LabDevice, mail_server: tuple[LabSmtpServer, GmailShapedPki], settings: tuple[str, ...]
) -> None:
    server, pki = mail_server
    c = await login(router)
    await c.cmd("terminal length 0")
    await _install(c, "CA-GLOBALSIGN", pki.old_root.cert.pem, *settings)
    log = await _fire(c, router, server.port)
    assert server.messages == []
    # the two-line message exactly as captured (the trustpoint name aside), then the FMPD lines
    real = [ln for ln in transcript_lines(CRL_TRANSCRIPT) if ln and not ln.startswith("#")]
    assert [re.sub(r"^\*\w{3} +\d+ [\d:.]+: ", "", ln) for ln in log[:2]] == [
        real[0].split(": ", 1)[1].replace("DNAC-CA", "CA-GLOBALSIGN"),
        real[1],
    ]
    assert [ln.split(": ", 1)[1] for ln in log[2:]] == [
        "%HA_EM-3-FMPD_SMTP: Error occurred when sending mail to SMTP server: 127.0.0.1 : "
        "error in connecting to SMTP server",
        "%HA_EM-3-FMPD_ERROR: Error executing applet CERTCHECK statement 0010",
    ]
    outcome = router.state.mail_outcomes[-1][1]
    assert not outcome.ok and "CRL fetch for trustpoint CA-GLOBALSIGN failed" in outcome.detail
    # the product's log parser keeps the `Reason :` line with its message
    entries = parse_log_lines(await c.cmd("show logging"))
    crl = next(e for e in entries if e.tag == "%PKI-3-CRL_FETCH_FAIL")
    assert "Reason : Enrollment URL not configured." in crl.message
    # `revocation-check none` (or `crl none`: none as the fallback) lets the same chain through
    for fix in ("revocation-check crl none", "revocation-check none"):
        await c.cmd("conf t")
        await c.cmd("crypto pki trustpoint CA-GLOBALSIGN")
        await c.cmd(fix)
        await c.cmd("exit")
        log = await _fire(c, router, server.port)
        assert [ln for ln in log if "FMPD" in ln or "PKI" in ln] == []
    assert len(await server.wait_for_messages(2, timeout=5)) == 2
    await c.close()


async def test_eemwatchd_trustpoints_never_hit_the_crl_fetch(
    router: LabDevice, mail_server: tuple[LabSmtpServer, GmailShapedPki], tmp_path: Path
) -> None:
    """The product's own install path (RouterSession.install_certificate) on a router where every
    other trustpoint keeps the default `crl`: the test-fire succeeds and lint finds nothing to fix."""
    server, pki = mail_server
    router.state.apply_config([
        "crypto pki trustpoint FOREIGN",
        " enrollment terminal",
        " revocation-check crl",
    ])
    known = tmp_path / "known_hosts"
    known.write_text(router.known_hosts_line() + "\n")
    fast = RouterTimeouts(connect=5.0, command=5.0, running_config=5.0, change=5.0, poll_interval=0.1,
                          fire_grace=1.0)
    target = RouterTarget("r1", router.host, router.port, "admin", password=PASSWORD, known_hosts=known, timeouts=fast)
    c = await login(router)
    await c.cmd("conf t")
    for line in APPLET:
        await c.cmd(line.format(server=f"user:{SMTP_PASSWORD}@127.0.0.1", port=server.port))
    await c.cmd("end")
    await c.close()
    async with RouterSession(target) as session:
        await session.install_certificate("EEMW-GLOBALSIGN", pki.old_root.cert)
        snapshot = await session.read_snapshot()
        result = await session.fire_applet("CERTCHECK", maxrun=8)
    assert result.ok, result
    assert not any("PKI-3-CRL_FETCH_FAIL" in line for line in router.state.log_lines)
    assert router.state.mail_outcomes[-1][1].validation is not None
    assert router.state.mail_outcomes[-1][1].validation.anchor_trustpoint == "EEMW-GLOBALSIGN"
    ours = snapshot.trustpoint("EEMW-GLOBALSIGN")
    assert ours is not None and ours.revocation_check == "none"
    findings = lint_router(
        snapshot, servers=[KnownServer("127.0.0.1", server.port)], applet_name="CERTCHECK", now=PINNED,
        our_clock=snapshot.clock or PINNED, soon=timedelta(days=30), trustpoint_prefix="EEMW-",
    )
    assert [f for f in findings if f.rule == REVOCATION_CHECK] == []
    # the same lint, told to look after FOREIGN too, flags it
    adopted = lint_router(
        snapshot, servers=[KnownServer("127.0.0.1", server.port)], applet_name="CERTCHECK", now=PINNED,
        our_clock=snapshot.clock or PINNED, soon=timedelta(days=30), trustpoint_prefix="EEMW-", adopt=("FOREIGN",),
    )
    assert [f.message.split()[1] for f in adopted if f.rule == REVOCATION_CHECK] == ["FOREIGN"]
