"""Fetching chains from real servers on 127.0.0.1: aiosmtpd, and raw asyncio servers that misbehave."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import threading
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from eemwatchd.adapters.smtp import (
    FetchTimeouts,
    fetch_chain,
    fetch_server,
    resolve_addresses,
)
from eemwatchd.errors import (
    FetchError,
    FetchTimeout,
    ResolveError,
    SmtpProtocolError,
    TlsHandshakeError,
)
from eemwatchd_lab.pki import GmailShapedPki
from eemwatchd_lab.smtp import LabSmtpServer, build_server_context

FAST = FetchTimeouts(connect=2.0, step=2.0, total=5.0)

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def raw_server(handler: Handler, *, tls: ssl.SSLContext | None = None) -> AsyncIterator[int]:
    """A raw TCP server on 127.0.0.1; every connection runs ``handler``. Yields the port."""
    tasks: set[asyncio.Task[None]] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError, asyncio.CancelledError):
            pass
        finally:
            writer.transport.abort()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=tls)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()


def smtp_script(
    *,
    greeting: bytes = b"220 mx.lab.example ESMTP\r\n",
    ehlo: bytes = b"250-mx.lab.example\r\n250-PIPELINING\r\n250-STARTTLS\r\n250 8BITMIME\r\n",
    go_ahead: bytes = b"220 2.0.0 Ready to start TLS\r\n",
    tls: ssl.SSLContext | None = None,
) -> Handler:
    """A server that plays one fixed dialogue, then (with ``tls``) does the handshake itself."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(greeting)
        await reader.readline()  # EHLO
        writer.write(ehlo)
        await reader.readline()  # STARTTLS
        writer.write(go_ahead)
        await writer.drain()
        if tls is not None:
            await writer.start_tls(tls)
        await asyncio.sleep(30)

    return handler


# --- against aiosmtpd -------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["starttls", "implicit"])
async def test_aiosmtpd_chain_exactly_as_served(pki: GmailShapedPki, mode: str) -> None:
    async with LabSmtpServer(mode=mode, certs=pki.served, key=pki.leaf.key) as srv:  # type: ignore[arg-type]
        chain = await fetch_chain("127.0.0.1", srv.port, mode=mode, timeouts=FAST)  # type: ignore[arg-type]
        results = await fetch_server("localhost", srv.port, mode=mode, timeouts=FAST)  # type: ignore[arg-type]
    assert list(chain) == pki.served
    assert [c.common_name for c in chain] == ["smtp.lab.example", "Lab GTS CA 1C3", "Lab GTS Root R1"]
    assert results, "localhost resolves to at least one address"
    loopback = [r for r in results if r.address == "127.0.0.1"]
    assert loopback
    assert loopback[0].ok
    assert list(loopback[0].chain) == pki.served


@pytest.mark.parametrize("mode", ["starttls", "implicit"])
async def test_duplicates_and_order_kept(pki: GmailShapedPki, mode: str) -> None:
    odd = [pki.leaf.cert, pki.new_root_cross, pki.intermediate.cert, pki.intermediate.cert, pki.new_root.cert]
    async with LabSmtpServer(mode=mode, certs=odd, key=pki.leaf.key) as srv:  # type: ignore[arg-type]
        chain = await fetch_chain("127.0.0.1", srv.port, mode=mode, timeouts=FAST)  # type: ignore[arg-type]
    assert list(chain) == odd


async def test_rotation_seen_by_next_fetch(pki: GmailShapedPki) -> None:
    async with LabSmtpServer(mode="starttls", certs=pki.served, key=pki.leaf.key) as srv:
        before = await fetch_chain("127.0.0.1", srv.port, mode="starttls", timeouts=FAST)
        pki.rotate_leaf()
        srv.set_chain(pki.served, pki.leaf.key)
        after = await fetch_chain("127.0.0.1", srv.port, mode="starttls", timeouts=FAST)
    assert before[0] != after[0]
    assert after[1:] == before[1:]


async def test_no_starttls_offered(pki: GmailShapedPki) -> None:
    async with LabSmtpServer(mode="plain") as srv:
        with pytest.raises(SmtpProtocolError) as info:
            await fetch_chain("127.0.0.1", srv.port, mode="starttls", timeouts=FAST)
    err = info.value
    assert err.step == "waiting for the EHLO reply"
    assert err.address == f"127.0.0.1:{srv.port}"
    assert "no STARTTLS offered" in str(err)
    assert "offered: " in str(err)


