"""The crypto pki trustpool in the lab router: `crypto pki trustpool import terminal` and `show crypto pki trustpool`
as in Cisco's FN72323 and genie's trustpool sample; `crypto pki trust` becomes ambiguous; the EEM mail keeps
validating against trustpoints only (see docs/lab-router.md "Trustpool").
"""

from __future__ import annotations

import re

import pytest

from eemwatchd_lab.pki import GmailShapedPki
from eemwatchd_lab.router import LabDevice
from eemwatchd_lab.smtp import LabSmtpServer
from tests.support.clock import PINNED
from tests.support.ios_show import parse_show_crypto_pki_certificates
from tests.support.lab_router import APPLET, SMTP_PASSWORD
from tests.support.ssh import lines_of, login
from tests.support.transcripts import transcript_lines

FN72323 = "crypto_pki_trustpool_import_terminal_and_show_trustpool__cisco_fn72323.txt"


def _fn72323() -> tuple[list[str], list[str], list[str]]:
    """(banner lines, the pasted base64, the first `show crypto pki trustpool` block) of FN72323."""
    real = transcript_lines(FN72323)
    start = next(i for i, ln in enumerate(real) if "trustpool import terminal" in ln)
    done = real.index("% PEM files import succeeded.")
    shown = real.index("CA Certificate")
    end = real.index("  Trustpool: Downloaded", shown)
    return real[start + 1 : start + 3], real[start + 3 : done], real[shown : end + 1]


async def test_import_terminal_and_show_trustpool_are_the_fn72323_text(router: LabDevice) -> None:
    banner, paste, block = _fn72323()
    c = await login(router)
    await c.cmd("terminal length 0")
    assert await c.cmd("show crypto pki trustpool") == "show crypto pki trustpool\r\nR1#"  # no bundle shipped
    await c.cmd("conf t")
    # the FN72323 router names +8 `CST`: its dates are shown in that zone
    await c.cmd("clock timezone CST 8 0")
    c.send("crypto pki trustpool import terminal\n")
    got = await c.read_until(re.escape('on a line by itself.') + "\r\n")
    assert lines_of(got)[1:3] == banner
    c.send("\n".join(paste) + "\n\n")
    out = await c.read_until(r"R1\(config\)#")
    assert lines_of(out)[-2:] == ["% PEM files import succeeded.", "R1(config)#"]
    await c.cmd("end")
    shown = lines_of(await c.cmd("show crypto pki trustpool"))
    assert shown[1 : len(block) + 1] == block
    (parsed,) = parse_show_crypto_pki_certificates("\n".join(shown))
    assert (parsed.kind, parsed.serial, parsed.trustpoints) == (
        "CA Certificate", "0A0142800000014523C844B500000002", ("Trustpool",))
    # the trustpool is no trustpoint: `show crypto pki certificates` and running-config do not list it
    assert "IdenTrust" not in await c.cmd("show crypto pki certificates")
    assert "IdenTrust" not in await c.cmd("show running-config")
    await c.close()


async def test_pem_bundle_and_refusals(router: LabDevice) -> None:
    pki = GmailShapedPki.create(now=PINNED)
    c = await login(router)
    await c.cmd("terminal length 0")
    await c.cmd("conf t")
    c.send("crypto pki trustpool import terminal\n" + pki.old_root.cert.pem + pki.new_root.cert.pem + "quit\n")
    assert "% PEM files import succeeded." in await c.read_until(r"R1\(config\)#")
    # a device (non-CA) certificate cannot go into the trustpool: nothing is imported
    c.send("crypto pki trustpool import terminal\n" + pki.leaf.cert.pem + "\n")
    assert lines_of(await c.read_until(r"R1\(config\)#"))[-2] == "% PEM files import failed."
    c.send("crypto pki trustpool import terminal\nnot base64 at all\n\n")
    assert lines_of(await c.read_until(r"R1\(config\)#"))[-2] == "% PEM files import failed."
    assert len(router.state.trustpool) == 2
    shown = parse_show_crypto_pki_certificates(await c.cmd("do show crypto pki trustpool"))
    assert [s.serial for s in shown] == [pki.old_root.cert.serial_ios, pki.new_root.cert.serial_ios]
    await c.close()


@pytest.mark.parametrize("typed", ["crypto pki trust X", "crypto pki trustp X", "crypto pki trust"])
async def test_trust_is_an_ambiguous_abbreviation(router: LabDevice, typed: str) -> None:
    c = await login(router)
    await c.cmd("conf t")
    assert await c.cmd(typed) == f'{typed}\r\n% Ambiguous command:  "{typed}"\r\n\r\nR1(config)#'
    # long enough to be unique, it still works
    assert await c.cmd("crypto pki trustpoi X") == "crypto pki trustpoi X\r\nR1(ca-trustpoint)#"
    await c.close()


async def test_the_mail_does_not_validate_against_the_trustpool(router: LabDevice) -> None:
    pki = GmailShapedPki.create(now=PINNED)
    server = LabSmtpServer(mode="starttls", certs=pki.served, key=pki.leaf.key, username="user",
                           password=SMTP_PASSWORD)
    async with server:
        c = await login(router)
        await c.cmd("conf t")
        c.send("crypto pki trustpool import terminal\n" + pki.old_root.cert.pem + "\n")
        assert "succeeded" in await c.read_until(r"R1\(config\)#")
        for line in APPLET:
            await c.cmd(line.format(server=f"user:{SMTP_PASSWORD}@127.0.0.1", port=server.port))
        await c.cmd("end")
        await c.cmd("event manager run CERTCHECK")
        await router.state.wait_for_jobs(10)
        outcome = router.state.mail_outcomes[-1][1]
        assert not outcome.ok
        assert "No trust point for cert issuer" in outcome.detail
        assert server.messages == []
        await c.close()
