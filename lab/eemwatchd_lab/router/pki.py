"""Trustpoints of the lab router: sub-commands, the authenticate dialogue and the `show crypto pki` renderers."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtensionOID, NameOID

from eemwatchd.core.certificate import Certificate, format_fingerprint_ios
from eemwatchd.core.ios.formats import render_certificate_block
from eemwatchd.errors import CertificateError
from eemwatchd_lab.router.clock import UTC_ZONE, Zone, pki_date

# The real Cisco Licensing Root CA that every 16.x/17.x box holds in SLA-TrustPoint, decoded from the
# hex in show_running-config_crypto_pki_section__gh_ansible_facts_csr1000v_17_3.txt (SHA1 5CA95FB6 ...,
# the value genie's `show crypto pki trustpoints status` sample prints for SLA-TrustPoint).
SLA_ROOT_PEM = """-----BEGIN CERTIFICATE-----
MIIDITCCAgmgAwIBAgIBATANBgkqhkiG9w0BAQsFADAyMQ4wDAYDVQQKEwVDaXNj
bzEgMB4GA1UEAxMXQ2lzY28gTGljZW5zaW5nIFJvb3QgQ0EwHhcNMTMwNTMwMTk0
ODQ3WhcNMzgwNTMwMTk0ODQ3WjAyMQ4wDAYDVQQKEwVDaXNjbzEgMB4GA1UEAxMX
Q2lzY28gTGljZW5zaW5nIFJvb3QgQ0EwggEiMA0GCSqGSIb3DQEBAQUAA4IBDwAw
ggEKAoIBAQCmvL2WEx4F9xRepyws1obmFyIuofHv9k3LtMeYISqhR8ZV2NeUcTgN
hxFEHhqvBxqcrmOIijjlIBw5TXhGLvI5xln3FbmMCllbu1y9DP6+o3AKi/fY8lbu
SqToDdtv0clgsf0Y/8aclm+miVeiYX3nEE/cX+opVqxzkKPrK1Q2rchHosXatVPr
aamlNVjp8+PAvSPPWL1xiGjmlJEg8yDnlI5x1647zITxBoTHS8jgD1ObpCtCxou3
x0eQlrTLLWLqL1Bdx7BipGgR2VvoJQ/EXV1fuI8n0ZHFXw12YfmkzT2ZIyeouwO9
Tm1waXy634vfX0NolRNeRN/Hxs8E3X/RAgMBAAGjQjBAMA4GA1UdDwEB/wQEAwIB
BjAPBgNVHRMBAf8EBTADAQH/MB0GA1UdDgQWBBRJ3IVLPTHlGz5qF2Bq8zM9O0xz
6DANBgkqhkiG9w0BAQsFAAOCAQEAUH8k05MqZoYCXZ/oOK5cbU32sEljHHgkDakF
YE7c3v9P7St3/EYOzWNv291EaB46VnOrkJPTsWyePYvZiYe/5Ay9nhrsoMIhibtc
j6hWhs2YtkZVdbFGjfxmqEZ6PfRNVlcAat8PDc+DUBU8BP98Ieh4rBG6nNJVqSMs
fKe35sGvdPYVLpm3sfz5u+lz3n9b3euGxx47SRdlMItfsNoGuSr+f0lOip4HuFc3
86WL4RpIoinDfB5pOfCGeIDdzRbWus7K7rx8+YQoeHs1ICzcYORharYjzb0jDjr7
QYYWqUCT4ElNEKt1J+hvc5MuNbWIYv2uAnUVb3GbsvDWl99/KA==
-----END CERTIFICATE-----
"""
SLA_TRUSTPOINT = "SLA-TrustPoint"

# Messages, each from the transcript or code named beside it.
PASTE_BANNER = [  # crypto_pki_authenticate_terminal_paste__gh_qytang_c8kv.txt
    "",
    "Enter the base 64 encoded CA certificate.",
    'End with a blank line or the word "quit" on a line by itself',
    "",
]
ACCEPT_QUESTION = "% Do you accept this certificate? [yes/no]: "
ACCEPTED = "Trustpoint CA certificate accepted."
IMPORTED = "% Certificate successfully imported"
# pki_prompt_and_error_strings__genielibs_code.txt (Cisco's own automation treats these as failures)
ALREADY_HAS_CA = [
    "% Please delete your existing CA certificate first.",
    "% You must use 'no crypto pki trustpoint <trustpoint-name>' to delete the CA certificate",
]
# inferred: the wording when a paste does not decode; a test fake and a README suggest this line.
BAD_PASTE = "% Error in saving certificate: status = FAIL"
# crypto_pki_authenticate_error_scep_unreachable__gh_iosv_ca_lab.txt (SCEP, no CA server reachable)
SCEP_FAILED = "% Error in receiving Certificate Authority certificate: status = FAIL, cert length = 0"
# inferred: no transcript shows the answer "no"; IOS keeps nothing.
REFUSED = "% Certificate not imported."
# inferred: Cisco documentation wording for a configured `fingerprint` that matches.
FINGERPRINT_MATCHED = "Certificate validated - fingerprints matched."
# inferred: wording when the configured fingerprint does not match the paste.
FINGERPRINT_MISMATCH = "% Certificate fingerprint does not match the configured fingerprint. Not imported."
# no_crypto_pki_trustpoint__genielibs_wsim_c9800.txt
REMOVE_WARNING = [
    "",
    "% Removing an enrolled trustpoint will destroy all certificates",
    " received from the related Certificate Authority.",
    "",
]
REMOVE_QUESTION = "Are you sure you want to do this? [yes/no]: "
REMOVE_DONE = ["", "% Be sure to ask the CA administrator to revoke your certificates.", ""]


# crypto_pki_trustpool_import_terminal_and_show_trustpool__cisco_fn72323.txt
TRUSTPOOL_BANNER = ["% Enter PEM-formatted CA certificate.", '% End with a blank line or "quit" on a line by itself.']
TRUSTPOOL_IMPORTED = "% PEM files import succeeded."
# inferred: genielibs treats `Certificate import failed` / `No certificates imported from terminal` as failures;
# the exact line IOS prints is not captured.
TRUSTPOOL_FAILED = "% PEM files import failed."


def unknown_trustpoint(name: str) -> str:
    """pki_prompt_and_error_strings__genielibs_code.txt: `% Certificate Authority (trustpoint) X is unknown`."""
    return f"% Certificate Authority (trustpoint) {name} is unknown"


def cannot_find_policy(name: str) -> str:
    # inferred: genielibs only matches the substring "Can't find policy" for an unknown trustpoint.
    return f"% Can't find policy {name}"


def sla_root() -> Certificate:
    return Certificate.from_pem(SLA_ROOT_PEM, what="SLA root")


@dataclass
class Trustpoint:
    """One `crypto pki trustpoint` with its sub-commands and (at most) one CA certificate."""

    name: str
    enrollment: str | None = None
    fingerprint: str | None = None
    revocation_check: str | None = None
    chain_validation: str | None = None
    other: list[str] = field(default_factory=list)
    ca_cert: Certificate | None = None
    installed_at: datetime | None = None
    # The serial of a router self-signed certificate the running-config lists WITHOUT its hex: CSR1000V 16.9
    # shows `certificate self-signed 01` followed directly by `quit`
    # (show_running-config_head_crypto_pki_self-signed_01_no_hex__genielibs_csr1000v_16_9.txt).
    self_signed_serial: str | None = None

    def config_lines(self) -> list[str]:
        # Order as in show_running-config_crypto_pki_section__gh_ansible_facts_csr1000v_17_3.txt
        # (enrollment, subject-name, revocation-check, rsakeypair); fingerprint and chain-validation
        # placement inferred.
        lines = [f"crypto pki trustpoint {self.name}"]
        if self.enrollment:
            lines.append(f" enrollment {self.enrollment}")
        if self.fingerprint:
            lines.append(f" fingerprint {self.fingerprint}")
        lines.extend(f" {o}" for o in self.other)
        if self.revocation_check:
            lines.append(f" revocation-check {self.revocation_check}")
        if self.chain_validation:
            lines.append(f" chain-validation {self.chain_validation}")
        return lines

    def chain_lines(self) -> list[str]:
        lines = [f"crypto pki certificate chain {self.name}"]
        if self.self_signed_serial is not None:
            lines += [f" certificate self-signed {self.self_signed_serial}", "  \tquit"]
        if self.ca_cert is not None:
            lines.extend(render_certificate_block(self.ca_cert, kind="ca"))
        return lines


def default_sla_trustpoint(now: datetime) -> Trustpoint:
    return Trustpoint(
        SLA_TRUSTPOINT, enrollment="pkcs12", revocation_check="crl", ca_cert=sla_root(), installed_at=now
    )


class SubcommandError(Exception):
    """A trustpoint sub-command is invalid; ``column`` is where the caret goes (offset in the line)."""

    def __init__(self, column: int, message: str = "invalid") -> None:
        super().__init__(message)
        self.column = column


TRUSTPOINT_KEYWORDS = (
    "enrollment", "revocation-check", "chain-validation", "fingerprint", "subject-name", "rsakeypair",
    "usage", "auto-enroll", "serial-number", "ip-address", "source", "vrf", "password", "exit", "no",
)


def _need(args: list[tuple[str, int]]) -> list[str]:
    if not args:
        raise SubcommandError(-1, "incomplete")
    return [a for a, _ in args]


def _set_enrollment(tp: Trustpoint, args: list[tuple[str, int]]) -> None:
    values = _need(args)
    mode = _expand(values[0], ("terminal", "url", "pkcs12", "selfsigned", "mode", "retry", "profile"))
    if mode is None:
        raise SubcommandError(args[0][1])
    if mode == "url" and len(values) < 2:
        raise SubcommandError(-1, "incomplete")
    tp.enrollment = " ".join([mode, *values[1:]])


def _set_revocation(tp: Trustpoint, args: list[tuple[str, int]]) -> None:
    _need(args)
    checks: list[str] = []
    for word, column in args:
        check = _expand(word, ("none", "crl", "ocsp"))
        if check is None:
            raise SubcommandError(column)
        checks.append(check)
    tp.revocation_check = " ".join(checks)


def _set_chain_validation(tp: Trustpoint, args: list[tuple[str, int]]) -> None:
    values = _need(args)
    kind = _expand(values[0], ("stop", "continue"))
    if kind is None:
        raise SubcommandError(args[0][1])
    # IOS hides the default `chain-validation continue` in running-config.
    tp.chain_validation = None if kind == "continue" and len(values) == 1 else " ".join([kind, *values[1:]])


def _set_fingerprint(tp: Trustpoint, args: list[tuple[str, int]]) -> None:
    text = "".join(_need(args)).upper()
    if len(text) not in (32, 40) or any(ch not in "0123456789ABCDEF" for ch in text):
        raise SubcommandError(args[0][1])
    tp.fingerprint = text


_SETTERS = {
    "enrollment": _set_enrollment,
    "revocation-check": _set_revocation,
    "chain-validation": _set_chain_validation,
    "fingerprint": _set_fingerprint,
}


def apply_trustpoint_command(tp: Trustpoint, keyword: str, args: list[tuple[str, int]]) -> None:
    """Apply one `(ca-trustpoint)#` sub-command (``keyword`` already expanded from its abbreviation)."""
    setter = _SETTERS.get(keyword)
    if setter is not None:
        setter(tp, args)
        return
    line = " ".join([keyword, *_need(args)])
    tp.other = [o for o in tp.other if o.split()[0] != keyword] + [line]


def remove_trustpoint_setting(tp: Trustpoint, keyword: str) -> None:
    """`no <sub-command>` under a trustpoint."""
    if keyword == "enrollment":
        tp.enrollment = None
    elif keyword == "revocation-check":
        tp.revocation_check = None
    elif keyword == "chain-validation":
        tp.chain_validation = None
    elif keyword == "fingerprint":
        tp.fingerprint = None
    else:
        tp.other = [o for o in tp.other if o.split()[0] != keyword]


def _expand(word: str, choices: Sequence[str]) -> str | None:
    low = word.lower()
    if low in choices:
        return low
    hits = [c for c in choices if c.startswith(low)]
    return hits[0] if len(hits) == 1 else None


# --- the authenticate paste ----------------------------------------------------------------------


class Terminal(Protocol):
    """What a dialogue needs from a session: write text, read one line (echoed like IOS)."""

    async def write_lines(self, lines: Iterable[str]) -> None: ...

    async def write(self, text: str) -> None: ...

    async def read_line(self) -> str | None: ...


def decode_paste(lines: Sequence[str]) -> Certificate:
    """The certificate in a paste: PEM with or without BEGIN/END lines (bare base64 accepted)."""
    body = [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("-----")]
    text = "".join(body)
    if not text:
        raise CertificateError("empty paste")
    try:
        der = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise CertificateError(f"paste is not base64 ({exc})") from exc
    return Certificate.from_der(der, what="pasted certificate")


def decode_bundle(lines: Sequence[str]) -> list[Certificate]:
    """Every certificate of a pasted PEM bundle; bare base64 without BEGIN/END is one certificate (FN72323)."""
    stripped = [ln.strip() for ln in lines if ln.strip()]
    if not any(ln.startswith("-----BEGIN") for ln in stripped):
        return [decode_paste(stripped)]
    certs: list[Certificate] = []
    block: list[str] | None = None
    for line in stripped:
        if line.startswith("-----BEGIN"):
            block = []
        elif line.startswith("-----END"):
            if block is None:
                raise CertificateError("END line without BEGIN")
            certs.append(decode_paste(block))
            block = None
        elif block is not None:
            block.append(line)
    if block is not None:
        raise CertificateError("BEGIN line without END")
    return certs


async def read_paste(term: Terminal) -> list[str] | None:
    """Lines pasted up to a blank line or `quit` (both paste prompts end so); None when the session ended."""
    pasted: list[str] = []
    while True:
        line = await term.read_line()
        if line is None:
            return None
        stripped = line.strip()
        if not stripped or stripped.lower() == "quit":
            return pasted
        pasted.append(stripped)


async def import_trustpool(term: Terminal, pool: list[tuple[Certificate, str]]) -> bool:
    """`crypto pki trustpool import terminal`: read a PEM bundle, add its CA certificates as `Downloaded`."""
    await term.write_lines(TRUSTPOOL_BANNER)
    pasted = await read_paste(term)
    if pasted is None:
        return False
    try:
        certs = decode_bundle(pasted)
    except CertificateError:
        await term.write_lines([TRUSTPOOL_FAILED])
        return False
    # PKI Trustpool Management guide: "Device certificates ... cannot be enrolled in a PKI trustpool"
    # (inferred: a non-CA certificate in the bundle fails the whole import).
    if not certs or any(not cert.is_ca for cert in certs):
        await term.write_lines([TRUSTPOOL_FAILED])
        return False
    known = {cert for cert, _ in pool}
    pool.extend((cert, "Downloaded") for cert in certs if cert not in known)
    await term.write_lines([TRUSTPOOL_IMPORTED])
    return True


def fingerprint_lines(cert: Certificate) -> list[str]:
    """Right-aligned colons: 7 spaces before MD5, 6 before SHA1 (qytang C8Kv, no trailing space on IOS XE)."""
    return [
        "Certificate has the following attributes:",
        f"       Fingerprint MD5: {cert.md5_ios}",
        f"      Fingerprint SHA1: {cert.sha1_ios}",
    ]


def is_yes(answer: str | None) -> bool:
    return answer is not None and answer.strip().lower() in ("y", "ye", "yes")


async def authenticate(term: Terminal, tp: Trustpoint | None, name: str, now: datetime) -> bool:
    """The `crypto pki authenticate NAME` dialogue; True when a CA certificate was installed."""
    if tp is None:
        await term.write_lines([unknown_trustpoint(name)])
        return False
    if tp.ca_cert is not None:
        # inferred: the refusal comes right after the command, before any paste prompt.
        await term.write_lines(ALREADY_HAS_CA)
        return False
    if tp.enrollment is None or not tp.enrollment.startswith("terminal"):
        # inferred for a trustpoint without enrollment: IOS tries SCEP and no CA answers.
        await term.write_lines([SCEP_FAILED, ""])
        return False
    await term.write_lines(PASTE_BANNER)
    pasted = await read_paste(term)
    if pasted is None:
        return False
    try:
        cert = decode_paste(pasted)
    except CertificateError:
        await term.write_lines([BAD_PASTE, ""])
        return False
    await term.write_lines(fingerprint_lines(cert))
    if tp.fingerprint:
        configured = tp.fingerprint.upper()
        actual = cert.sha1_hex if len(configured) == 40 else cert.md5_ios.replace(" ", "")
        if configured != actual:
            await term.write_lines([FINGERPRINT_MISMATCH, ""])
            return False
        await term.write_lines([FINGERPRINT_MATCHED])
    else:
        await term.write("\r\n" + ACCEPT_QUESTION)
        if not is_yes(await term.read_line()):
            await term.write_lines([REFUSED, ""])
            return False
    tp.ca_cert = cert
    tp.installed_at = now
    await term.write_lines([ACCEPTED, IMPORTED, ""])
    return True


# --- show crypto pki ... -----------------------------------------------------------------------

_SHORT_NAMES = {
    NameOID.COMMON_NAME: "cn",
    NameOID.ORGANIZATION_NAME: "o",
    NameOID.ORGANIZATIONAL_UNIT_NAME: "ou",
    NameOID.LOCALITY_NAME: "l",
    NameOID.STATE_OR_PROVINCE_NAME: "st",
    NameOID.COUNTRY_NAME: "c",
    NameOID.EMAIL_ADDRESS: "e",
    NameOID.DOMAIN_COMPONENT: "dc",
    NameOID.SERIAL_NUMBER: "serialNumber",
    NameOID.UNSTRUCTURED_NAME: "hostname",
    x509.ObjectIdentifier("1.2.840.113549.1.9.8"): "ipaddress",
}


def _rdn_texts(name: x509.Name) -> list[str]:
    """One text per RDN in REVERSE of DER order, lowercase short names, multi-valued joined with `+`."""
    out: list[str] = []
    for rdn in reversed(list(name.rdns)):
        parts = []
        for attr in rdn:
            key = _SHORT_NAMES.get(attr.oid, attr.oid.dotted_string)
            value = attr.value if isinstance(attr.value, str) else attr.value.decode("utf-8", "replace")
            parts.append(f"{key}={value}")
        out.append("+".join(parts))
    return out


def dn_lines(name: x509.Name, indent: str = "    ") -> list[str]:
    """RDN lines; a value with `, ` continues on a line indented 5 spaces, comma dropped (genie trustpool)."""
    lines: list[str] = []
    for text in _rdn_texts(name):
        first, *rest = text.split(", ")
        lines.append(indent + first)
        lines.extend("     " + more for more in rest)
    return lines


def ios_date(moment: datetime, zone: Zone = UTC_ZONE) -> str:
    """`15:49:05 UTC Oct 30 2023`: day not zero-padded, in the router's zone (INDEX.md, show crypto pki)."""
    return pki_date(moment, zone)