async def test_implicit_against_a_starttls_server_says_so(pki: GmailShapedPki) -> None:
    async with LabSmtpServer(mode="starttls", certs=pki.served, key=pki.leaf.key) as srv:
        with pytest.raises(FetchError, match="STARTTLS"):
            await fetch_chain("127.0.0.1", srv.port, mode="implicit", timeouts=FAST)


# --- misbehaving raw servers ------------------------------------------------------------------------


async def test_multi_line_greeting_succeeds(pki: GmailShapedPki) -> None:
    tls = build_server_context(pki.served, pki.leaf.key)
    greeting = b"220-mx.lab.example ESMTP\r\n220-no UCE\r\n220 ready\r\n"
    async with raw_server(smtp_script(greeting=greeting, tls=tls)) as port:
        chain = await fetch_chain("127.0.0.1", port, mode="starttls", timeouts=FAST)
    assert list(chain) == pki.served


async def test_bare_lf_and_lowercase_starttls_accepted(pki: GmailShapedPki) -> None:
    tls = build_server_context(pki.served, pki.leaf.key)
    script = smtp_script(greeting=b"220 mx\n", ehlo=b"250-mx\n250 starttls\n", go_ahead=b"220 go\n", tls=tls)
    async with raw_server(script) as port:
        chain = await fetch_chain("127.0.0.1", port, mode="starttls", timeouts=FAST)
    assert list(chain) == pki.served


async def test_454_reply_is_quoted() -> None:
    script = smtp_script(go_ahead=b"454 4.7.0 TLS not available due to local problem\r\n")
    async with raw_server(script) as port:
        with pytest.raises(SmtpProtocolError) as info:
            await fetch_chain("127.0.0.1", port, mode="starttls", timeouts=FAST)
    assert info.value.step == "waiting for the STARTTLS go-ahead"
    assert "454 4.7.0 TLS not available due to local problem" in str(info.value)


async def test_refused_session_quotes_greeting() -> None:
    async with raw_server(smtp_script(greeting=b"554 5.7.1 go away\r\n")) as port:
        with pytest.raises(SmtpProtocolError, match=r"554 5\.7\.1 go away"):
            await fetch_chain("127.0.0.1", port, mode="starttls", timeouts=FAST)


@pytest.mark.parametrize(
    ("greeting", "pattern"),
    [
        pytest.param(b"HTTP/1.1 400 Bad Request\r\n\r\n", r"not an SMTP reply: 'HTTP/1\.1 400", id="http"),
        pytest.param(b"\x16\x03\x01\x00\x05hello\r\n", r"not an SMTP reply", id="binary"),
        pytest.param(b"220-first\r\n250 second\r\n", r"reply code changed", id="code-change"),
        pytest.param(b"220 partial", r"closed the connection mid-line", id="closed-mid-line"),
        pytest.param(b"", r"server closed the connection$", id="closed-at-once"),
    ],
)
async def test_garbage_greeting(greeting: bytes, pattern: str) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(greeting)
        await writer.drain()
        writer.close()

    async with raw_server(handler) as port:
        with pytest.raises(SmtpProtocolError, match=pattern) as info:
            await fetch_chain("127.0.0.1", port, mode="starttls", timeouts=FAST)
    assert info.value.step == "waiting for the greeting"


async def test_huge_line_is_refused() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 " + b"x" * 100_000)
        await writer.drain()
        await asyncio.sleep(30)

    async with raw_server(handler) as port:
        with pytest.raises(SmtpProtocolError, match="longer than 2048 bytes"):
            await fetch_chain("127.0.0.1", port, mode="starttls", timeouts=FAST)


async def test_endless_multi_line_reply_is_refused() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220-spam spam spam spam\r\n" * 5000)
        await writer.drain()
        await asyncio.sleep(30)

    async with raw_server(handler) as port:
        with pytest.raises(SmtpProtocolError, match="reply longer than"):
            await fetch_chain("127.0.0.1", port, mode="starttls", timeouts=FAST)


async def test_silence_times_out_naming_the_step() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(30)

    timeouts = FetchTimeouts(connect=1.0, step=0.3, total=5.0)
    async with raw_server(handler) as port:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(FetchTimeout) as info:
            await fetch_chain("127.0.0.1", port, mode="starttls", timeouts=timeouts)
        elapsed = loop.time() - started
    assert info.value.step == "waiting for the greeting"
    assert "no answer within 0.3 s" in str(info.value)
    assert isinstance(info.value, TimeoutError)
    assert 0.25 < elapsed < 2.0


