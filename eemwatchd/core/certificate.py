"""The certificate model: one X.509 certificate identified by its DER, with what IOS and people show of it."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, pkcs7
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtensionOID, NameOID

from eemwatchd.core.fingerprints import short_fingerprint
from eemwatchd.errors import CertificateError

_PEM_BLOCK = re.compile(r"-----BEGIN CERTIFICATE-----(?P<body>.*?)-----END CERTIFICATE-----", re.DOTALL)


def format_fingerprint_ios(digest: bytes) -> str:
    """IOS shows MD5/SHA1 fingerprints as uppercase hex in groups of 8, one space apart."""
    text = digest.hex().upper()
    return " ".join(text[i : i + 8] for i in range(0, len(text), 8))


def format_serial_ios(serial: int) -> str:
    """The DER INTEGER content bytes in uppercase hex, leading 00 kept (as in ` certificate ca <SERIAL>`)."""
    if serial < 0:
        length = (serial.bit_length() + 8) // 8
        return serial.to_bytes(length, "big", signed=True).hex().upper()
    return serial.to_bytes(serial.bit_length() // 8 + 1, "big").hex().upper()



@dataclass(frozen=True)
class Certificate:
    """One certificate. Equality and hashing are by DER: the identical certificate, not a look-alike."""

    der: bytes

    # --- construction --------------------------------------------------------------------------

    @classmethod
    def from_der(cls, der: bytes, *, what: str = "certificate") -> Certificate:
        cert = cls(bytes(der))
        try:
            _ = cert.x509
        except ValueError as exc:
            raise CertificateError(f"{what}: not a DER X.509 certificate ({exc})") from exc
        return cert

    @classmethod
    def from_pem(cls, text: str | bytes, *, what: str = "certificate") -> Certificate:
        certs = load_pem_certificates(text, what=what)
        if len(certs) != 1:
            raise CertificateError(f"{what}: expected one PEM certificate, found {len(certs)}")
        return certs[0]

    @classmethod
    def from_base64(cls, text: str, *, what: str = "certificate") -> Certificate:
        """Bare base64 (the body of a PEM block, as IOS accepts it in a paste)."""
        compact = "".join(text.split())
        try:
            der = base64.b64decode(compact, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise CertificateError(f"{what}: invalid base64 ({exc})") from exc
        return cls.from_der(der, what=what)

    @cached_property
    def x509(self) -> x509.Certificate:
        return x509.load_der_x509_certificate(self.der)

    # --- identity ------------------------------------------------------------------------------

    @cached_property
    def sha256(self) -> str:
        """SHA-256 over the DER, 64 lowercase hex characters: our primary key for a certificate."""
        return hashlib.sha256(self.der).hexdigest()

    @property
    def short_fingerprint(self) -> str:
        """The first 8 hex characters of the SHA-256, uppercase (used in trustpoint names)."""
        return short_fingerprint(self.sha256)

    @cached_property
    def sha1_ios(self) -> str:
        return format_fingerprint_ios(hashlib.sha1(self.der).digest())  # noqa: S324 - IOS shows SHA1

    @cached_property
    def md5_ios(self) -> str:
        return format_fingerprint_ios(hashlib.md5(self.der).digest())  # noqa: S324 - IOS shows MD5

    @cached_property
    def sha1_hex(self) -> str:
        """SHA1 as IOS's `fingerprint` trustpoint sub-command takes it: 40 uppercase hex, no spaces."""
        return hashlib.sha1(self.der).hexdigest().upper()  # noqa: S324

    @cached_property
    def serial_ios(self) -> str:
        return format_serial_ios(self.x509.serial_number)

    # --- names and dates ---------------------------------------------------------------------

    @cached_property
    def subject(self) -> str:
        return self.x509.subject.rfc4514_string()

    @cached_property
    def issuer(self) -> str:
        return self.x509.issuer.rfc4514_string()

    @cached_property
    def common_name(self) -> str:
        """The subject CN, or the whole subject when there is none (for tables and messages)."""
        attrs = self.x509.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        if attrs:
            value = attrs[0].value
            return value if isinstance(value, str) else value.decode("utf-8", "replace")
        return self.subject or "(empty subject)"

    @property
    def not_before(self) -> datetime:
        return self.x509.not_valid_before_utc

    @property
    def not_after(self) -> datetime:
        return self.x509.not_valid_after_utc

    def is_expired(self, now: datetime) -> bool:
        return now > self.not_after

    def is_valid_at(self, now: datetime) -> bool:
        return self.not_before <= now <= self.not_after

    # --- extensions --------------------------------------------------------------------------

    @cached_property
    def is_ca(self) -> bool:
        try:
            bc = self.x509.extensions.get_extension_for_oid(ExtensionOID.BASIC_CONSTRAINTS).value
        except x509.ExtensionNotFound:
            return False
        assert isinstance(bc, x509.BasicConstraints)
        return bc.ca

    @cached_property
    def path_length(self) -> int | None:
        """basicConstraints pathLenConstraint: how many intermediate CA certificates may follow it (None: any)."""
        try:
            bc = self.x509.extensions.get_extension_for_oid(ExtensionOID.BASIC_CONSTRAINTS).value
        except x509.ExtensionNotFound:
            return None
        assert isinstance(bc, x509.BasicConstraints)
        return bc.path_length if bc.ca else None

    @cached_property
    def can_sign_certificates(self) -> bool:
        """A CA (basicConstraints CA:TRUE) whose keyUsage, when present, includes keyCertSign (RFC 5280
        4.2.1.3, 6.1.4 (n))."""
        if not self.is_ca:
            return False
        try:
            usage = self.x509.extensions.get_extension_for_oid(ExtensionOID.KEY_USAGE).value
        except x509.ExtensionNotFound:
            return True
        assert isinstance(usage, x509.KeyUsage)
        return usage.key_cert_sign

    @cached_property
    def subject_key_id(self) -> str | None:
        try:
            ext = self.x509.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_KEY_IDENTIFIER).value
        except x509.ExtensionNotFound:
            return None
        assert isinstance(ext, x509.SubjectKeyIdentifier)
        return ext.digest.hex()

    @cached_property
    def authority_key_id(self) -> str | None:
        try:
            ext = self.x509.extensions.get_extension_for_oid(ExtensionOID.AUTHORITY_KEY_IDENTIFIER).value
        except x509.ExtensionNotFound:
            return None
        assert isinstance(ext, x509.AuthorityKeyIdentifier)
        return ext.key_identifier.hex() if ext.key_identifier else None

    @cached_property
    def ca_issuer_urls(self) -> tuple[str, ...]:
        """AIA caIssuers URLs (where the issuer's certificate can be downloaded)."""
        try:
            aia = self.x509.extensions.get_extension_for_oid(ExtensionOID.AUTHORITY_INFORMATION_ACCESS).value
        except x509.ExtensionNotFound:
            return ()
        assert isinstance(aia, x509.AuthorityInformationAccess)
        return tuple(
            d.access_location.value
            for d in aia
            if d.access_method == AuthorityInformationAccessOID.CA_ISSUERS
            and isinstance(d.access_location, x509.UniformResourceIdentifier)
        )

    @cached_property
    def public_key_der(self) -> bytes:
        return self.x509.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)

    @cached_property
    def is_self_issued(self) -> bool:
        return self.x509.subject == self.x509.issuer

    @cached_property
    def is_self_signed(self) -> bool:
        """Self-issued and its signature verifies with its own key (a root, not a cross-sign)."""
        return self.is_self_issued and self.is_signed_by(self)

    def is_signed_by(self, issuer: Certificate) -> bool:
        """True when ``issuer``'s subject names this certificate's issuer and its key verifies the signature."""
        if self.x509.issuer != issuer.x509.subject:
            return False
        return verify_signature(self, issuer)

    # --- text ----------------------------------------------------------------------------------

    @cached_property
    def pem(self) -> str:
        return self.x509.public_bytes(Encoding.PEM).decode("ascii")

    def describe(self) -> str:
        """A one-line description for messages: CN, short fingerprint, expiry."""
        return f"{self.common_name} [{self.short_fingerprint}, expires {self.not_after:%Y-%m-%d}]"

    def __repr__(self) -> str:
        return f"Certificate({self.common_name!r}, sha256={self.sha256[:16]}...)"