_KEY_USAGE_BITS = (
    ("digital_signature", 0x80000000, "Digital Signature"),
    ("content_commitment", 0x40000000, "Non Repudiation"),
    ("key_encipherment", 0x20000000, "Key Encipherment"),
    ("data_encipherment", 0x10000000, "Data Encipherment"),
    ("key_agreement", 0x08000000, "Key Agreement"),
    ("key_cert_sign", 0x04000000, "Key Cert Sign"),
    ("crl_sign", 0x02000000, "CRL Signature"),
)


def _ext(cert: Certificate, oid: x509.ObjectIdentifier) -> x509.ExtensionType | None:
    try:
        return cert.x509.extensions.get_extension_for_oid(oid).value
    except x509.ExtensionNotFound:
        return None


def _hex_groups(hex_text: str) -> str:
    return format_fingerprint_ios(bytes.fromhex(hex_text))


def _verbose_lines(cert: Certificate, installed_at: datetime | None, zone: Zone) -> list[str]:
    key = cert.x509.public_key()
    lines = ["  Subject Key Info:"]
    if isinstance(key, rsa.RSAPublicKey):
        lines += ["    Public Key Algorithm: rsaEncryption", f"    RSA Public Key: ({key.key_size} bit)"]
    elif isinstance(key, ec.EllipticCurvePublicKey):
        # inferred: no EC sample in the transcripts.
        lines += ["    Public Key Algorithm: id-ecPublicKey", f"    EC Public Key:  ({key.curve.key_size} bit)"]
    hash_alg = cert.x509.signature_hash_algorithm
    hash_name = hash_alg.name.upper().replace("-", "") if hash_alg else "UNKNOWN"
    family = "RSA" if isinstance(key, rsa.RSAPublicKey) else "ECDSA"  # inferred for ECDSA
    lines.append(f"  Signature Algorithm: {hash_name} with {family} Encryption")
    # genie verbose samples: trailing space after the fingerprints and key ids
    lines += [f"  Fingerprint MD5: {cert.md5_ios} ", f"  Fingerprint SHA1: {cert.sha1_ios} ", "  X509v3 extensions:"]
    usage = _ext(cert, ExtensionOID.KEY_USAGE)
    if isinstance(usage, x509.KeyUsage):
        bits = 0
        names = []
        for attr, bit, label in _KEY_USAGE_BITS:
            if getattr(usage, attr):
                bits |= bit
                names.append(label)
        lines.append(f"    X509v3 Key Usage: {bits:08X}")
        lines += [f"      {n}" for n in names]
    if cert.subject_key_id:
        lines.append(f"    X509v3 Subject Key ID: {_hex_groups(cert.subject_key_id)} ")
    if cert.is_ca:
        lines += ["    X509v3 Basic Constraints:", "        CA: TRUE"]
    if cert.authority_key_id:
        lines.append(f"    X509v3 Authority Key ID: {_hex_groups(cert.authority_key_id)} ")
    lines.append("    Authority Info Access:")
    lines += [f"        CA ISSUERS: {url}" for url in cert.ca_issuer_urls]
    if installed_at is not None:
        lines.append(f"  Cert install time: {ios_date(installed_at, zone)} ")
    return lines