async def test_total_timeout_bounds_a_trickling_server() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:  # each line in time for the step limit, never finishing the reply
            writer.write(b"220-still here\r\n")
            await writer.drain()
            await asyncio.sleep(0.1)

    timeouts = FetchTimeouts(connect=1.0, step=2.0, total=0.6)
    async with raw_server(handler) as port:
        with pytest.raises(FetchTimeout, match=r"total fetch time of 0\.6 s used up"):
            await fetch_chain("127.0.0.1", port, mode="starttls", timeouts=timeouts)


async def test_silent_tls_server_times_out_in_handshake() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(30)

    timeouts = FetchTimeouts(connect=1.0, step=0.3, total=5.0)
    async with raw_server(handler) as port:
        with pytest.raises(FetchTimeout) as info:
            await fetch_chain("127.0.0.1", port, mode="implicit", timeouts=timeouts)
    assert info.value.step == "TLS handshake"


async def test_bytes_injected_after_go_ahead_are_refused(pki: GmailShapedPki) -> None:
    tls = build_server_context(pki.served, pki.leaf.key)
    injected = b"220 2.0.0 Ready to start TLS\r\n250 2.1.0 injected before the handshake\r\n"
    async with raw_server(smtp_script(go_ahead=injected, tls=tls)) as port:
        with pytest.raises(SmtpProtocolError, match="possible STARTTLS injection") as info:
            await fetch_chain("127.0.0.1", port, mode="starttls", timeouts=FAST)
    assert info.value.step == "waiting for the STARTTLS go-ahead"


async def test_tls_alert_is_named(pki: GmailShapedPki) -> None:
    # A blocking OpenSSL server in a thread: asyncio's server side aborts before flushing its alert.
    tls = build_server_context(pki.served, pki.leaf.key)

    def refuse_name(sslobj: ssl.SSLSocket, name: str | None, ctx: ssl.SSLContext) -> int:
        return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME

    tls.sni_callback = refuse_name  # type: ignore[assignment]
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(5)
    port = listener.getsockname()[1]

    def serve_one() -> None:
        with contextlib.suppress(OSError), listener:
            conn, _ = listener.accept()
            with conn, contextlib.suppress(OSError):
                tls.wrap_socket(conn, server_side=True)

    thread = threading.Thread(target=serve_one, daemon=True)
    thread.start()
    try:
        with pytest.raises(TlsHandshakeError) as info:
            await fetch_chain(
                "127.0.0.1", port, mode="implicit", servername="smtp.lab.example", timeouts=FAST
            )
    finally:
        await asyncio.to_thread(thread.join, 5)
    assert info.value.step == "TLS handshake"
    assert "server sent TLS alert unrecognized_name" in str(info.value)


@pytest.mark.parametrize(
    ("host", "expected_sni"),
    [
        pytest.param("localhost", "localhost", id="name-sends-sni"),
        pytest.param("127.0.0.1", None, id="ip-literal-sends-none"),
    ],
)
async def test_sni(pki: GmailShapedPki, host: str, expected_sni: str | None) -> None:
    seen: list[str | None] = []
    tls = build_server_context(pki.served, pki.leaf.key)

    def record(sslobj: ssl.SSLObject, name: str | None, ctx: ssl.SSLContext) -> None:
        seen.append(name)

    tls.sni_callback = record

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(30)

    async with raw_server(handler, tls=tls) as port:
        results = await fetch_server(host, port, mode="implicit", timeouts=FAST)
    ok = [r for r in results if r.address == "127.0.0.1"]
    assert ok
    assert ok[0].ok
    assert seen[0] == expected_sni


async def test_connection_refused_is_per_address() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    results = await fetch_server("127.0.0.1", port, mode="starttls", timeouts=FAST)
    assert len(results) == 1
    assert not results[0].ok
    assert results[0].error is not None
    assert results[0].error.step == "connecting"
    assert "connection refused" in str(results[0].error)


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        pytest.param("127.0.0.1", ["127.0.0.1"], id="ipv4-literal"),
        pytest.param("[::1]", ["::1"], id="bracketed-ipv6"),
        pytest.param("0:0::1", ["::1"], id="ipv6-normalised"),
    ],
)
async def test_literal_is_its_own_address(host: str, expected: list[str]) -> None:
    assert await resolve_addresses(host, 25) == expected


async def test_unresolvable_name() -> None:
    with pytest.raises(ResolveError, match=r"nonexistent\.invalid") as info:
        await resolve_addresses("nonexistent.invalid", 25, timeout=3.0)
    assert info.value.step == "resolving"
