"""A private PKI with the shape of Gmail's: leaf <- intermediate <- new root cross-signed by an old root.

The new root also exists self-signed (its "twin": same subject and key, other serial), exactly like
GTS Root R1 (self-signed) and GTS Root R1 cross-signed by GlobalSign Root CA (docs/field-notes.md sec. 1b).
Used by the lab, the tests and the benchmarks; never by the daemon against real servers.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import (
    AuthorityInformationAccessOID,
    ExtendedKeyUsageOID,
    NameOID,
    SignatureAlgorithmOID,
)

from eemwatchd.core.certificate import Certificate

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def new_key(kind: str = "ec", *, bits: int = 2048) -> PrivateKey:
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@dataclass(frozen=True)
class Issued:
    """A certificate with the private key of its subject."""

    cert: Certificate
    key: PrivateKey

    @property
    def name(self) -> x509.Name:
        return self.cert.x509.subject


def _name(cn: str, org: str = "eemwatchd lab") -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _ca_key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
        key_agreement=False, key_cert_sign=cert_sign, crl_sign=True, encipher_only=False, decipher_only=False,
    )


def _leaf_key_usage(key: PrivateKey) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=isinstance(key, rsa.RSAPrivateKey),
        data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
        encipher_only=False, decipher_only=False,
    )


def _build(
    *,
    subject: x509.Name,
    subject_key: PrivateKey,
    issuer_name: x509.Name,
    issuer_key: PrivateKey,
    not_before: datetime,
    not_after: datetime,
    is_ca: bool,
    path_length: int | None = None,
    issuer_ski_key: PrivateKey | None = None,
    sans: list[str] | None = None,
    ca_issuers_url: str | None = None,
    basic_constraints: bool = True,
    key_usage: x509.KeyUsage | str | None = "default",
) -> Certificate:
    """``basic_constraints=False`` leaves the extension out; ``key_usage`` None leaves it out, "default"
    gives a CA keyCertSign+cRLSign or a leaf digitalSignature (+keyEncipherment for RSA)."""
    public = subject_key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )
    if basic_constraints:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=is_ca, path_length=path_length if is_ca else None), critical=True
        )
    builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False).add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_public_key((issuer_ski_key or issuer_key).public_key()),
        critical=False,
    )
    if key_usage == "default":
        key_usage = _ca_key_usage(cert_sign=True) if is_ca else _leaf_key_usage(subject_key)
    if isinstance(key_usage, x509.KeyUsage):
        builder = builder.add_extension(key_usage, critical=True)
    if not is_ca:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    if sans:
        general: list[x509.GeneralName] = []
        for san in sans:
            try:
                general.append(x509.IPAddress(ipaddress.ip_address(san)))
            except ValueError:
                general.append(x509.DNSName(san))
        builder = builder.add_extension(x509.SubjectAlternativeName(general), critical=False)
    if ca_issuers_url:
        builder = builder.add_extension(
            x509.AuthorityInformationAccess(
                [x509.AccessDescription(AuthorityInformationAccessOID.CA_ISSUERS,
                                        x509.UniformResourceIdentifier(ca_issuers_url))]
            ),
            critical=False,
        )
    signed = builder.sign(issuer_key, hashes.SHA256())
    return Certificate(signed.public_bytes(Encoding.DER))


def make_root(cn: str, *, now: datetime, days: int = 3650, key_kind: str = "ec", back_days: int = 30) -> Issued:
    key = new_key(key_kind)
    name = _name(cn)
    cert = _build(
        subject=name, subject_key=key, issuer_name=name, issuer_key=key,
        not_before=now - timedelta(days=back_days), not_after=now + timedelta(days=days), is_ca=True,
    )
    return Issued(cert, key)


def cross_sign(root: Issued, *, by: Issued, now: datetime, days: int = 1500,
               ca_issuers_url: str | None = None) -> Certificate:
    """``root``'s subject and key, issued by ``by``: the cross-sign a server sends as its top cert."""
    return _build(
        subject=root.name, subject_key=root.key, issuer_name=by.name, issuer_key=by.key,
        not_before=now - timedelta(days=20), not_after=now + timedelta(days=days), is_ca=True,
        ca_issuers_url=ca_issuers_url,
    )


def make_intermediate(cn: str, *, by: Issued, now: datetime, days: int = 1000, key_kind: str = "ec",
                      ca_issuers_url: str | None = None) -> Issued:
    key = new_key(key_kind)
    cert = _build(
        subject=_name(cn), subject_key=key, issuer_name=by.name, issuer_key=by.key,
        not_before=now - timedelta(days=10), not_after=now + timedelta(days=days), is_ca=True,
        path_length=0, ca_issuers_url=ca_issuers_url,
    )
    return Issued(cert, key)