def certificate_usage(cert: Certificate) -> str:
    """`Certificate Usage:` as IOS names it: `Signature` for CA certificates with keyUsage (every CA block
    captured has one), `General Purpose` for a certificate without keyUsage (IOS's own self-signed certificates,
    CA:TRUE without keyUsage, show it: csr1000v, C9300 17.18; for a CA block only inferred) or one that signs and
    encrypts (router certificates in ntc_1); a key that only encrypts is `Encryption` (inferred). A pasted non-CA
    certificate (the tech note pasted the smtp.gmail.com leaf) is thus shown for what it is."""
    usage = _ext(cert, ExtensionOID.KEY_USAGE)
    if not isinstance(usage, x509.KeyUsage):
        return "General Purpose"
    if cert.is_ca:
        return "Signature"
    signs = usage.digital_signature or usage.content_commitment
    encrypts = usage.key_encipherment or usage.key_agreement or usage.data_encipherment
    if signs and encrypts:
        return "General Purpose"
    return "Encryption" if encrypts else "Signature"


def storage_file(cert: Certificate, taken: Collection[str] = (), *, ca: bool = True) -> str:
    """The nvram file IOS keeps a certificate in, from real captures (docs/lab-router.md "Storage"): the value of
    the ISSUER's first displayed RDN without spaces and dots, cut to 12 characters (`cn=CA-4k.labtest.com` ->
    `CA-4klabtest`, `cn=Cisco Licensing Root CA` -> `CiscoLicensi`); `#`; the low 16 bits of the serial in
    uppercase hex without leading zeros (`...6127` -> `6127`, `01` -> `1`); `CA` for a CA certificate; `.cer`.
    When that name is ``taken`` IOS uses another number (C9800: `#3CA` for serial 01); the lab counts up
    (inferred)."""
    first = (_rdn_texts(cert.x509.issuer) or ["="])[0].split("+")[0]
    stem = first.partition("=")[2].replace(" ", "").replace(".", "")[:12]
    number = int(cert.serial_ios, 16) & 0xFFFF
    while True:
        name = f"nvram:{stem}#{number:X}{'CA' if ca else ''}.cer"
        if name not in taken:
            return name
        number = (number + 1) & 0xFFFF


