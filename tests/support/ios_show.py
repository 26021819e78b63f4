"""Parsers for `show crypto pki certificates [verbose|pem]` and `show crypto pki trustpoints [status]`.

eemwatchd reads trust from the running-config only (core/ios/parsers.py); these parsers read what a router SHOWS,
so the tests can check the lab router's show output, and the running-config parser, against the real transcripts.
Pure, like the product's parsers, whose line-cleaning and date helpers they share.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from eemwatchd.core.certificate import Certificate, load_pem_certificates
from eemwatchd.core.ios.parsers import _MONTHS, _PROMPT_LINE, DEFAULT_ZONES, _clean, _moment, _zone
from eemwatchd.errors import CertificateError, ParseError

SHOW_CERTIFICATES = "show crypto pki certificates"
SHOW_TRUSTPOINTS = "show crypto pki trustpoints"


def zone_note(name: str, zones: Mapping[str, timedelta] = DEFAULT_ZONES) -> str | None:
    """Why a shown date could not be read: its zone name is not one the router's own `clock timezone` /
    `clock summer-time` defines (or UTC/GMT). None when it is.

    A zone NAME says nothing reliable about its offset: in one real lab the same CA certificate shows as
    `19:02:49 MSK` on routers with `clock timezone MSK 0 0` and `22:02:49 MSK` on one with `MSK 3 0`
    (show_crypto_pki_certificates_multi_router_MSK_offsets_and_config_chain__gh_sergl352130_otus.txt), and IST,
    CST, BST ... name several offsets. So only the router's own config decides; no abbreviation table guesses.
    """
    if name in zones:
        return None
    return (f"time zone {name} is not defined by the router's `clock timezone`/`clock summer-time`; the date is "
            "not read (pass parse_clock_zones(running-config))")


# --- show crypto pki certificates ------------------------------------------------------------------

_CERT_BLOCK_HEADS = ("Certificate", "CA Certificate", "Router Self-Signed Certificate", "Router Certificate")
_CERT_FIELD = re.compile(
    r"^(?P<key>Status|Version|Certificate Serial Number(?: \(hex\))?|Certificate Usage|Issuer|Subject|"
    r"CRL Distribution Points|Validity Date|Subject Key Info|Signature Algorithm|Fingerprint MD5|"
    r"Fingerprint SHA1|X509v3 extensions|Associated Trustpoints?|Storage|Key Label|Key Usage|"
    r"Cert install time(?: in nsec)?)\s*:\s*(?P<value>.*)$"
)
_SHOWN_DATE = re.compile(
    r"(?P<h>\d{1,2}):(?P<m>\d{2}):(?P<s>\d{2})\s+(?P<zone>\S+)\s+(?P<mon>[A-Z][a-z]{2})\s+(?P<day>\d{1,2})\s+"
    r"(?P<year>\d{4})"
)


@dataclass(frozen=True)
class ShownCertificate:
    """One block of `show crypto pki certificates [verbose]`. Dates are None when the zone is unknown."""

    kind: str
    serial: str | None  # None only for a request still pending (`Status: Pending`): it has no certificate yet
    status: str | None = None
    usage: str | None = None
    issuer: tuple[str, ...] = ()
    subject: tuple[str, ...] = ()
    name: str | None = None
    valid_from_text: str | None = None
    valid_until_text: str | None = None
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    fingerprint_md5: str | None = None
    fingerprint_sha1: str | None = None
    trustpoints: tuple[str, ...] = ()
    storage: str | None = None
    crl_urls: tuple[str, ...] = ()
    zone_note: str | None = None  # set when the dates' zone name is ambiguous (see zone_note())


def parse_shown_date(text: str, *, zones: Mapping[str, timedelta] = DEFAULT_ZONES) -> datetime | None:
    """`00:34:52 UTC Nov 20 2015` as shown by PKI commands; None when the zone is not known.

    The zone name is looked up in ``zones`` only: the router's own `clock` lines (parse_clock_zones), which
    also know UTC and GMT. Any other name is not read (see zone_note).
    """
    match = _SHOWN_DATE.search(text)
    if not match:
        raise ParseError(SHOW_CERTIFICATES, "expected a date like '00:34:52 UTC Nov 20 2015'", line=text)
    name = match.group("zone")
    zone = _zone(name, zones)
    month = _MONTHS.get(match.group("mon"))
    if zone is None or month is None:
        return None
    return _moment(match, month, zone, what=SHOW_CERTIFICATES, line=text)


def _rdn_lines(lines: Iterable[str]) -> tuple[str, ...]:
    """RDN lines; a line without `=` continues the previous value (IOS splits values at ', ')."""
    out: list[str] = []
    for line in lines:
        if "=" not in line and out:
            out[-1] += ", " + line
        else:
            out.append(line)
    return tuple(out)


def _fingerprint(value: str) -> str:
    return " ".join(value.split()).upper()


def parse_show_crypto_pki_certificates(
    text: str, *, zones: Mapping[str, timedelta] = DEFAULT_ZONES
) -> list[ShownCertificate]:
    """Every certificate block of `show crypto pki certificates [verbose] [TRUSTPOINT]`."""
    blocks: list[tuple[str, list[str]]] = []
    for raw in text.splitlines():
        line = _clean(raw).strip()
        if line in _CERT_BLOCK_HEADS:
            blocks.append((line, []))
        elif line and blocks:
            blocks[-1][1].append(line)
    return [_parse_cert_block(kind, lines, zones) for kind, lines in blocks]


def _parse_cert_block(kind: str, lines: list[str], zones: Mapping[str, timedelta]) -> ShownCertificate:
    fields: dict[str, str] = {}
    sections: dict[str, list[str]] = {}
    section: str | None = None
    for line in lines:
        match = _CERT_FIELD.match(line)
        if match:
            section = match.group("key")
            fields[section] = match.group("value").strip()
            sections.setdefault(section, [])
        elif section is not None:
            sections[section].append(line)
    serial_key = next((k for k in fields if k.startswith("Certificate Serial Number")), None)
    serial: str | None = None
    if serial_key is not None:
        serial = fields[serial_key]
        serial = (serial[2:] if serial.lower().startswith("0x") else serial).upper()
    elif fields.get("Status") != "Pending":
        # A pending enrollment has no serial, validity or storage yet (show_crypto_pki_certificates_pending_
        # request_and_R14CA_storage__gh_otus_lab.txt); anything else without one is not a block we know.
        raise ParseError(
            SHOW_CERTIFICATES,
            f"{kind} block has no 'Certificate Serial Number' line",
            line=lines[0] if lines else kind,
        )
    subject_lines = sections.get("Subject", [])
    name = next((ln.partition(":")[2].strip() for ln in subject_lines if ln.startswith("Name:")), None)
    rdns = [ln for ln in subject_lines if not re.match(r"^(Name|IP Address|Serial Number):", ln)]
    validity = {
        ln.partition(":")[0].split()[0]: ln.partition(":")[2].strip()
        for ln in sections.get("Validity Date", [])
        if ":" in ln
    }
    start, end = validity.get("start"), validity.get("end")
    return ShownCertificate(
        kind=kind,
        serial=serial,
        status=fields.get("Status"),
        usage=fields.get("Certificate Usage") or fields.get("Key Usage"),
        issuer=_rdn_lines(sections.get("Issuer", [])),
        subject=_rdn_lines(rdns),
        name=name,
        valid_from_text=start,
        valid_until_text=end,
        valid_from=parse_shown_date(start, zones=zones) if start else None,
        valid_until=parse_shown_date(end, zones=zones) if end else None,
        fingerprint_md5=_fingerprint(fields["Fingerprint MD5"]) if "Fingerprint MD5" in fields else None,
        fingerprint_sha1=_fingerprint(fields["Fingerprint SHA1"]) if "Fingerprint SHA1" in fields else None,
        trustpoints=tuple((fields.get("Associated Trustpoints") or fields.get("Associated Trustpoint", "")).split()),
        storage=fields.get("Storage"),
        crl_urls=tuple(sections.get("CRL Distribution Points", [])),
        zone_note=_dates_zone_note((start, end), zones),
    )


def _dates_zone_note(texts: Iterable[str | None], zones: Mapping[str, timedelta]) -> str | None:
    for text in texts:
        match = _SHOWN_DATE.search(text or "")
        if match:
            note = zone_note(match.group("zone"), zones)
            if note is not None:
                return note
    return None


def parse_show_crypto_pki_certificates_pem(text: str) -> list[tuple[str, str, Certificate]]:
    """(trustpoint, label, certificate) from `show crypto pki certificates pem [TRUSTPOINT]`."""
    out: list[tuple[str, str, Certificate]] = []
    trustpoint = ""
    label = ""
    block: list[str] = []
    for raw in text.splitlines():
        line = _clean(raw).strip()
        head = re.fullmatch(r"-+Trustpoint:\s*(?P<name>\S+?)-+", line)
        if head:
            trustpoint = head.group("name")
        elif line.startswith("% ") and line.endswith(":"):
            label = line[2:-1]
        elif line == "-----BEGIN CERTIFICATE-----":
            block = [line]
        elif block:
            block.append(line)
            if line == "-----END CERTIFICATE-----":
                try:
                    (cert,) = load_pem_certificates("\n".join(block), what=f"{trustpoint} {label}")
                except (CertificateError, ValueError) as exc:
                    raise ParseError("show crypto pki certificates pem", str(exc), line=block[1]) from exc
                out.append((trustpoint, label, cert))
                block = []
    return out


# --- show crypto pki trustpoints [status] ----------------------------------------------------------


@dataclass(frozen=True)
class ShownTrustpoint:
    """One `Trustpoint NAME:` block of `show crypto pki trustpoints [status]`."""

    name: str
    subject: tuple[str, ...] = ()
    serial: str | None = None
    certificate_configured: bool = False
    self_signed: bool = False
    key_label: str | None = None
    ca_subject: str | None = None
    ca_fingerprint_md5: str | None = None
    ca_fingerprint_sha1: str | None = None
    router_subject: str | None = None
    router_fingerprint_md5: str | None = None
    router_fingerprint_sha1: str | None = None
    enrollment_status: str | None = None
    scep_url: str | None = None  # `SCEP URL: ...` of a trustpoint enrolling over SCEP (`enrollment url`)
    state: Mapping[str, str] = field(default_factory=dict)


def parse_show_crypto_pki_trustpoints(text: str) -> list[ShownTrustpoint]:
    """Every trustpoint of `show crypto pki trustpoints [NAME] [status]`."""
    out: list[ShownTrustpoint] = []
    current: dict[str, object] | None = None
    section = ""  # "" | "subject" | "ca" | "router" | "state"

    def flush() -> None:
        if current is not None:
            out.append(ShownTrustpoint(**current))  # type: ignore[arg-type]

    for raw in text.splitlines():
        line = _clean(raw).strip()
        if not line:
            continue
        head = re.fullmatch(r"Trustpoint (?P<name>\S+):", line)
        if head:
            flush()
            current = {"name": head.group("name"), "subject": (), "state": {}}
            section = "subject"
            continue
        if _PROMPT_LINE.match(line):
            flush()  # a prompt ends the command's output (captures hold several commands)
            current, section = None, ""
            continue
        if current is None:
            continue  # command echo, other commands' output
        if line == "Subject Name:":
            section = section + "-subject" if section in ("ca", "router") else "subject"
        elif line == "Issuing CA certificate configured:":
            section = "ca"
        elif line.startswith("Router") and line.endswith("certificate configured:"):
            section = "router"
        elif line == "State:":
            section = "state"
        elif line.startswith("Serial Number (hex):"):
            current["serial"] = line.partition(":")[2].strip().upper()
        elif line == "Certificate configured.":
            current["certificate_configured"] = True
            section = ""  # what follows is no longer the subject
        elif line.startswith("SCEP URL:"):
            # `    SCEP URL: http://10.1.255.12:80/cgi-bin` after `Certificate configured.`
            # (show_crypto_pki_trustpoints_scep_url_server_vs_client__gh_otus_r12_r14.txt)
            current["scep_url"] = line.partition(":")[2].strip()
            section = ""
        elif line == "Persistent self-signed certificate trust point":
            current["self_signed"] = True
        elif line.startswith("Using key label "):
            current["key_label"] = line[len("Using key label ") :].strip()
        elif line.startswith("Last enrollment status:"):
            current["enrollment_status"] = line.partition(":")[2].strip()
        elif line.startswith(("Fingerprint MD5:", "Fingerprint SHA1:")):
            which = "md5" if "MD5" in line else "sha1"
            owner = section.split("-")[0]
            if owner not in ("ca", "router"):
                raise ParseError(SHOW_TRUSTPOINTS, "fingerprint outside a certificate section", line=line)
            current[f"{owner}_fingerprint_{which}"] = _fingerprint(line.partition(":")[2])
        elif section == "state":
            dotted = re.fullmatch(r"(?P<key>.+?)\s*\.{2,}\s*(?P<value>.*)", line)
            if not dotted:
                raise ParseError(SHOW_TRUSTPOINTS, "expected 'Name ..... value' under State:", line=line)
            state = current["state"]
            assert isinstance(state, dict)
            state[dotted.group("key")] = dotted.group("value")
        elif section in ("ca-subject", "router-subject"):
            current[section.replace("-", "_")] = line
        elif section == "subject":
            subject = current["subject"]
            assert isinstance(subject, tuple)
            current["subject"] = _rdn_lines([*subject, line]) if "=" in line or subject else subject
        else:
            raise ParseError(SHOW_TRUSTPOINTS, "unexpected line", line=line)
    flush()
    return out
