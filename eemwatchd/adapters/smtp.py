"""Fetch the certificate chain an SMTP server sends (STARTTLS or implicit TLS), from every address it has."""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, TypeVar

from eemwatchd.core.certificate import Certificate
from eemwatchd.errors import (
    FetchError,
    FetchTimeout,
    ResolveError,
    SmtpProtocolError,
    TlsHandshakeError,
)

Mode = Literal["starttls", "implicit"]
MODES: tuple[Mode, ...] = ("starttls", "implicit")
DEFAULT_PORTS: dict[str, int] = {"starttls": 587, "implicit": 465}

MAX_LINE = 2048  # RFC 5321 allows 512 octets per reply line; servers stay far below this
MAX_REPLY = 64 * 1024  # all lines of one reply together
MAX_REPLY_LINES = 200

_REPLY_LINE = re.compile(rb"^(?P<code>[2-5]\d\d)(?P<sep>[ -]?)(?P<text>[^\r\n]*)\r?\n$")

T = TypeVar("T")


@dataclass(frozen=True)
class FetchTimeouts:
    """Seconds allowed to connect, per dialogue step (one reply, the handshake), and for the whole fetch."""

    connect: float = 10.0
    step: float = 10.0
    total: float = 30.0


@dataclass(frozen=True)
class AddressResult:
    """What one address of a server sent: the chain exactly as sent, or why there is none."""

    address: str
    port: int
    chain: tuple[Certificate, ...] = ()
    error: FetchError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class SmtpReply:
    code: int
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        """The reply as the server wrote it, on one line (``454 4.7.0 TLS not available``)."""
        return " / ".join(f"{self.code} {line}".rstrip() for line in self.lines)