def make_leaf(hostnames: list[str], *, by: Issued, now: datetime, days: int = 84, key_kind: str = "ec",
              ca_issuers_url: str | None = None) -> Issued:
    key = new_key(key_kind)
    cert = _build(
        subject=_name(hostnames[0]), subject_key=key, issuer_name=by.name, issuer_key=by.key,
        not_before=now - timedelta(days=1), not_after=now + timedelta(days=days), is_ca=False,
        sans=hostnames, ca_issuers_url=ca_issuers_url,
    )
    return Issued(cert, key)


def make_ca(
    cn: str,
    *,
    by: Issued | None,
    now: datetime,
    days: int = 1000,
    back_days: int = 10,
    key: PrivateKey | None = None,
    key_kind: str = "ec",
    is_ca: bool = True,
    basic_constraints: bool = True,
    path_length: int | None = None,
    key_usage: bool = True,
    cert_sign: bool = True,
) -> Issued:
    """A CA certificate in any shape the trust-rule corpus needs; self-signed when ``by`` is None.

    ``basic_constraints=False`` leaves basicConstraints out, ``is_ca=False`` writes CA:FALSE,
    ``key_usage=False`` leaves keyUsage out, ``cert_sign=False`` writes a keyUsage without keyCertSign;
    ``key`` reuses a key (a twin or a re-issue of an existing CA).
    """
    subject_key = key or new_key(key_kind)
    name = _name(cn)
    issuer_name, issuer_key = (name, subject_key) if by is None else (by.name, by.key)
    cert = _build(
        subject=name, subject_key=subject_key, issuer_name=issuer_name, issuer_key=issuer_key,
        not_before=now - timedelta(days=back_days), not_after=now + timedelta(days=days), is_ca=is_ca,
        path_length=path_length, basic_constraints=basic_constraints,
        key_usage=_ca_key_usage(cert_sign=cert_sign) if key_usage else None,
    )
    return Issued(cert, subject_key)


_SHA256_WITH_RSA = bytes.fromhex("300d06092a864886f70d01010b0500")  # AlgorithmIdentifier, NULL parameters
_SHA1_WITH_RSA = bytes.fromhex("300d06092a864886f70d0101050500")


def resign_sha1(cert: Certificate, *, by: Issued) -> Certificate:
    """``cert`` (sha256WithRSA, issued by ``by``) signed again by ``by`` with sha1WithRSA.

    cryptography no longer signs with SHA-1, but old CAs did (and IOS's own self-signed certificates
    still do). The two AlgorithmIdentifiers have the same length and an RSA signature has the length of
    the issuer's modulus, so swapping them in place keeps every DER length right.
    """
    if not isinstance(by.key, rsa.RSAPrivateKey):
        raise TypeError("resign_sha1 needs an RSA issuer key")
    if cert.x509.signature_algorithm_oid != SignatureAlgorithmOID.RSA_WITH_SHA256:
        raise ValueError(f"resign_sha1 needs a sha256WithRSA certificate, got {cert.x509.signature_algorithm_oid}")
    old_tbs = cert.x509.tbs_certificate_bytes
    tbs = old_tbs.replace(_SHA256_WITH_RSA, _SHA1_WITH_RSA, 1)
    signature = by.key.sign(tbs, padding.PKCS1v15(), hashes.SHA1())  # noqa: S303 - the shape under test
    der = cert.der.replace(old_tbs, tbs).replace(_SHA256_WITH_RSA, _SHA1_WITH_RSA)
    return Certificate(der.replace(cert.x509.signature, signature))


LAB_HOSTNAMES = ["smtp.lab.example", "localhost", "127.0.0.1", "::1"]