def certificate_block(
    cert: Certificate, trustpoints: Sequence[str], *, verbose: bool, installed_at: datetime | None,
    zone: Zone = UTC_ZONE, storage: str | None = None,
) -> list[str]:
    """One `CA Certificate` block, genie style (trailing spaces after Issuer:, Subject:, Validity Date:);
    ``storage`` adds the `Storage:` line after the trustpoints (ntc_1, csr1000v)."""
    lines = ["CA Certificate", "  Status: Available"]
    if verbose:
        lines.append("  Version: 3")
    lines += [
        f"  Certificate Serial Number (hex): {cert.serial_ios}",
        f"  Certificate Usage: {certificate_usage(cert)}",
        "  Issuer: ",
        *dn_lines(cert.x509.issuer),
        "  Subject: ",
        *dn_lines(cert.x509.subject),
    ]
    cdp = _ext(cert, ExtensionOID.CRL_DISTRIBUTION_POINTS)
    if isinstance(cdp, x509.CRLDistributionPoints):
        urls = [
            n.value
            for point in cdp
            for n in (point.full_name or [])
            if isinstance(n, x509.UniformResourceIdentifier)
        ]
        if urls:
            lines += ["  CRL Distribution Points: ", *(f"    {u}" for u in urls)]
    lines += [
        "  Validity Date: ",
        f"    start date: {ios_date(cert.not_before, zone)}",
        f"    end   date: {ios_date(cert.not_after, zone)}",
    ]
    if verbose:
        lines += _verbose_lines(cert, installed_at, zone)
    lines.append(f"  Associated Trustpoints: {' '.join(trustpoints)} ")
    if storage is not None:
        lines.append(f"  Storage: {storage}")
    return lines


