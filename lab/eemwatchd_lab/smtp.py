"""A loopback SMTP server for the lab and tests: STARTTLS or implicit TLS, a chosen chain, optional AUTH."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import ssl
import tempfile
import warnings
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from eemwatchd.core.certificate import Certificate
from eemwatchd_lab.router import invariants

LabMode = Literal["starttls", "implicit", "plain"]


class _DropLoginDataDeprecation(logging.Filter):
    """aiosmtpd 1.4 sets its own deprecated Session.login_data on every AUTH and warns about it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "login_data is deprecated" not in record.getMessage()


logging.getLogger("mail.log").addFilter(_DropLoginDataDeprecation())


@dataclass(frozen=True)
class ReceivedMessage:
    """One message the lab server accepted."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    login: str | None  # the authenticated user name, None when the client did not authenticate
    tls: bool


def build_server_context(certs: Sequence[Certificate], key: PrivateKeyTypes | bytes) -> ssl.SSLContext:
    """A server SSLContext that sends exactly ``certs`` (leaf first, order and duplicates kept).

    load_cert_chain only reads files, so the chain and key go through a private temp file that is
    removed again before this returns.
    """
    if not certs:
        raise ValueError("a served chain needs at least the leaf certificate")
    if isinstance(key, bytes):
        key_pem = key
    else:
        key_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    fd, path = tempfile.mkstemp(prefix="eemwatchd-lab-", suffix=".pem")  # created 0600
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write("".join(c.pem for c in certs).encode("ascii"))
            fh.write(key_pem)
        ctx.load_cert_chain(path)
    finally:
        os.unlink(path)
    return ctx


class _Handler:
    """aiosmtpd handler: records each delivered message on the server."""

    def __init__(self, server: LabSmtpServer) -> None:
        self._server = server

    async def handle_DATA(self, server: SMTP, session: Any, envelope: Any) -> str:
        auth = session.auth_data
        login = auth.login.decode("utf-8", "replace") if isinstance(auth, LoginPassword) else None
        data = envelope.content if isinstance(envelope.content, bytes) else str(envelope.content).encode()
        tls = self._server.mode == "implicit" or session.ssl is not None
        self._server._record(
            ReceivedMessage(
                mail_from=str(envelope.mail_from),
                rcpt_tos=tuple(str(r) for r in envelope.rcpt_tos),
                data=data,
                login=login,
                tls=tls,
            )
        )
        return "250 2.0.0 OK queued"


class LabSmtpServer:
    """An aiosmtpd server on 127.0.0.1 (port 0 = any free port), started and stopped from async code.

    ``async with LabSmtpServer(mode="starttls", certs=pki.served, key=pki.leaf.key) as srv:`` then
    ``srv.host``, ``srv.port``, ``srv.messages``. ``set_chain`` changes what later connections are served.
    """

    def __init__(
        self,
        *,
        mode: LabMode = "starttls",
        certs: Sequence[Certificate] = (),
        key: PrivateKeyTypes | bytes | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        username: str | None = None,
        password: str | None = None,
        hostname: str = "smtp.lab.example",
    ) -> None:
        if mode not in ("starttls", "implicit", "plain"):
            raise ValueError(f"unknown lab SMTP mode {mode!r}: use starttls, implicit or plain")
        if mode != "plain" and (not certs or key is None):
            raise ValueError(f"mode {mode!r} needs a certificate chain and the leaf's private key")
        if (username is None) != (password is None):
            raise ValueError("give both username and password, or neither")
        self.mode: LabMode = mode
        self.host = host
        self.port = port
        self.hostname = hostname
        self._username = username
        self._password = password
        self._ctx: ssl.SSLContext | None = build_server_context(certs, key) if key is not None else None
        self._served: tuple[Certificate, ...] = tuple(certs)
        self._server: asyncio.base_events.Server | None = None
        self._sessions: weakref.WeakSet[SMTP] = weakref.WeakSet()
        self.messages: list[ReceivedMessage] = []
        self.message_received = asyncio.Event()
        self.connections = 0

    # --- what is served ------------------------------------------------------------------------

    @property
    def served(self) -> tuple[Certificate, ...]:
        return self._served

    def set_chain(self, certs: Sequence[Certificate], key: PrivateKeyTypes | bytes) -> None:
        """Serve ``certs`` to connections made from now on; open connections keep their chain."""
        self._ctx = build_server_context(certs, key)
        self._served = tuple(certs)
        if self._server is not None:
            invariants.serve_chain(id(self), self._served)

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("lab SMTP server already started")
        loop = asyncio.get_running_loop()
        listen_ctx: ssl.SSLContext | None = None
        if self.mode == "implicit":
            assert self._ctx is not None
            # The listening socket's context is fixed at create_server; its SNI callback (called for
            # every ClientHello, with or without SNI) switches each new connection to the current chain.
            listen_ctx = self._ctx
            listen_ctx.sni_callback = self._switch_context
        self._server = await loop.create_server(
            self._make_protocol, host=self.host, port=self.port, ssl=listen_ctx
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._announce(True)

    def _switch_context(self, sslobj: ssl.SSLObject, server_name: str | None, ctx: ssl.SSLContext) -> None:
        if self._ctx is not None and sslobj.context is not self._ctx:
            sslobj.context = self._ctx

    def _make_protocol(self) -> SMTP:
        self.connections += 1
        kwargs: dict[str, Any] = {
            "hostname": self.hostname,
            "loop": asyncio.get_running_loop(),
            "timeout": 60,
        }
        if self.mode == "starttls":
            kwargs["tls_context"] = self._ctx
            kwargs["require_starttls"] = True
        if self._username is not None:
            kwargs["authenticator"] = self._authenticate
            kwargs["auth_required"] = True
            # Implicit TLS is TLS from the first byte, but aiosmtpd only counts STARTTLS as TLS.
            kwargs["auth_require_tls"] = self.mode != "implicit"
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
            proto = SMTP(_Handler(self), **kwargs)
        self._sessions.add(proto)
        return proto

    def _authenticate(
        self, server: SMTP, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if mechanism not in ("PLAIN", "LOGIN") or not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        assert self._username is not None
        assert self._password is not None
        ok_user = hmac.compare_digest(auth_data.login, self._username.encode("utf-8"))
        ok_pass = hmac.compare_digest(auth_data.password, self._password.encode("utf-8"))
        if ok_user and ok_pass:
            return AuthResult(success=True, auth_data=auth_data)
        return AuthResult(success=False, handled=False)

    def _record(self, message: ReceivedMessage) -> None:
        self.messages.append(message)
        self.message_received.set()

    async def wait_for_messages(self, count: int = 1, *, timeout: float = 5.0) -> list[ReceivedMessage]:
        """Wait until at least ``count`` messages arrived; raises TimeoutError after ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            while len(self.messages) < count:
                self.message_received.clear()
                await self.message_received.wait()
        return list(self.messages)

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._announce(False)
        server.close()
        for proto in list(self._sessions):
            for transport in (getattr(proto, "_original_transport", None), proto.transport):
                if isinstance(transport, asyncio.Transport):
                    with contextlib.suppress(Exception):
                        transport.abort()
        await server.wait_closed()

    async def __aenter__(self) -> LabSmtpServer:
        await self.start()
        return self

    def _announce(self, serving: bool) -> None:
        """Tell the lab routers' invariant checks what this server sends (router/invariants.py)."""
        if self.mode != "plain":
            invariants.serve_chain(id(self), self._served if serving else None)

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
