"""The certificate model and its IOS formats, checked against real running-config captures."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from eemwatchd.core.certificate import (
    Certificate,
    format_fingerprint_ios,
    format_serial_ios,
    load_certificates,
    load_pem_certificates,
    unique,
)
from eemwatchd.core.ios.formats import (
    parse_hex_lines,
    render_certificate_block,
    render_hex_lines,
)
from eemwatchd.errors import CertificateError
from eemwatchd_lab.pki import GmailShapedPki
from tests.support.transcripts import transcript

CSR = "show_running-config_crypto_pki_section__gh_ansible_facts_csr1000v_17_3.txt"
CONFPARSE = "show_running-config_crypto_pki_excerpt__ciscoconfparse_test.txt"


def _blocks(text: str) -> dict[str, list[str]]:
    """Raw ` certificate ...` blocks of a capture: header line -> lines up to and including quit."""
    out: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.split("\n"):
        if line.startswith(" certificate "):
            current = out.setdefault(line, [line])
        elif current is not None:
            current.append(line)
            if line.strip() == "quit":
                current = None
    return out


@pytest.fixture(scope="module")
def sla_root() -> tuple[Certificate, list[str]]:
    block = _blocks(transcript(CSR))[" certificate ca 01"]
    return Certificate.from_der(parse_hex_lines(block[1:])), block


def test_sla_root_matches_the_fingerprint_published_for_every_17x_box(
    sla_root: tuple[Certificate, list[str]],
) -> None:
    cert, _ = sla_root
    # SHA1 of Cisco Licensing Root CA as shown by `show crypto pki trustpoints status` (INDEX.md).
    assert cert.sha1_ios == "5CA95FB6 E2980EC1 5AFB681B BB7E62B5 AD3FA8B8"
    assert cert.serial_ios == "01"
    assert cert.common_name == "Cisco Licensing Root CA"
    assert cert.is_ca and cert.is_self_signed


@pytest.mark.parametrize("header", [" certificate ca 01", " certificate self-signed 01"])
def test_render_is_byte_exact_with_the_device(header: str) -> None:
    block = _blocks(transcript(CSR))[header]
    cert = Certificate.from_der(parse_hex_lines(block[1:]))
    kind = header.split()[1]
    assert render_certificate_block(cert, kind=kind) == block


def test_tolerant_parse_of_expanded_tabs_and_missing_trailing_spaces() -> None:
    block = _blocks(transcript(CONFPARSE))[" certificate self-signed 01"]
    assert block[-1] == "        quit"
    assert not any(line.endswith(" ") for line in block[1:-1])
    cert = Certificate.from_der(parse_hex_lines(block[1:]))
    assert cert.is_self_signed
    # and it renders back to the device's own whitespace
    rendered = render_certificate_block(cert, kind="self-signed")
    assert [line.rstrip() for line in rendered[:-1]] == block[:-1]
    assert rendered[-1] == "  \tquit"


def test_parse_handles_crlf_and_stops_at_quit() -> None:
    pki = GmailShapedPki.create()
    lines = [line + "\r" for line in render_hex_lines(pki.leaf.cert.der)] + ["  \tquit\r", "  DEADBEEF"]
    assert parse_hex_lines(lines) == pki.leaf.cert.der


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (["  3082ZZ00"], "not a hex line"),
        (["  308"], "odd number of hex digits"),
        (["", "  \tquit"], "no hex data"),
    ],
    ids=["not-hex", "odd", "empty"],
)
def test_parse_errors_name_the_problem(lines: list[str], message: str) -> None:
    with pytest.raises(CertificateError, match=message):
        parse_hex_lines(lines)


def test_hex_line_shape() -> None:
    pki = GmailShapedPki.create()
    lines = render_hex_lines(pki.intermediate.cert.der)
    for line in lines[:-1]:
        assert re.fullmatch(r"  (?:[0-9A-F]{8} ){8}", line), line
    assert not lines[-1].endswith(" ")


@pytest.mark.parametrize(
    ("serial", "text"),
    [(1, "01"), (0x80, "0080"), (0x7F, "7F"), (0, "00"), (0x0509, "0509"),
     (0x04302A0B364CE2DA93, "04302A0B364CE2DA93"), (0xFF00, "00FF00")],
    ids=["one", "high-bit", "7f", "zero", "two-bytes", "long", "leading-zero"],
)
def test_serial_in_ios_format(serial: int, text: str) -> None:
    assert format_serial_ios(serial) == text


def test_fingerprint_format() -> None:
    assert format_fingerprint_ios(bytes(range(16))) == "00010203 04050607 08090A0B 0C0D0E0F"


def test_model_fields_of_a_gmail_shaped_chain() -> None:
    now = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    pki = GmailShapedPki.create(now=now)
    leaf, inter, cross = pki.served
    assert not leaf.is_ca and inter.is_ca and cross.is_ca
    assert len(leaf.sha256) == 64 and leaf.sha256 == leaf.sha256.lower()
    assert inter.authority_key_id == pki.new_root.cert.subject_key_id
    assert cross.subject == pki.new_root.cert.subject
    assert cross.public_key_der == pki.new_root.cert.public_key_der
    assert cross != pki.new_root.cert
    assert cross.is_signed_by(pki.old_root.cert) and not cross.is_self_signed
    assert pki.new_root.cert.is_self_signed
    assert leaf.is_valid_at(now) and not leaf.is_expired(now)
    assert leaf.common_name == "smtp.lab.example"


def test_pem_round_trips_and_keeps_duplicates() -> None:
    pki = GmailShapedPki.create()
    text = pki.served_pem() + pki.leaf.cert.pem
    certs = load_pem_certificates(text)
    assert [c.sha256 for c in certs] == [c.sha256 for c in [*pki.served, pki.leaf.cert]]
    assert unique(certs) == pki.served
    assert load_certificates(pki.leaf.cert.der) == [pki.leaf.cert]
    assert load_certificates(text.encode()) == certs


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"-----BEGIN CERTIFICATE-----\nAAAA\n", "no matching END"),
        (b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n", "not a DER|invalid base64"),
        (b"\x30\x03\x02\x01\x01", "neither PEM, DER nor PKCS#7"),
    ],
    ids=["no-end", "garbage-body", "not-a-cert"],
)
def test_broken_certificate_data(data: bytes, message: str) -> None:
    with pytest.raises(CertificateError, match=message):
        load_certificates(data)