def storage_files(trustpoints: Sequence[Trustpoint]) -> dict[Certificate, str]:
    """The nvram file of every trustpoint CA certificate (see storage_file), in config order."""
    files: dict[Certificate, str] = {}
    for tp in trustpoints:
        if tp.ca_cert is not None and tp.ca_cert not in files:
            files[tp.ca_cert] = storage_file(tp.ca_cert, files.values())
    return files


def show_certificates_pem(trustpoints: Sequence[Trustpoint], *, only: str | None) -> list[str]:
    """`show crypto pki certificates pem [NAME]`: `------Trustpoint: NAME------`, a `% ... certificate:` label,
    the PEM, a blank line (show_crypto_pki_certificates_pem_server__genie_1.txt). The label of an authenticated
    CA is `% CA certificate:` as in `crypto pki export ... pem terminal`
    (crypto_pki_export_pem_terminal__gh_iosv_ca_lab.txt; inferred for this command, whose only capture shows
    a router's own `% Self-signed CA certificate:`)."""
    out: list[str] = []
    for tp in trustpoints:
        if tp.ca_cert is None or (only is not None and tp.name != only):
            continue
        out += [f"------Trustpoint: {tp.name}------", "% CA certificate:", *tp.ca_cert.pem.splitlines(), ""]
    return out


