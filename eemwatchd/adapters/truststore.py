"""Load trust anchors: the system store, certifi's Mozilla bundle, or a CA file; cached per source."""

from __future__ import annotations

import logging
import os
import re
import ssl
import threading
import warnings
from pathlib import Path

from cryptography.utils import CryptographyDeprecationWarning

from eemwatchd.core.certificate import Certificate, load_certificates
from eemwatchd.errors import CertificateError, ConfigError

log = logging.getLogger(__name__)

# Where distributions keep their bundle when Python's compiled-in default points elsewhere.
SYSTEM_BUNDLES = (
    "/etc/ssl/certs/ca-certificates.crt",  # Debian, Ubuntu, Alpine
    "/etc/pki/tls/certs/ca-bundle.crt",  # RHEL, Fedora
    "/etc/ssl/ca-bundle.pem",  # SUSE
    "/etc/ssl/cert.pem",  # BSDs, macOS
)

_PEM_BLOCK = re.compile(rb"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", re.DOTALL)
_cache: dict[tuple[str, int, int], list[Certificate]] = {}
_lock = threading.Lock()


def system_bundle_path() -> Path:
    """The system CA bundle: what OpenSSL was built to use, else the usual distribution paths."""
    paths = ssl.get_default_verify_paths()
    candidates = [p for p in (paths.cafile, os.environ.get(paths.openssl_cafile_env)) if p]
    candidates += [paths.openssl_cafile, *SYSTEM_BUNDLES]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    raise ConfigError(
        [f"no system CA bundle found (looked at {', '.join(dict.fromkeys(candidates))}); install the "
         "ca-certificates package, or use trust store 'certifi' or a CA file"],
        source="trust store",
    )


def certifi_bundle_path() -> Path:
    try:
        import certifi
    except ImportError as exc:
        raise ConfigError(["trust store 'certifi' needs the certifi package (pip install certifi)"],
                          source="trust store") from exc
    return Path(certifi.where())


def resolve_source(source: str) -> Path:
    """``system``, ``certifi`` or a path to a PEM/DER/PKCS#7 CA file."""
    if source == "system":
        return system_bundle_path()
    if source == "certifi":
        return certifi_bundle_path()
    return Path(source).expanduser()


def load_anchors(source: str = "system") -> list[Certificate]:
    """The trust anchors of ``source``, cached until the file changes (path, size, mtime)."""
    path = resolve_source(source)
    try:
        stat = path.stat()
        key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
        with _lock:
            if key in _cache:
                return list(_cache[key])
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError([f"CA file {path}: cannot read it ({exc.strerror or exc})"],
                          source="trust store") from exc
    anchors = _parse_bundle(data, path)
    with _lock:
        _cache[key] = anchors
    return list(anchors)


def _parse_bundle(data: bytes, path: Path) -> list[Certificate]:
    blocks = _PEM_BLOCK.findall(data)
    if not blocks:
        try:
            anchors = load_certificates(data, what=f"CA file {path}")
        except CertificateError as exc:
            raise ConfigError([str(exc)], source="trust store") from exc
    else:
        # A system bundle may hold a certificate today's strict parsers refuse (negative serial, ...):
        # skip that one with a warning instead of losing the whole store.
        anchors = []
        for index, block in enumerate(blocks, start=1):
            try:
                with warnings.catch_warnings():
                    # Old roots with a non-positive serial still load today; not the user's problem.
                    warnings.simplefilter("ignore", CryptographyDeprecationWarning)
                    anchors.extend(load_certificates(block, what=f"CA file {path} block {index}"))
            except CertificateError as exc:
                log.warning("skipping an unreadable trust anchor: %s", exc)
    if not anchors:
        raise ConfigError([f"CA file {path}: holds no usable certificate"], source="trust store")
    return anchors
