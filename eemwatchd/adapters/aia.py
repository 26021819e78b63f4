"""Complete a chain whose server left out an issuer, from the AIA caIssuers URLs (plain http only)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from eemwatchd.core.certificate import Certificate, load_certificates
from eemwatchd.core.chain import top_of_sent_path
from eemwatchd.errors import AiaError, CertificateError

MAX_BYTES = 64 * 1024  # a CA certificate is 1-2 KiB; a PKCS#7 bundle a few
MAX_HEADER = 16 * 1024
MAX_REDIRECTS = 3


@dataclass(frozen=True)
class AiaLimits:
    """Bounds per download: seconds for the whole request and bytes of body."""

    timeout: float = 5.0
    max_bytes: int = MAX_BYTES
    max_depth: int = 4


async def fetch_issuer_certificates(url: str, *, limits: AiaLimits = AiaLimits()) -> list[Certificate]:
    """Download ``url`` (http only, redirects to http followed) and parse DER, PEM or PKCS#7 from it."""
    current = url
    for _ in range(MAX_REDIRECTS + 1):
        try:
            status, headers, body = await asyncio.wait_for(_get(current, limits.max_bytes), limits.timeout)
        except TimeoutError:
            raise AiaError(f"AIA {current}: no complete answer within {limits.timeout:g} s") from None
        except OSError as exc:
            raise AiaError(f"AIA {current}: {exc.strerror or exc}") from exc
        if status in (301, 302, 303, 307, 308) and "location" in headers:
            current = headers["location"]
            continue
        if status != 200:
            raise AiaError(f"AIA {current}: HTTP status {status}")
        try:
            return load_certificates(body, what=f"AIA {current}")
        except CertificateError as exc:
            raise AiaError(str(exc)) from exc
    raise AiaError(f"AIA {url}: more than {MAX_REDIRECTS} redirects")


async def _get(url: str, max_bytes: int) -> tuple[int, dict[str, str], bytes]:
    parts = urlsplit(url)
    if parts.scheme.lower() != "http" or not parts.hostname:
        raise AiaError(f"AIA {url}: only http:// caIssuers URLs are fetched")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    host_header = parts.netloc.rsplit("@", 1)[-1]
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port or 80, limit=MAX_HEADER)
    try:
        # HTTP/1.0: no chunked encoding, the body ends at EOF.
        writer.write(
            f"GET {path} HTTP/1.0\r\nHost: {host_header}\r\nUser-Agent: eemwatchd\r\n"
            "Accept: application/pkix-cert, application/pkcs7-mime, */*\r\nConnection: close\r\n\r\n".encode(
                "ascii", "strict"
            )
        )
        await writer.drain()
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError as exc:
            raise AiaError(f"AIA {url}: response headers longer than {MAX_HEADER} bytes") from exc
        except asyncio.IncompleteReadError as exc:
            raise AiaError(f"AIA {url}: connection closed before the response headers ended") from exc
        status, headers = _parse_head(head, url)
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > max_bytes:
            raise AiaError(f"AIA {url}: response of {length} bytes exceeds the limit of {max_bytes}")
        body = await reader.read(max_bytes + 1)
        while body and len(body) <= max_bytes:
            more = await reader.read(max_bytes + 1 - len(body))
            if not more:
                break
            body += more
        if len(body) > max_bytes:
            raise AiaError(f"AIA {url}: response exceeds the limit of {max_bytes} bytes")
        return status, headers, body
    finally:
        writer.transport.abort()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


def _parse_head(head: bytes, url: str) -> tuple[int, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    fields = lines[0].split(" ", 2)
    if len(fields) < 2 or not fields[0].startswith("HTTP/") or not fields[1].isdigit():
        raise AiaError(f"AIA {url}: not an HTTP response ({lines[0][:60]!r})")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return int(fields[1]), headers


async def complete_chain(
    chain: Sequence[Certificate],
    *,
    anchors: Sequence[Certificate],
    limits: AiaLimits = AiaLimits(),
) -> tuple[Certificate, ...]:
    """The issuers missing above the sent chain, fetched via AIA until an anchor signs the top.

    Returns only the fetched certificates (in order, nearest first); nothing when the sent chain already
    reaches an anchor or a self-signed certificate. Raises AiaError when a needed issuer cannot be fetched.
    """
    if not chain:
        return ()
    fetched: list[Certificate] = []
    current = top_of_sent_path(chain)
    for _ in range(limits.max_depth):
        if current.is_self_signed or any(current.is_signed_by(a) for a in anchors):
            break
        urls = current.ca_issuer_urls
        if not urls:
            if fetched:
                break
            raise AiaError(f"{current.common_name!r} names no caIssuers URL to fetch its issuer from")
        problems: list[str] = []
        issuer: Certificate | None = None
        for url in urls:
            try:
                candidates = await fetch_issuer_certificates(url, limits=limits)
            except AiaError as exc:
                problems.append(str(exc))
                continue
            issuer = next((c for c in candidates if current.is_signed_by(c)), None)
            if issuer is not None:
                break
            problems.append(f"AIA {url}: served no certificate that signed {current.common_name!r}")
        if issuer is None:
            raise AiaError("; ".join(problems))
        if issuer in fetched or issuer in chain:
            break
        fetched.append(issuer)
        current = issuer
    return tuple(fetched)