def show_certificates(
    trustpoints: Sequence[Trustpoint], *, verbose: bool, only: str | None, zone: Zone = UTC_ZONE
) -> list[str]:
    """`show crypto pki certificates [verbose] [NAME]`: each certificate once, all its trustpoints listed."""
    order: list[Certificate] = []
    holders: dict[Certificate, list[str]] = {}
    installed: dict[Certificate, datetime | None] = {}
    for tp in trustpoints:
        if tp.ca_cert is None:
            continue
        if tp.ca_cert not in holders:
            order.append(tp.ca_cert)
            holders[tp.ca_cert] = []
            installed[tp.ca_cert] = tp.installed_at
        holders[tp.ca_cert].append(tp.name)
    blocks: list[list[str]] = []
    files = storage_files(trustpoints)
    for cert in order:
        if only is not None and only not in holders[cert]:
            continue
        blocks.append(certificate_block(cert, holders[cert], verbose=verbose, installed_at=installed[cert],
                                        zone=zone, storage=files.get(cert)))
    out: list[str] = []
    for i, block in enumerate(blocks):
        if i:
            out.append("")
        out.extend(block)
    return out


def show_trustpool(pool: Sequence[tuple[Certificate, str]], zone: Zone = UTC_ZONE) -> list[str]:
    """`show crypto pki trustpool`: `CA Certificate` blocks, `Associated Trustpoints: Trustpool ` and
    `Trustpool: Built-In|Downloaded` (show_crypto_pki_trustpool__genie_1.txt, one blank line between)."""
    out: list[str] = []
    for i, (cert, source) in enumerate(pool):
        if i:
            out.append("")
        out += certificate_block(cert, ["Trustpool"], verbose=False, installed_at=None, zone=zone)
        out.append(f"  Trustpool: {source}")
    return out