@dataclass
class GmailShapedPki:
    """Old root -> cross-signed new root -> intermediate -> leaf, plus the new root's self-signed twin.

    ``served`` is what the SMTP server sends: leaf, intermediate, cross-signed new root. ``next_root`` is the
    root the provider has announced and will move to (``move_to_next_root``): it exists, and is in trust stores,
    long before any chain uses it (as GTS Root R2-R4 and ISRG Root X2 were), so it can be pre-staged.
    """

    old_root: Issued
    new_root: Issued
    new_root_cross: Certificate
    intermediate: Issued
    leaf: Issued
    next_root: Issued
    hostnames: list[str] = field(default_factory=lambda: list(LAB_HOSTNAMES))
    prefix: str = "Lab"
    announced: int = 1  # how many next roots were announced so far (names them)

    @classmethod
    def create(cls, *, now: datetime | None = None, hostnames: list[str] | None = None,
               key_kind: str = "ec", prefix: str = "Lab") -> GmailShapedPki:
        now = now or datetime.now(UTC)
        names = hostnames or list(LAB_HOSTNAMES)
        old_root = make_root(f"{prefix} GlobalSign Root CA", now=now, days=1200, key_kind=key_kind, back_days=3000)
        new_root = make_root(f"{prefix} GTS Root R1", now=now, days=5000, key_kind=key_kind)
        cross = cross_sign(new_root, by=old_root, now=now, days=1100)
        inter = make_intermediate(f"{prefix} GTS CA 1C3", by=new_root, now=now, key_kind=key_kind)
        leaf = make_leaf(names, by=inter, now=now, key_kind=key_kind)
        next_root = make_root(f"{prefix} Next Root N1", now=now, days=5000, key_kind=key_kind)
        return cls(old_root, new_root, cross, inter, leaf, next_root, names, prefix)

    @property
    def served(self) -> list[Certificate]:
        return [self.leaf.cert, self.intermediate.cert, self.new_root_cross]

    @property
    def anchors(self) -> list[Certificate]:
        """What a client trust store holds: both roots (as Debian's store holds both GlobalSign and GTS R1)."""
        return [self.old_root.cert, self.new_root.cert]

    @property
    def announced_anchors(self) -> list[Certificate]:
        """``anchors`` and the announced next root: what an up-to-date OS trust store holds."""
        return [*self.anchors, self.next_root.cert]

    def served_pem(self) -> str:
        return "".join(c.pem for c in self.served)

    def leaf_key_pem(self) -> bytes:
        return key_pem(self.leaf.key)

    def rotate_leaf(self, *, now: datetime | None = None) -> None:
        now = now or datetime.now(UTC)
        self.leaf = make_leaf(self.hostnames, by=self.intermediate, now=now)

    def rotate_intermediate(self, cn: str, *, now: datetime | None = None) -> None:
        """A new intermediate under the same root (Gmail: GTS CA 1C3 -> WR2), with a fresh leaf."""
        now = now or datetime.now(UTC)
        self.intermediate = make_intermediate(cn, by=self.new_root, now=now)
        self.leaf = make_leaf(self.hostnames, by=self.intermediate, now=now)

    def rotate_root(self, root_cn: str, intermediate_cn: str, *, now: datetime | None = None) -> None:
        """A new root, served cross-signed by the old root, with a new intermediate and leaf under it.

        The trust store learns the new root (as OS stores do); routers must learn it from us.
        """
        now = now or datetime.now(UTC)
        self.new_root = make_root(root_cn, now=now, days=5000)
        self.new_root_cross = cross_sign(self.new_root, by=self.old_root, now=now, days=1100)
        self.intermediate = make_intermediate(intermediate_cn, by=self.new_root, now=now)
        self.leaf = make_leaf(self.hostnames, by=self.intermediate, now=now)

    def move_to_next_root(self, intermediate_cn: str, *, now: datetime | None = None) -> Certificate:
        """The provider moves to the root it announced (``next_root``), sent on top as it is: nothing the routers
        hold signed it, so only a router that holds it (pre-staged) keeps mailing. A new next root is announced;
        returns the root moved to."""
        now = now or datetime.now(UTC)
        moved = self.next_root
        self.new_root = moved
        self.new_root_cross = moved.cert
        self.intermediate = make_intermediate(intermediate_cn, by=moved, now=now)
        self.leaf = make_leaf(self.hostnames, by=self.intermediate, now=now)
        self.announced += 1
        self.next_root = make_root(f"{self.prefix} Next Root N{self.announced}", now=now, days=5000)
        return moved.cert

    def move_to_new_anchor(self, root_cn: str, intermediate_cn: str, *, now: datetime | None = None) -> None:
        """The provider moves to a root nothing the routers hold has signed (another CA altogether): the
        server sends leaf, intermediate and the new self-signed root on top, no cross-sign. Until routers
        hold that root their mail fails, whatever else they trust.
        """
        now = now or datetime.now(UTC)
        self.new_root = make_root(root_cn, now=now, days=5000)
        self.new_root_cross = self.new_root.cert  # sent on top as it is: no cross-sign by a root routers hold
        self.intermediate = make_intermediate(intermediate_cn, by=self.new_root, now=now)
        self.leaf = make_leaf(self.hostnames, by=self.intermediate, now=now)