def verify_signature(cert: Certificate, issuer: Certificate) -> bool:
    """Whether ``issuer``'s public key verifies ``cert``'s signature (no other checks)."""
    key = issuer.x509.public_key()
    c = cert.x509
    try:
        if isinstance(key, rsa.RSAPublicKey):
            params = c.signature_algorithm_parameters
            pad = params if isinstance(params, padding.PSS) else padding.PKCS1v15()
            assert c.signature_hash_algorithm is not None
            key.verify(c.signature, c.tbs_certificate_bytes, pad, c.signature_hash_algorithm)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            assert c.signature_hash_algorithm is not None
            key.verify(c.signature, c.tbs_certificate_bytes, ec.ECDSA(c.signature_hash_algorithm))
        elif isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
            key.verify(c.signature, c.tbs_certificate_bytes)
        else:
            return False
    except (InvalidSignature, UnsupportedAlgorithm, ValueError, TypeError, AssertionError):
        # Deliberately by hand, not verify_directly_issued_by: that refuses SHA-1, and routers'
        # own self-signed certificates (TP-self-signed-*) are sha1WithRSA.
        return False
    return True


def load_pem_certificates(text: str | bytes, *, what: str = "PEM") -> list[Certificate]:
    """Every PEM certificate block in ``text``, in order (duplicates kept). Raises on a broken block."""
    if isinstance(text, bytes):
        text = text.decode("ascii", "replace")
    out: list[Certificate] = []
    for index, match in enumerate(_PEM_BLOCK.finditer(text), start=1):
        out.append(Certificate.from_base64(match.group("body"), what=f"{what} block {index}"))
    if not out and "BEGIN CERTIFICATE" in text:
        raise CertificateError(f"{what}: a BEGIN CERTIFICATE line has no matching END CERTIFICATE line")
    return out


def load_certificates(data: bytes, *, what: str = "certificate file") -> list[Certificate]:
    """PEM (any number of blocks), DER or PKCS#7 (DER or PEM), as AIA URLs and CA files serve them."""
    stripped = data.lstrip()
    if stripped.startswith(b"-----BEGIN CERTIFICATE-----"):
        return load_pem_certificates(data, what=what)
    if stripped.startswith(b"-----BEGIN PKCS7-----"):
        try:
            return [Certificate(c.public_bytes(Encoding.DER)) for c in pkcs7.load_pem_pkcs7_certificates(data)]
        except ValueError as exc:
            raise CertificateError(f"{what}: broken PEM PKCS#7 ({exc})") from exc
    try:
        return [Certificate.from_der(data, what=what)]
    except CertificateError:
        pass
    try:
        return [Certificate(c.public_bytes(Encoding.DER)) for c in pkcs7.load_der_pkcs7_certificates(data)]
    except ValueError as exc:
        raise CertificateError(f"{what}: neither PEM, DER nor PKCS#7 certificate data") from exc


def unique(certs: Iterable[Certificate]) -> list[Certificate]:
    """The certificates in first-seen order without repeats."""
    seen: set[bytes] = set()
    out: list[Certificate] = []
    for cert in certs:
        if cert.der not in seen:
            seen.add(cert.der)
            out.append(cert)
    return out
