"""The EEM `action mail` client of the lab router: SMTP, STARTTLS, the lab's IOS chain check, AUTH, DATA."""

from __future__ import annotations

import _ssl
import asyncio
import base64
import contextlib
import ipaddress
import ssl
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.utils import formatdate, make_msgid

from eemwatchd.core.certificate import Certificate
from eemwatchd_lab.router.faults import MAIL_REFUSED, MAIL_SILENT
from eemwatchd_lab.router.trust import ChainVerdict, validate_chain

# Reasons IOS prints after "<server> : " in %HA_EM-3-FMPD_SMTP.
CONNECT_ERROR = "error in connecting to SMTP server"  # eem_applet_mail_fmpd_smtp_error__gh_iosv.txt
TIMEOUT_ERROR = "timeout error"  # eem_mail_action_debug_fmpd_smtp_timeout__gh_networklessons_ios.txt
# inferred: no capture shows a TLS/certificate failure; the router cannot complete the connection, so the
# connect wording is used. The validator's own reason is kept in MailOutcome.detail (never logged on IOS).
TLS_ERROR = CONNECT_ERROR
# show_logging_PKI-3-CRL_FETCH_FAIL__gh_dnac_switch.txt: two lines, the reason indented 22 spaces.
# The lab never reaches a CRL (no CDP server on loopback); the reason is the captured one for every case
# (inferred for certificates that name a CRL distribution point).
CRL_FETCH_REASON = "Enrollment URL not configured."


def crl_fetch_fail(trustpoint: str) -> str:
    return (f"%PKI-3-CRL_FETCH_FAIL: CRL fetch for trustpoint {trustpoint} failed\n"
            f"{' ' * 22}Reason : {CRL_FETCH_REASON}")


@dataclass(frozen=True)
class MailRequest:
    host: str
    port: int
    user: str | None
    password: str | None
    secure_tls: bool
    sender: str
    to: tuple[str, ...]
    cc: tuple[str, ...]
    subject: str
    body: str
    helo: str


@dataclass(frozen=True)
class MailOutcome:
    """``reason`` is the IOS log wording; ``detail`` says what really happened (for tests and operators)."""

    ok: bool
    reason: str
    detail: str
    validation: ChainVerdict | None = None
    chain: tuple[Certificate, ...] = ()
    pki_log: tuple[str, ...] = ()  # PKI messages the attempt logged before the FMPD lines


class _SmtpFailure(Exception):
    def __init__(
        self, reason: str, detail: str, validation: ChainVerdict | None = None, pki_log: tuple[str, ...] = ()
    ) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.validation = validation
        self.pki_log = pki_log


async def _reply(reader: asyncio.StreamReader) -> tuple[int, list[str]]:
    lines: list[str] = []
    while True:
        raw = await reader.readline()
        if not raw:
            raise _SmtpFailure(CONNECT_ERROR, "server closed the connection")
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if len(line) < 3 or not line[:3].isdigit():
            raise _SmtpFailure(CONNECT_ERROR, f"not an SMTP reply: {line[:80]!r}")
        lines.append(line[4:])
        if len(line) == 3 or line[3] != "-":
            return int(line[:3]), lines


async def _command(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, text: str, expect: int, *, shown: str | None = None
) -> list[str]:
    writer.write(text.encode("utf-8") + b"\r\n")
    await writer.drain()
    code, lines = await _reply(reader)
    if code != expect:
        # inferred: IOS's wording for a refused command is not captured; the server's reply is used.
        what = shown if shown is not None else text
        raise _SmtpFailure(f"{code} {lines[-1] if lines else ''}".strip(), f"{what!r} answered {code} {lines}")
    return lines