def show_trustpoints(trustpoints: Sequence[Trustpoint], *, status: bool, only: str | None) -> list[str]:
    """`show crypto pki trustpoints [NAME] [status]` (genie trustpoints / isr4451 status samples)."""
    out: list[str] = []
    selected = [tp for tp in trustpoints if only is None or tp.name == only]
    for i, tp in enumerate(selected):
        if i:
            out += ["", ""]
        out.append(f"Trustpoint {tp.name}:")
        cert = tp.ca_cert
        if status:
            if cert is not None:
                joined = ",".join(_rdn_texts(cert.x509.subject))
                out += [
                    "  Issuing CA certificate configured:",
                    "    Subject Name:",
                    f"     {joined}",
                    f"    Fingerprint MD5: {cert.md5_ios} ",
                    f"    Fingerprint SHA1: {cert.sha1_ios} ",
                ]
            out += [
                "  State:",
                "    Keys generated ............. No",
                f"    Issuing CA authenticated ....... {'Yes' if cert is not None else 'No'}",
                "    Certificate request(s) ..... None",
            ]
        elif cert is not None:
            out += [
                "    Subject Name:",
                *dn_lines(cert.x509.subject),
                f"          Serial Number (hex): {cert.serial_ios}",
                "    Certificate configured.",
            ]
    return out
