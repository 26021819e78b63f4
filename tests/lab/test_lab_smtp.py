"""The lab SMTP server: STARTTLS and implicit TLS serve the chain exactly as given; AUTH; rotation."""

from __future__ import annotations

import _ssl
import asyncio
import smtplib
import ssl
from email.message import EmailMessage

import pytest

from eemwatchd.core.certificate import Certificate
from eemwatchd_lab.pki import GmailShapedPki
from eemwatchd_lab.smtp import LabSmtpServer


def _client_ctx() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _served_chain(sock: ssl.SSLSocket) -> list[Certificate]:
    raw = sock._sslobj.get_unverified_chain()  # type: ignore[attr-defined]
    return [Certificate(c.public_bytes(_ssl.ENCODING_DER)) for c in raw]


def _message(sender: str = "router@lab.example") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = "admin@lab.example"
    msg["Subject"] = "EEM test"
    msg.set_content("hello from the applet")
    return msg


def _starttls_session(port: int, *, login: tuple[str, str] | None) -> list[Certificate]:
    with smtplib.SMTP("127.0.0.1", port, timeout=5) as client:
        client.ehlo("router.lab.example")
        assert client.has_extn("starttls")
        client.starttls(context=_client_ctx())
        chain = _served_chain(client.sock)  # type: ignore[arg-type]
        client.ehlo("router.lab.example")
        if login:
            client.login(*login)
        client.send_message(_message())
    return chain


def _implicit_session(port: int, *, login: tuple[str, str] | None) -> list[Certificate]:
    with smtplib.SMTP_SSL("127.0.0.1", port, timeout=5, context=_client_ctx()) as client:
        chain = _served_chain(client.sock)  # type: ignore[arg-type]
        client.ehlo("router.lab.example")
        if login:
            client.login(*login)
        client.send_message(_message())
    return chain


@pytest.mark.parametrize("mode", ["starttls", "implicit"])
async def test_serves_chain_and_records_authenticated_message(pki: GmailShapedPki, mode: str) -> None:
    session = _starttls_session if mode == "starttls" else _implicit_session
    async with LabSmtpServer(
        mode=mode,  # type: ignore[arg-type]
        certs=pki.served,
        key=pki.leaf.key,
        username="router@lab.example",
        password="app-password",
    ) as srv:
        assert srv.host == "127.0.0.1"
        assert srv.port > 0
        chain = await asyncio.to_thread(session, srv.port, login=("router@lab.example", "app-password"))
        messages = await srv.wait_for_messages(1, timeout=5)
    assert chain == pki.served
    assert len(messages) == 1
    assert messages[0].login == "router@lab.example"
    assert messages[0].rcpt_tos == ("admin@lab.example",)
    assert messages[0].tls is True
    assert b"hello from the applet" in messages[0].data


@pytest.mark.parametrize("mode", ["starttls", "implicit"])
async def test_wrong_password_is_refused(pki: GmailShapedPki, mode: str) -> None:
    session = _starttls_session if mode == "starttls" else _implicit_session
    async with LabSmtpServer(
        mode=mode, certs=pki.served, key=pki.leaf.key,  # type: ignore[arg-type]
        username="router@lab.example", password="app-password",
    ) as srv:
        with pytest.raises(smtplib.SMTPAuthenticationError):
            await asyncio.to_thread(session, srv.port, login=("router@lab.example", "wrong"))
        assert srv.messages == []


async def test_auth_required_when_configured(pki: GmailShapedPki) -> None:
    async with LabSmtpServer(
        mode="starttls", certs=pki.served, key=pki.leaf.key, username="u", password="p"
    ) as srv:
        with pytest.raises(smtplib.SMTPSenderRefused):
            await asyncio.to_thread(_starttls_session, srv.port, login=None)


async def test_starttls_required_before_mail(pki: GmailShapedPki) -> None:
    def plain_mail(port: int) -> None:
        with smtplib.SMTP("127.0.0.1", port, timeout=5) as client:
            client.ehlo("router.lab.example")
            client.send_message(_message())

    async with LabSmtpServer(mode="starttls", certs=pki.served, key=pki.leaf.key) as srv:
        with pytest.raises(smtplib.SMTPSenderRefused):
            await asyncio.to_thread(plain_mail, srv.port)


@pytest.mark.parametrize("mode", ["starttls", "implicit"])
async def test_duplicates_and_order_are_served_as_given(pki: GmailShapedPki, mode: str) -> None:
    odd = [pki.leaf.cert, pki.new_root_cross, pki.intermediate.cert, pki.intermediate.cert]
    session = _starttls_session if mode == "starttls" else _implicit_session
    async with LabSmtpServer(mode=mode, certs=odd, key=pki.leaf.key) as srv:  # type: ignore[arg-type]
        chain = await asyncio.to_thread(session, srv.port, login=None)
    assert chain == odd


@pytest.mark.parametrize("mode", ["starttls", "implicit"])
async def test_set_chain_rotates_for_new_connections(pki: GmailShapedPki, mode: str) -> None:
    session = _starttls_session if mode == "starttls" else _implicit_session
    async with LabSmtpServer(mode=mode, certs=pki.served, key=pki.leaf.key) as srv:  # type: ignore[arg-type]
        first = await asyncio.to_thread(session, srv.port, login=None)
        pki.rotate_intermediate("Lab WR2")
        srv.set_chain(pki.served, pki.leaf.key)
        second = await asyncio.to_thread(session, srv.port, login=None)
        assert srv.served == tuple(pki.served)
    assert first != second
    assert second == pki.served
    assert second[1].common_name == "Lab WR2"


async def test_plain_mode_offers_no_starttls() -> None:
    def ehlo(port: int) -> bool:
        with smtplib.SMTP("127.0.0.1", port, timeout=5) as client:
            client.ehlo("router.lab.example")
            return bool(client.has_extn("starttls"))

    async with LabSmtpServer(mode="plain") as srv:
        assert await asyncio.to_thread(ehlo, srv.port) is False


def test_bad_arguments_are_refused(pki: GmailShapedPki) -> None:
    with pytest.raises(ValueError, match="needs a certificate chain"):
        LabSmtpServer(mode="starttls")
    with pytest.raises(ValueError, match="both username and password"):
        LabSmtpServer(mode="starttls", certs=pki.served, key=pki.leaf.key, username="u")