def _message(req: MailRequest, now: datetime) -> bytes:
    headers = [
        f"Date: {formatdate(now.timestamp(), localtime=False)}",  # the router's clock, not the host's
        f"Message-ID: {make_msgid(domain=req.helo)}",
        f"From: {req.sender}",
        f"To: {', '.join(req.to)}",
    ]
    if req.cc:
        headers.append(f"Cc: {', '.join(req.cc)}")
    headers.append(f"Subject: {req.subject}")
    body_lines = req.body.replace("\r\n", "\n").split("\n")
    stuffed = ["." + ln if ln.startswith(".") else ln for ln in body_lines]
    return ("\r\n".join([*headers, "", *stuffed]) + "\r\n.\r\n").encode("utf-8")


def _sni(host: str) -> str | None:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return host
    return None


async def _starttls(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    req: MailRequest,
    trustpoints: Callable[[], Mapping[str, Sequence[Certificate]]],
    now: Callable[[], datetime],
    lenient: bool,
    crl_check: Callable[[str], bool] | None,
) -> tuple[ChainVerdict, tuple[Certificate, ...]]:
    await _command(reader, writer, "STARTTLS", 220)
    if reader._buffer:  # type: ignore[attr-defined]  # bytes before the handshake = STARTTLS injection
        raise _SmtpFailure(CONNECT_ERROR, "server sent data between 220 and the TLS handshake")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # we take the raw chain and judge it like IOS below
    try:
        await writer.start_tls(ctx, server_hostname=_sni(req.host))
    except (ssl.SSLError, OSError) as exc:
        raise _SmtpFailure(TLS_ERROR, f"TLS handshake failed: {exc}") from exc
    sslobj = writer.get_extra_info("ssl_object")
    raw = sslobj._sslobj.get_unverified_chain() if sslobj is not None else None  # private on 3.11
    chain = tuple(Certificate(c.public_bytes(_ssl.ENCODING_DER)) for c in (raw or []))
    verdict = validate_chain(chain, trustpoints(), now(), lenient=lenient)
    if not verdict.ok:
        raise _SmtpFailure(TLS_ERROR, f"bad_certificate: {verdict.reason}", verdict)
    anchor = verdict.anchor_trustpoint
    if anchor is not None and crl_check is not None and crl_check(anchor):
        # `revocation-check crl` (the IOS default) on the anchoring trustpoint: IOS fetches a CRL, the lab
        # has none to give, the handshake fails (docs/lab-router.md "Revocation").
        raise _SmtpFailure(
            TLS_ERROR, f"CRL fetch for trustpoint {anchor} failed (revocation-check without none)", verdict,
            pki_log=(crl_fetch_fail(anchor),),
        )
    return verdict, chain


@dataclass
class _State:
    writer: asyncio.StreamWriter | None = None
    validation: ChainVerdict | None = None
    chain: tuple[Certificate, ...] = ()


async def _converse(
    req: MailRequest,
    state: _State,
    trustpoints: Callable[[], Mapping[str, Sequence[Certificate]]],
    now: Callable[[], datetime],
    lenient: bool,
    crl_check: Callable[[str], bool] | None = None,
) -> None:
    """The SMTP dialogue; raises _SmtpFailure with the IOS reason on any refusal."""
    try:
        reader, writer = await asyncio.open_connection(req.host, req.port)
    except OSError as exc:
        raise _SmtpFailure(CONNECT_ERROR, f"connect to {req.host}:{req.port} failed: {exc}") from exc
    state.writer = writer
    code, lines = await _reply(reader)
    if code != 220:
        raise _SmtpFailure(CONNECT_ERROR, f"greeting {code} {lines}")
    ehlo = await _command(reader, writer, f"EHLO {req.helo}", 250)
    if req.secure_tls:
        if not any(e.upper().startswith("STARTTLS") for e in ehlo):
            raise _SmtpFailure(CONNECT_ERROR, "server does not offer STARTTLS")
        state.validation, state.chain = await _starttls(
            reader, writer, req, trustpoints, now, lenient, crl_check
        )
        ehlo = await _command(reader, writer, f"EHLO {req.helo}", 250)
    if req.user is not None:
        await _login(reader, writer, req, ehlo)
    await _command(reader, writer, f"MAIL FROM:<{req.sender}>", 250)
    for rcpt in (*req.to, *req.cc):
        await _command(reader, writer, f"RCPT TO:<{rcpt}>", 250)
    await _command(reader, writer, "DATA", 354)
    writer.write(_message(req, now()))
    await writer.drain()
    code, lines = await _reply(reader)
    if code != 250:
        raise _SmtpFailure(f"{code} {lines[-1] if lines else ''}".strip(), f"DATA refused: {code} {lines}")
    with contextlib.suppress(Exception):
        writer.write(b"QUIT\r\n")
        await writer.drain()


