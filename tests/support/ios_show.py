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
from eemwatchd.core.ios.parsers import _MONTHS, DEFAULT_ZONES, _clean, _moment, _zone
from eemwatchd.errors import CertificateError, ParseError

SHOW_CERTIFICATES = "show crypto pki certificates"
SHOW_TRUSTPOINTS = "show crypto pki trustpoints"


def _hm(hours: int, minutes: int = 0) -> timedelta:
    return timedelta(hours=hours, minutes=minutes if hours >= 0 else -minutes)


# The zone names operators give `clock timezone` / `clock summer-time` (IOS prints the configured NAME,
# not an offset: genie csr/csr8kv show IST, FN72323 shows CST at +8). Used only when the caller's
# ``zones`` (from the router's own `clock` lines, parse_clock_zones) does not name the zone.
ZONE_ABBREVIATIONS: Mapping[str, timedelta] = {
    "UTC": _hm(0), "GMT": _hm(0), "WET": _hm(0), "WEST": _hm(1), "BST": _hm(1), "IST": _hm(5, 30),
    "CET": _hm(1), "CEST": _hm(2), "MET": _hm(1), "MEST": _hm(2), "EET": _hm(2), "EEST": _hm(3),
    "MSK": _hm(3), "SAST": _hm(2), "EAT": _hm(3), "GST": _hm(4), "PKT": _hm(5), "NPT": _hm(5, 45),
    "ICT": _hm(7), "WIB": _hm(7), "SGT": _hm(8), "HKT": _hm(8), "AWST": _hm(8), "PHT": _hm(8),
    "JST": _hm(9), "KST": _hm(9), "ACST": _hm(9, 30), "ACDT": _hm(10, 30), "AEST": _hm(10),
    "AEDT": _hm(11), "NZST": _hm(12), "NZDT": _hm(13),
    "AST": _hm(-4), "ADT": _hm(-3), "EST": _hm(-5), "EDT": _hm(-4), "CST": _hm(-6), "CDT": _hm(-5),
    "MST": _hm(-7), "MDT": _hm(-6), "PST": _hm(-8), "PDT": _hm(-7), "AKST": _hm(-9), "AKDT": _hm(-8),
    "HST": _hm(-10), "BRT": _hm(-3), "ART": _hm(-3), "NST": _hm(-3, 30), "NDT": _hm(-2, 30),
}
# Names that mean different offsets in different places: the default above is the first reading.
AMBIGUOUS_ZONES: Mapping[str, tuple[str, ...]] = {
    "IST": ("India +05:30", "Ireland (summer) +01:00", "Israel +02:00"),
    "CST": ("US Central -06:00", "China +08:00", "Cuba -05:00"),
    "BST": ("British Summer Time +01:00", "Bangladesh +06:00"),
    "AST": ("Atlantic -04:00", "Arabia +03:00"),
    "GST": ("Gulf +04:00", "South Georgia -02:00"),
    "MST": ("US Mountain -07:00", "Malaysia +08:00"),
}


def zone_note(name: str, zones: Mapping[str, timedelta] = DEFAULT_ZONES) -> str | None:
    """Why a shown zone name was read the way it was, when that reading is a guess; None when it is not.

    A name in ``zones`` (the router's own `clock timezone`/`clock summer-time`) is certain; an
    abbreviation with several meanings read from ZONE_ABBREVIATIONS is reported.
    """
    if name in zones or name not in AMBIGUOUS_ZONES:
        return None
    readings = AMBIGUOUS_ZONES[name]
    return (
        f"time zone {name} is ambiguous ({', '.join(readings)}); read as {readings[0]}: "
        "pass the router's `clock timezone` (parse_clock_zones) to be sure"
    )


# --- show crypto pki certificates ------------------------------------------------------------------

_CERT_BLOCK_HEADS = ("Certificate", "CA Certificate", "Router Self-Signed Certificate", "Router Certificate")
_CERT_FIELD = re.compile(
    r"^(?P<key>Status|Version|Certificate Serial Number(?: \(hex\))?|Certificate Usage|Issuer|Subject|"
    r"CRL Distribution Points|Validity Date|Subject Key Info|Signature Algorithm|Fingerprint MD5|"
    r"Fingerprint SHA1|X509v3 extensions|Associated Trustpoints|Storage|Key Label|"
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
    serial: str
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

    The zone name is looked up in ``zones`` (the router's `clock` lines) first, then in the common
    abbreviations (ZONE_ABBREVIATIONS); an ambiguous one (IST, CST ...) takes its first reading, and
    zone_note() says so.
    """
    match = _SHOWN_DATE.search(text)
    if not match:
        raise ParseError(SHOW_CERTIFICATES, "expected a date like '00:34:52 UTC Nov 20 2015'", line=text)
    name = match.group("zone")
    zone = _zone(name, zones) or _zone(name, ZONE_ABBREVIATIONS)
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
    if serial_key is None:
        raise ParseError(
            SHOW_CERTIFICATES,
            f"{kind} block has no 'Certificate Serial Number' line",
            line=lines[0] if lines else kind,
        )
    serial = fields[serial_key]
    serial = serial[2:] if serial.lower().startswith("0x") else serial
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
        serial=serial.upper(),
        status=fields.get("Status"),
        usage=fields.get("Certificate Usage"),
        issuer=_rdn_lines(sections.get("Issuer", [])),
        subject=_rdn_lines(rdns),
        name=name,
        valid_from_text=start,
        valid_until_text=end,
        valid_from=parse_shown_date(start, zones=zones) if start else None,
        valid_until=parse_shown_date(end, zones=zones) if end else None,
        fingerprint_md5=_fingerprint(fields["Fingerprint MD5"]) if "Fingerprint MD5" in fields else None,
        fingerprint_sha1=_fingerprint(fields["Fingerprint SHA1"]) if "Fingerprint SHA1" in fields else None,
        trustpoints=tuple(fields.get("Associated Trustpoints", "").split()),
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
        if current is None:
            continue  # command echo, prompt
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