def format_endpoint(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


# --- the one place that knows how to get the chain as sent ---------------------------------------


def sent_chain(ssl_object: ssl.SSLObject) -> tuple[Certificate, ...]:
    """The certificates exactly as the peer sent them: order and duplicates kept.

    Python 3.13 made ``get_unverified_chain()`` public (returning DER bytes); 3.10-3.12 only have it on the
    private ``_sslobj`` (returning ``_ssl.Certificate``). ``get_verified_chain()`` is useless here: under
    CERT_NONE it is not verified at all.
    """
    public = getattr(ssl_object, "get_unverified_chain", None)
    raw = public() if public is not None else ssl_object._sslobj.get_unverified_chain()  # type: ignore[attr-defined]
    certs: list[Certificate] = []
    for index, item in enumerate(raw or (), start=1):
        der = item if isinstance(item, bytes) else item.public_bytes(2)  # 2 == _ssl.ENCODING_DER
        certs.append(Certificate.from_der(der, what=f"certificate {index} sent by the server"))
    return tuple(certs)


def _client_context() -> ssl.SSLContext:
    # No verification while fetching: we want whatever the server sends, and judge it separately.
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


_CONTEXT: ssl.SSLContext | None = None


def _shared_context() -> ssl.SSLContext:
    global _CONTEXT
    if _CONTEXT is None:
        _CONTEXT = _client_context()
    return _CONTEXT


def describe_ssl_error(exc: BaseException) -> str:
    """A one-line reason for a failed handshake: the TLS alert name when the server sent one."""
    if isinstance(exc, ssl.SSLError):
        reason = exc.reason or ""
        # OpenSSL names received alerts TLSV1_ALERT_x, SSLV3_ALERT_x, TLSV13_ALERT_x, and a few TLSV1_x
        # (TLSV1_UNRECOGNIZED_NAME, TLSV1_BAD_CERTIFICATE_HASH_VALUE, ...).
        for prefix in ("TLSV13_ALERT_", "TLSV1_ALERT_", "SSLV3_ALERT_", "TLSV1_"):
            if reason.startswith(prefix):
                return f"server sent TLS alert {reason[len(prefix):].lower()}"
        if reason in ("WRONG_VERSION_NUMBER", "UNKNOWN_PROTOCOL", "RECORD_LAYER_FAILURE",
                      "PACKET_LENGTH_TOO_LONG", "HTTP_REQUEST"):
            return f"the server did not answer in TLS ({reason.lower()}); does it expect STARTTLS?"
        if isinstance(exc, ssl.SSLEOFError) or reason == "UNEXPECTED_EOF_WHILE_READING":
            return "server closed the connection during the TLS handshake"
        if reason:
            return f"TLS handshake failed: {reason.lower()}"
        return f"TLS handshake failed: {exc}"
    if isinstance(exc, ConnectionResetError):
        return "connection reset by the server during the TLS handshake"
    if isinstance(exc, ConnectionError | OSError):
        return f"TLS handshake failed: {exc.strerror or exc}"
    return f"TLS handshake failed: {exc}"


# --- the plaintext SMTP part ----------------------------------------------------------------------


class _SmtpClient(asyncio.Protocol):
    """Plaintext SMTP reader with bounded lines and replies; it keeps every byte it was sent."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._waiter: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > MAX_REPLY and self.transport is not None:
            self.transport.pause_reading()  # enough to judge; never buffer without bound
        self._wake()

    def eof_received(self) -> bool | None:
        self.closed = True
        self._wake()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def _more(self) -> None:
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    async def read_line(self) -> bytes:
        while True:
            end = self.buffer.find(b"\n")
            if 0 <= end < MAX_LINE:
                line = bytes(self.buffer[: end + 1])
                del self.buffer[: end + 1]
                if self.transport is not None and len(self.buffer) <= MAX_REPLY and not self.closed:
                    self.transport.resume_reading()
                return line
            if end >= MAX_LINE or (end < 0 and len(self.buffer) >= MAX_LINE):
                raise SmtpProtocolError(f"reply line longer than {MAX_LINE} bytes: {_preview(self.buffer)}")
            if self.closed:
                if self.buffer:
                    raise SmtpProtocolError(f"server closed the connection mid-line: {_preview(self.buffer)}")
                raise SmtpProtocolError("server closed the connection")
            await self._more()

    async def read_reply(self) -> SmtpReply:
        lines: list[str] = []
        size = 0
        code: bytes | None = None
        while True:
            raw = await self.read_line()
            size += len(raw)
            if size > MAX_REPLY or len(lines) >= MAX_REPLY_LINES:
                raise SmtpProtocolError(f"reply longer than {MAX_REPLY} bytes or {MAX_REPLY_LINES} lines")
            match = _REPLY_LINE.match(raw)
            if match is None:
                raise SmtpProtocolError(f"not an SMTP reply: {_preview(raw)}")
            if code is not None and match["code"] != code:
                raise SmtpProtocolError(
                    f"reply code changed inside a multi-line reply ({code.decode()} then {_preview(raw)})"
                )
            code = match["code"]
            lines.append(match["text"].decode("utf-8", "replace"))
            if match["sep"] != b"-":
                return SmtpReply(int(code), tuple(lines))

    def send(self, line: str) -> None:
        assert self.transport is not None
        self.transport.write(line.encode("ascii") + b"\r\n")


def _preview(data: bytes | bytearray, limit: int = 80) -> str:
    text = bytes(data[:limit]).decode("utf-8", "replace")
    return repr(text) + ("..." if len(data) > limit else "")


def _ehlo_name(transport: asyncio.Transport) -> str:
    """An address literal of our side of the connection: always a valid EHLO argument (RFC 5321 4.1.3)."""
    sockname = transport.get_extra_info("sockname")
    local = str(sockname[0]) if sockname else "127.0.0.1"
    return f"[IPv6:{local}]" if ":" in local else f"[{local}]"


class _Fetch:
    """One fetch from one address: connect, (SMTP dialogue), TLS handshake, take the chain, abort."""

    def __init__(self, address: str, port: int, mode: Mode, servername: str | None, timeouts: FetchTimeouts):
        self.address = address
        self.port = port
        self.mode = mode
        self.servername = servername
        self.timeouts = timeouts
        self.endpoint = format_endpoint(address, port)
        self.loop = asyncio.get_running_loop()
        self.deadline = self.loop.time() + timeouts.total

    async def _within(self, step: str, limit: float, awaitable: Awaitable[T]) -> T:
        remaining = self.deadline - self.loop.time()
        budget = min(limit, remaining)
        try:
            return await asyncio.wait_for(awaitable, max(budget, 0.0))
        except TimeoutError:
            if remaining < limit:
                reason = f"total fetch time of {self.timeouts.total:g} s used up"
            else:
                reason = f"no answer within {limit:g} s"
            raise FetchTimeout(reason, address=self.endpoint, step=step) from None
        except FetchError as exc:
            if exc.address is None:
                raise type(exc)(exc.reason, address=self.endpoint, step=exc.step or step) from exc
            raise

    async def run(self) -> tuple[Certificate, ...]:
        client = _SmtpClient()
        transport: asyncio.Transport | None = None
        tls_transport: asyncio.BaseTransport | None = None
        try:
            try:
                transport, _ = await self._within(
                    "connecting",
                    self.timeouts.connect,
                    self.loop.create_connection(lambda: client, self.address, self.port),
                )
            except OSError as exc:
                raise FetchError(_os_reason(exc), address=self.endpoint, step="connecting") from exc
            assert transport is not None
            if self.mode == "starttls":
                await self._starttls_dialogue(client)
            elif client.buffer:
                # Implicit TLS: a server that talks first speaks SMTP, not TLS.
                raise SmtpProtocolError(
                    f"server spoke before the TLS handshake ({_preview(client.buffer)}): it expects "
                    "STARTTLS, not implicit TLS",
                    address=self.endpoint, step="TLS handshake",
                )
            tls_transport = await self._handshake(transport, client)
            ssl_object = tls_transport.get_extra_info("ssl_object")
            if not isinstance(ssl_object, ssl.SSLObject):
                raise TlsHandshakeError("no TLS session after the handshake", address=self.endpoint,
                                        step="TLS handshake")
            chain = sent_chain(ssl_object)
            if not chain:
                raise TlsHandshakeError("server sent no certificate", address=self.endpoint,
                                        step="TLS handshake")
            return chain
        finally:
            # abort(), never close()+wait_closed(): a polite TLS close costs ~25 ms and can hang ~30 s.
            for tr in (tls_transport, transport):
                if isinstance(tr, asyncio.Transport) and not tr.is_closing():
                    tr.abort()
                elif tr is not None:
                    tr.close()

    async def _starttls_dialogue(self, client: _SmtpClient) -> None:
        step_limit = self.timeouts.step
        greeting = await self._within("waiting for the greeting", step_limit, client.read_reply())
        if greeting.code != 220:
            raise SmtpProtocolError(f"server refused the session: {greeting.text}", address=self.endpoint,
                                    step="waiting for the greeting")
        assert client.transport is not None
        client.send(f"EHLO {_ehlo_name(client.transport)}")
        ehlo = await self._within("waiting for the EHLO reply", step_limit, client.read_reply())
        if ehlo.code != 250:
            raise SmtpProtocolError(f"server refused EHLO: {ehlo.text}", address=self.endpoint,
                                    step="waiting for the EHLO reply")
        # Extension keywords start on the second line; the first carries the server's name.
        keywords = {line.split(" ", 1)[0].upper() for line in ehlo.lines[1:] if line}
        if "STARTTLS" not in keywords:
            offered = ", ".join(sorted(keywords)) or "no extensions"
            raise SmtpProtocolError(f"no STARTTLS offered in the EHLO reply (offered: {offered})",
                                    address=self.endpoint, step="waiting for the EHLO reply")
        client.send("STARTTLS")
        go_ahead = await self._within("waiting for the STARTTLS go-ahead", step_limit, client.read_reply())
        if go_ahead.code != 220:
            raise SmtpProtocolError(f"server refused STARTTLS: {go_ahead.text}", address=self.endpoint,
                                    step="waiting for the STARTTLS go-ahead")
        if client.buffer:
            # Bytes after the 220 but before our ClientHello would be read as if they came over TLS
            # (STARTTLS command injection, CVE-2011-0411 style): refuse, whoever put them there.
            raise SmtpProtocolError(
                f"{len(client.buffer)} unexpected bytes after the STARTTLS go-ahead, before the TLS "
                f"handshake ({_preview(client.buffer)}): refusing (possible STARTTLS injection)",
                address=self.endpoint, step="waiting for the STARTTLS go-ahead",
            )

    async def _handshake(self, transport: asyncio.Transport, client: _SmtpClient) -> asyncio.BaseTransport:
        # SNI: sent for names; Python sends none when server_hostname is an IP literal.
        limit = self.timeouts.step
        try:
            tls = await self._within(
                "TLS handshake",
                limit,
                self.loop.start_tls(
                    transport, client, _shared_context(), server_hostname=self.servername,
                    ssl_handshake_timeout=limit + 1.0,
                ),
            )
        except FetchError:
            raise
        except (ssl.SSLError, OSError) as exc:
            raise TlsHandshakeError(
                describe_ssl_error(exc), address=self.endpoint, step="TLS handshake"
            ) from exc
        if tls is None:
            raise TlsHandshakeError("connection closed during the TLS handshake", address=self.endpoint,
                                    step="TLS handshake")
        return tls


def _os_reason(exc: OSError) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (nothing listens on that port?)"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve: {exc.strerror or exc}"
    return str(exc.strerror or exc)


async def fetch_chain(
    address: str,
    port: int,
    *,
    mode: Mode,
    servername: str | None = None,
    timeouts: FetchTimeouts = FetchTimeouts(),
) -> tuple[Certificate, ...]:
    """The chain one address sends, exactly as sent. ``servername`` is sent as SNI (None: no SNI).

    Raises FetchError subclasses naming the address and step.
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}: use starttls or implicit")
    return await _Fetch(address, port, mode, servername, timeouts).run()