async def send_mail(
    req: MailRequest,
    *,
    trustpoints: Callable[[], Mapping[str, Sequence[Certificate]]],
    now: Callable[[], datetime],
    lenient: bool = False,
    timeout: float = 20.0,
    crl_check: Callable[[str], bool] | None = None,
    fault: str | None = None,
    delay: float = 0.0,
) -> MailOutcome:
    """Deliver one mail like IOS's smtp_lib; never raises, never puts the password in a reason.

    ``crl_check(trustpoint)`` says whether that trustpoint checks revocation by CRL (no `none`). ``fault`` and
    ``delay`` are the device's Faults.mail and Faults.mail_delay: the server refuses the connection, never
    answers, or greets late.
    """
    state = _State()
    try:
        async with asyncio.timeout(timeout):
            await _server_faults(req, fault, delay)
            await _converse(req, state, trustpoints, now, lenient, crl_check)
    except TimeoutError:
        return MailOutcome(False, TIMEOUT_ERROR, f"no answer within {timeout:.1f} s", state.validation, state.chain)
    except _SmtpFailure as failure:
        return MailOutcome(
            False, failure.reason, failure.detail, failure.validation or state.validation, state.chain,
            failure.pki_log,
        )
    except (OSError, ssl.SSLError, UnicodeError) as exc:
        return MailOutcome(False, CONNECT_ERROR, f"{type(exc).__name__}: {exc}", state.validation, state.chain)
    finally:
        if state.writer is not None:
            # Not awaiting wait_closed after TLS: it can hang ~30 s (docs/field-notes.md sec. 3).
            with contextlib.suppress(Exception):
                state.writer.transport.abort()
    return MailOutcome(True, "", "delivered", state.validation, state.chain)


async def _server_faults(req: MailRequest, fault: str | None, delay: float) -> None:
    """What the device's mail faults make of the server: a late greeting, a refused or a silent connection."""
    if delay > 0:
        await asyncio.sleep(delay)
    if fault == MAIL_REFUSED:
        raise _SmtpFailure(CONNECT_ERROR, f"connect to {req.host}:{req.port} failed: connection refused (Faults.mail)")
    if fault == MAIL_SILENT:
        await asyncio.Event().wait()  # connected, and the server never says a word: the caller's timeout ends it


async def _login(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, req: MailRequest, ehlo: list[str]
) -> None:
    assert req.user is not None
    password = req.password or ""
    mechanisms = {m.upper() for line in ehlo if line.upper().startswith("AUTH") for m in line.split()[1:]}
    if "LOGIN" in mechanisms or "PLAIN" not in mechanisms:
        await _command(reader, writer, "AUTH LOGIN", 334)
        await _command(reader, writer, base64.b64encode(req.user.encode()).decode(), 334, shown="<user>")
        await _command(
            reader, writer, base64.b64encode(password.encode()).decode(), 235, shown="<password>"
        )
    else:
        token = base64.b64encode(b"\0" + req.user.encode() + b"\0" + password.encode()).decode()
        await _command(reader, writer, f"AUTH PLAIN {token}", 235, shown="AUTH PLAIN <credentials>")
