"""`show version`, `show crypto pki certificates pem`, `Storage:` lines and a pasted non-CA certificate, each
compared with the real transcripts named beside it and read back with the product's parsers (and the show
parsers of tests/support/ios_show.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from eemwatchd.core.ios.parsers import parse_running_config
from eemwatchd_lab.pki import GmailShapedPki, make_ca
from eemwatchd_lab.router import LabDevice
from eemwatchd_lab.router.pki import certificate_usage, sla_root
from tests.support.clock import PINNED
from tests.support.ios_show import parse_show_crypto_pki_certificates, parse_show_crypto_pki_certificates_pem
from tests.support.lab_router import router_spec_for, running_router
from tests.support.ssh import RawClient, lines_of, login
from tests.support.transcripts import transcript, transcript_lines

VERSION_LINE_2 = re.compile(
    r"Cisco IOS Software \[(?P<train>\w+)\], .+ Software \(.+\), Version (?P<short>\S+), RELEASE SOFTWARE \(fc\d\)"
)


@pytest.mark.parametrize(
    ("name", "version"),
    [
        ("show_version__genie_isr4451_16_06_05.txt", "16.06.05"),
        ("show_version__genie_c9800cl_17_07.txt", "17.07.01prd16"),
    ],
)
async def test_show_version_lines_as_the_release_builds(tmp_path: Path, name: str, version: str) -> None:
    real = transcript_lines(name)
    async with running_router(router_spec_for(tmp_path, version=version)) as router:
        c = await login(router)
        await c.cmd("terminal length 0")
        ours = lines_of(await c.cmd("show version"))[1:]
        assert ours[0] == real[0]  # `Cisco IOS XE Software, Version 16.06.05`
        mine, theirs = VERSION_LINE_2.fullmatch(ours[1]), VERSION_LINE_2.fullmatch(real[1])
        assert mine is not None and theirs is not None
        assert (mine["train"], mine["short"]) == (theirs["train"], theirs["short"])
        assert ours[2] == real[2]  # Technical Support
        assert re.sub(r"\d{4}-\d{4}", "Y", ours[3]) == re.sub(r"\d{4}-\d{4}", "Y", real[3])  # Copyright
        await c.close()


async def test_storage_lines_and_pem_output(router: LabDevice) -> None:
    pki = GmailShapedPki.create(now=PINNED)
    c = await login(router)
    await c.cmd("terminal length 0")
    await _authenticate(c, "CA-OLD", pki.old_root.cert.pem)
    await c.cmd("write memory")
    shown = parse_show_crypto_pki_certificates(await c.cmd("show crypto pki certificates"))
    storage = {s.trustpoints: s.storage for s in shown}
    # issuer's first RDN without spaces and dots, 12 characters; the serial's low 16 bits in hex; CA
    # (show_crypto_pki_certificates_verbose_4k_keypair_CA-4klabtest__cisco_vg420_doc.txt: cn=CA-4k.labtest.com,
    # serial ...6127 -> nvram:CA-4klabtest#6127CA.cer)
    old_file = f"nvram:LabGlobalSig#{int(pki.old_root.cert.serial_ios, 16) & 0xFFFF:X}CA.cer"
    assert storage == {("SLA-TrustPoint",): "nvram:CiscoLicensi#1CA.cer", ("CA-OLD",): old_file}
    vg420 = parse_show_crypto_pki_certificates(
        transcript("show_crypto_pki_certificates_verbose_4k_keypair_CA-4klabtest__cisco_vg420_doc.txt"))
    real_ca = next(s for s in vg420 if s.kind == "CA Certificate")
    assert real_ca.storage == f"nvram:CA-4klabtest#{int(real_ca.serial or '0', 16) & 0xFFFF:X}CA.cer"
    # the same file names as `show startup-config` (show_startup-config_crypto_pki_nvram_refs__gh_ie_switch_17_3)
    startup = await c.cmd("show startup-config")
    assert " certificate ca 01 nvram:CiscoLicensi#1CA.cer\r\n" in startup
    real = transcript_lines("show_startup-config_crypto_pki_nvram_refs__gh_ie_switch_17_3.txt")
    assert " certificate ca 01 nvram:CiscoLicensi#1CA.cer" in real
    assert f" certificate ca {pki.old_root.cert.serial_ios} {old_file}\r\n" in startup
    # show crypto pki certificates pem (show_crypto_pki_certificates_pem_server__genie_1.txt layout)
    pem = await c.cmd("show crypto pki certificates pem")
    lines = lines_of(pem)[1:-1]
    genie = transcript_lines("show_crypto_pki_certificates_pem_server__genie_1.txt")
    assert re.fullmatch(r"-+Trustpoint: \S+-+", genie[0])
    assert lines[0] == "------Trustpoint: SLA-TrustPoint------"
    assert lines[1] == "% CA certificate:"
    assert lines[2] == genie[2] == "-----BEGIN CERTIFICATE-----"
    assert max(len(ln) for ln in lines) == max(len(ln) for ln in genie if not ln.startswith("-")) == 64
    parsed = parse_show_crypto_pki_certificates_pem(pem)
    assert parsed == [("SLA-TrustPoint", "CA certificate", sla_root()), ("CA-OLD", "CA certificate", pki.old_root.cert)]
    only = parse_show_crypto_pki_certificates_pem(await c.cmd("show crypto pki certificates pem CA-OLD"))
    assert only == [("CA-OLD", "CA certificate", pki.old_root.cert)]
    await c.close()


async def test_a_pasted_non_ca_certificate_is_shown_for_what_it_is(router: LabDevice) -> None:
    """Cisco's tech note pasted the smtp.gmail.com leaf into a trustpoint; IOS keeps it, and the lab shows it as
    a `General Purpose` certificate without `CA: TRUE` (usage wording of the router certificates in ntc_1)."""
    pki = GmailShapedPki.create(now=PINNED, key_kind="rsa")
    c = await login(router)
    await c.cmd("terminal length 0")
    await _authenticate(c, "LEAF", pki.leaf.cert.pem)
    (leaf,) = parse_show_crypto_pki_certificates(await c.cmd("show crypto pki certificates LEAF"))
    assert leaf.serial == pki.leaf.cert.serial_ios
    assert leaf.kind == "CA Certificate"  # it sits where `crypto pki authenticate` puts CA certificates
    assert leaf.usage == "General Purpose"
    ntc = transcript_lines("show_crypto_pki_certificates__ntc_1.txt")
    assert "  Certificate Usage: General Purpose" in ntc
    verbose = await c.cmd("show crypto pki certificates verbose LEAF")
    assert "CA: TRUE" not in verbose
    root = await c.cmd("show crypto pki certificates verbose SLA-TrustPoint")
    assert "CA: TRUE" in root and "Certificate Usage: Signature" in root
    # the running-config still files it as `certificate ca` (what `crypto pki authenticate` installs)
    trustpoints = parse_running_config(await c.cmd("show running-config")).trustpoints
    held = next(tp for tp in trustpoints if tp.name == "LEAF")
    assert held.certificates_with_kind == (("ca", pki.leaf.cert),)
    await c.close()


async def _authenticate(c: RawClient, name: str, pem: str) -> None:
    await c.cmd("conf t")
    await c.cmd(f"crypto pki trustpoint {name}")
    await c.cmd("enrollment terminal")
    await c.cmd("revocation-check none")
    await c.cmd("exit")
    c.send(f"crypto pki authenticate {name}\n{pem}quit\n")
    await c.read_until(re.escape("[yes/no]: "))
    c.send("yes\n")
    assert "successfully imported" in await c.read_until(r"R1\(config\)#")
    await c.cmd("end")


def test_a_ca_certificate_without_key_usage_is_shown_as_general_purpose() -> None:
    """IOS's own self-signed certificates (CA:TRUE, no keyUsage) show `General Purpose`
    (show_crypto_pki_certificates_TP-self-signed__genie_csr1000v.txt); a CA with keyUsage shows `Signature`."""
    bare = make_ca("No Usage Root", by=None, now=PINNED, key_usage=False)
    assert certificate_usage(bare.cert) == "General Purpose"
    assert certificate_usage(make_ca("Usage Root", by=None, now=PINNED).cert) == "Signature"
    [real] = parse_show_crypto_pki_certificates(
        transcript("show_crypto_pki_certificates_TP-self-signed__genie_csr1000v.txt"))
    assert real.usage == "General Purpose"