async def resolve_addresses(host: str, port: int, *, timeout: float = 10.0) -> list[str]:
    """Every A/AAAA address of ``host`` in resolver order, without repeats; an IP literal is its own."""
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if is_ip_literal(bare):
        return [str(ipaddress.ip_address(bare))]
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(bare, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP), timeout
        )
    except TimeoutError:
        raise ResolveError(f"no DNS answer for {bare} within {timeout:g} s", address=bare,
                           step="resolving") from None
    except (socket.gaierror, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, socket.gaierror) else str(exc)
        raise ResolveError(f"cannot resolve {bare}: {reason}", address=bare, step="resolving") from exc
    out: list[str] = []
    for family, _type, _proto, _canon, sockaddr in infos:
        if family in (socket.AF_INET, socket.AF_INET6):
            addr = str(sockaddr[0])
            if addr not in out:
                out.append(addr)
    if not out:
        raise ResolveError(f"{bare} has no A or AAAA address", address=bare, step="resolving")
    return out


async def fetch_server(
    host: str,
    port: int,
    *,
    mode: Mode,
    servername: str | None = None,
    timeouts: FetchTimeouts = FetchTimeouts(),
    max_concurrency: int = 10,
    resolve: Callable[[str, int], Awaitable[list[str]]] | None = None,
) -> list[AddressResult]:
    """Fetch the chain from every address of ``host``, each reported on its own, in resolver order.

    Providers serve different chains from different addresses during a rollout, so no address stands
    for another. SNI is ``servername``, else ``host`` when it is a name. Raises ResolveError only when
    the name has no address at all; per-address failures are in the results. Concurrency is capped:
    a cold Postfix refuses connections at a few hundred at once.
    ``resolve(host, port)`` gives the addresses to fetch from (default: resolve_addresses, i.e. DNS).
    """
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    sni = servername or (None if is_ip_literal(bare) else bare)
    if resolve is None:
        addresses = await resolve_addresses(bare, port, timeout=timeouts.connect)
    else:
        addresses = await resolve(bare, port)
    gate = asyncio.Semaphore(max(1, max_concurrency))

    async def one(address: str) -> AddressResult:
        async with gate:
            try:
                chain = await fetch_chain(address, port, mode=mode, servername=sni, timeouts=timeouts)
            except FetchError as exc:
                return AddressResult(address, port, error=exc)
            except Exception as exc:
                wrapped = FetchError(f"unexpected error: {exc!r}", address=format_endpoint(address, port))
                wrapped.__cause__ = exc
                return AddressResult(address, port, error=wrapped)
        return AddressResult(address, port, chain=chain)

    return list(await asyncio.gather(*(one(a) for a in addresses)))
