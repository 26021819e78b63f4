"""Alerts: what happened (chain changed or unverified, router drift, refresh result, expiry) to log, webhook, e-mail.

Every sink receives the alerts of one run as one batch (one log line per alert, one POST, one e-mail), so a
sink that is down costs one timeout per run, not one per alert. Before anything leaves, alerts are
de-duplicated and scrubbed of every known secret (and of any ``user:password@host``), so a router's
error text or a test-fire transcript cannot carry a password out.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import smtplib
import socket
import ssl
import urllib.parse
from collections.abc import Collection, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any, Literal, Protocol, get_args

from eemwatchd.config import AlertConfig, Secret
from eemwatchd.core.secrets import scrub_text
from eemwatchd.errors import AlertError

log = logging.getLogger("eemwatchd.alerts")

AlertEvent = Literal[
    "chain_changed", "chain_unverified", "router_drift", "refresh_failed", "refresh_succeeded", "expiry", "state_store"
]
EVENTS: tuple[AlertEvent, ...] = get_args(AlertEvent)
# Events a person must look at; the others (a change we expected, a refresh that worked) are news.
# state_store: the daemon's state store cannot be written (a full, read-only or frozen disk); sent once when it
# starts and once resolved (the daemon keeps that condition in memory: the store is what fails).
BAD_EVENTS: frozenset[str] = frozenset({"chain_unverified", "router_drift", "refresh_failed", "expiry", "state_store"})

_EXCERPT = 200


@dataclass(frozen=True)
class Alert:
    """One alert. ``details`` holds plain facts (fingerprints, addresses, trustpoints, reasons), JSON-ready."""

    event: AlertEvent
    subject: str  # a server or router name
    summary: str  # one line
    details: Mapping[str, Any]
    at: datetime
    state: str = "firing"  # firing | reminder | resolved (conditions); firing for one-off events

    @property
    def key(self) -> tuple[str, str, str]:
        """Alerts with the same key say the same thing; one of them is enough per run."""
        return (self.event, self.subject, self.summary)

    @property
    def is_bad(self) -> bool:
        return self.event in BAD_EVENTS and self.state != "resolved"

    def to_json(self) -> dict[str, Any]:
        return {
            "event": self.event,
            "state": self.state,
            "subject": self.subject,
            "summary": self.summary,
            "details": _plain(self.details),
            "at": self.at.isoformat(),
        }


def _plain(value: Any) -> Any:
    """JSON-ready copy: mappings and sequences kept, datetimes as ISO text, anything else as text."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _scrub_value(value: Any, secrets: Collection[str]) -> Any:
    if isinstance(value, str):
        return scrub_text(value, secrets)
    if isinstance(value, Mapping):
        return {str(k): _scrub_value(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_scrub_value(v, secrets) for v in value]
    return _plain(value)


def scrub_alert(alert: Alert, secrets: Collection[str]) -> Alert:
    return replace(
        alert,
        subject=scrub_text(alert.subject, secrets),
        summary=" ".join(scrub_text(alert.summary, secrets).split()),  # one line, whatever came in
        details=_scrub_value(alert.details, secrets),
    )


# --- sinks ---------------------------------------------------------------------------------------------


class AlertSink(Protocol):
    """Delivers a batch of alerts or raises AlertError. ``name`` is safe to show (no secrets, no URL path)."""

    @property
    def name(self) -> str: ...

    async def send(self, alerts: Sequence[Alert]) -> None: ...


class LogSink:
    """Python logging on ``eemwatchd.alerts``: WARNING for bad events, INFO for the others."""

    name = "log"

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._log = logger or log

    async def send(self, alerts: Sequence[Alert]) -> None:
        for alert in alerts:
            level = logging.WARNING if alert.is_bad else logging.INFO
            self._log.log(level, "ALERT %s %s: %s", alert.event, alert.subject, alert.summary)
            # The facts (fingerprints, every action with its reason) make long lines: on request only.
            if self._log.isEnabledFor(logging.DEBUG):
                facts = json.dumps(_plain(alert.details), sort_keys=True, separators=(",", ":"))
                self._log.debug("ALERT %s %s details: %s", alert.event, alert.subject, facts)


def _safe_endpoint(url: str) -> str:
    """scheme://host:port only: webhook paths and queries often carry a token."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}"


class WebhookSink:
    """HTTP(S) POST of ``{"source": "eemwatchd", "alerts": [...]}``; any non-2xx answer is an AlertError.

    aiohttp on the event loop, with ``timeout`` for the WHOLE request (connect, send, answer): a webhook that
    answers one byte every few seconds is cut off at the deadline. (urllib in a thread bounded each read only: such
    a webhook held its thread for ever, and a handful of them filled the pool that DNS lookups share.)
    """

    def __init__(self, url: str, *, timeout: float = 10.0, ssl_context: ssl.SSLContext | None = None) -> None:
        scheme = urllib.parse.urlsplit(url).scheme
        if scheme not in ("http", "https"):
            raise ValueError("a webhook url must start with http:// or https://")
        self._url = url
        self._timeout = timeout
        self._ctx = ssl_context
        self.name = f"webhook {_safe_endpoint(url)}"

    async def send(self, alerts: Sequence[Alert]) -> None:
        import aiohttp  # only where a webhook is configured: the CLI's start-up stays light

        body = json.dumps({"source": "eemwatchd", "alerts": [a.to_json() for a in alerts]}).encode("utf-8")
        headers = {"Content-Type": "application/json", "User-Agent": "eemwatchd"}
        try:
            async with asyncio.timeout(self._timeout), aiohttp.ClientSession() as session, session.post(
                    self._url, data=body, headers=headers, ssl=self._ctx if self._ctx is not None else True,
                    allow_redirects=False) as response:
                status = response.status
                excerpt = await response.content.read(_EXCERPT)
        except TimeoutError as exc:
            raise AlertError(f"{self.name}: no answer within {self._timeout:g} s") from exc
        except aiohttp.ClientSSLError as exc:
            raise AlertError(f"{self.name}: TLS: {_tls_reason(exc)}") from exc
        except (aiohttp.ClientError, OSError) as exc:
            # never str(exc) of a response error: it carries the URL, whose path and query may be a token
            reason = getattr(exc, "strerror", None) or getattr(exc, "os_error", None) or type(exc).__name__
            raise AlertError(f"{self.name}: {' '.join(str(reason).split())[:_EXCERPT]}") from exc
        if not 200 <= status < 300:
            text = " ".join(excerpt.decode("utf-8", "replace").split())[:_EXCERPT]
            raise AlertError(f"{self.name}: HTTP {status}: {text or '(empty body)'}")


def _tls_reason(exc: BaseException) -> str:
    inner = getattr(exc, "certificate_error", None) or getattr(exc, "os_error", None) or exc
    return " ".join(str(inner).split())[:_EXCERPT]


# Mail goes out through smtplib (blocking) on threads of its own: a slow mail server never takes a thread that DNS
# lookups or anything else needs. Two, because alerts are rare and batched per run.
_MAIL_THREADS = ThreadPoolExecutor(max_workers=2, thread_name_prefix="eemwatchd-mail")


class EmailSink:
    """One e-mail per batch through smtplib (in a thread): STARTTLS when offered, login only over TLS."""

    def __init__(
        self,
        *,
        host: str,
        port: int = 587,
        mail_from: str,
        mail_to: Sequence[str],
        username: str | None = None,
        password: Secret | None = None,
        timeout: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._host = host
        self._port = port
        self._from = mail_from
        self._to = tuple(mail_to)
        self._username = username
        self._password = password
        self._timeout = timeout
        self._ctx = ssl_context or ssl.create_default_context()
        self.name = f"email {host}:{port}"

    def compose(self, alerts: Sequence[Alert]) -> EmailMessage:
        message = EmailMessage()
        bad = sum(1 for a in alerts if a.is_bad)
        first = alerts[0]
        more = f" (+{len(alerts) - 1} more)" if len(alerts) > 1 else ""
        subject = f"[eemwatchd] {first.event} {first.subject}: {first.summary}{more}"
        message["Subject"] = " ".join(subject.split())[:200]
        message["From"] = self._from
        message["To"] = ", ".join(self._to)
        message["Date"] = formatdate(localtime=False)
        message["Message-ID"] = make_msgid(domain="eemwatchd")
        lines = [f"{len(alerts)} alert(s), {bad} needing attention.", ""]
        for alert in alerts:
            lines.append(f"{alert.event} {alert.subject}: {alert.summary}")
            lines.append(f"  at: {alert.at.isoformat()}")
            for key, value in _plain(alert.details).items():
                lines.append(f"  {key}: {json.dumps(value)}")
            lines.append("")
        message.set_content("\n".join(lines))
        return message

    async def send(self, alerts: Sequence[Alert]) -> None:
        """One e-mail; the whole dialogue within 4 x ``timeout`` (then its socket is shut down, which ends the
        thread's blocking read: a trickling server cannot keep the thread)."""
        message = self.compose(alerts)
        held: list[socket.socket] = []
        future = asyncio.get_running_loop().run_in_executor(_MAIL_THREADS, self._deliver, message, held)
        try:
            await asyncio.wait_for(asyncio.shield(future), timeout=self._timeout * 4 + 1)
        except TimeoutError as exc:
            for sock in held:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            raise AlertError(f"{self.name}: no answer within {self._timeout:g} s") from exc

    def _deliver(self, message: EmailMessage, held: list[socket.socket]) -> None:
        try:
            if self._port == 465:
                client: smtplib.SMTP = _HeldSMTPSSL(held, host=self._host, port=self._port, timeout=self._timeout,
                                                    context=self._ctx)
                tls = True
            else:
                client = _HeldSMTP(held, host=self._host, port=self._port, timeout=self._timeout)
                tls = False
            with client:
                client.ehlo()
                if not tls and client.has_extn("starttls"):
                    client.starttls(context=self._ctx)
                    if client.sock is not None:
                        held.append(client.sock)
                    client.ehlo()
                    tls = True
                if self._username is not None:
                    if not tls:
                        raise AlertError(f"{self.name}: the server offers no STARTTLS; not sending the "
                                         "password in clear")
                    password = self._password.reveal() if self._password is not None else ""
                    client.login(self._username, password)
                client.send_message(message, from_addr=self._from, to_addrs=list(self._to))
        except smtplib.SMTPResponseException as exc:
            text = exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) else str(
                exc.smtp_error)
            raise AlertError(f"{self.name}: {exc.smtp_code} {' '.join(text.split())[:_EXCERPT]}") from exc
        except TimeoutError as exc:
            raise AlertError(f"{self.name}: no answer within {self._timeout:g} s") from exc
        except (smtplib.SMTPException, ssl.SSLError, OSError) as exc:
            raise AlertError(f"{self.name}: {' '.join(str(exc).split())[:_EXCERPT] or type(exc).__name__}") from exc


class _HandsOutSocket:
    """A mixin for smtplib's clients: the socket is handed out as soon as it exists (before the greeting is read),
    so a deadline can shut it down. ``_get_socket`` is smtplib's own hook for making the connection."""

    _held: list[socket.socket]

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        sock: socket.socket = super()._get_socket(host, port, timeout)  # type: ignore[misc]
        self._held.append(sock)
        return sock


class _HeldSMTP(_HandsOutSocket, smtplib.SMTP):
    def __init__(self, held: list[socket.socket], **kwargs: Any) -> None:
        self._held = held
        super().__init__(**kwargs)


class _HeldSMTPSSL(_HandsOutSocket, smtplib.SMTP_SSL):
    def __init__(self, held: list[socket.socket], **kwargs: Any) -> None:
        self._held = held
        super().__init__(**kwargs)


# --- routing -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    sink: AlertSink
    events: frozenset[str]


def sink_from_config(alert: AlertConfig, *, ssl_context: ssl.SSLContext | None = None) -> AlertSink:
    if alert.kind == "webhook":
        assert alert.url is not None  # the config checks it
        return WebhookSink(alert.url, timeout=alert.timeout, ssl_context=ssl_context)
    if alert.kind == "email":
        assert alert.smtp_host is not None
        assert alert.mail_from is not None
        return EmailSink(
            host=alert.smtp_host,
            port=alert.smtp_port,
            mail_from=alert.mail_from,
            mail_to=alert.mail_to,
            username=alert.username,
            password=alert.password,
            timeout=alert.timeout,
            ssl_context=ssl_context,
        )
    return LogSink()


class Alerter:
    """Routes each alert to the sinks whose events include it. A failing sink never stops the others."""

    def __init__(self, routes: Iterable[Route] = (), *, secrets: Iterable[str] = ()) -> None:
        self.routes = tuple(routes)
        self._secrets = frozenset(s for s in secrets if s)

    @classmethod
    def from_config(
        cls,
        alerts: Sequence[AlertConfig],
        *,
        secrets: Iterable[str] = (),
        ssl_context: ssl.SSLContext | None = None,
    ) -> Alerter:
        routes = [Route(sink_from_config(a, ssl_context=ssl_context), frozenset(a.events)) for a in alerts]
        own = [a.password.reveal() for a in alerts if a.password is not None]
        return cls(routes, secrets=[*secrets, *own])

    def prepare(self, alerts: Iterable[Alert], *, secrets: Iterable[str] = ()) -> list[Alert]:
        """The alerts as they will leave: scrubbed of secrets, each key once, first occurrence kept."""
        known = self._secrets | {s for s in secrets if s}
        out: dict[tuple[str, str, str], Alert] = {}
        for alert in alerts:
            clean = scrub_alert(alert, known)
            out.setdefault(clean.key, clean)
        return list(out.values())

    def batches(self, alerts: Iterable[Alert], *, secrets: Iterable[str] = ()) -> list[tuple[AlertSink, list[Alert]]]:
        """The alerts prepared (``prepare``) and split by sink: one batch per sink with something to say."""
        ready = self.prepare(alerts, secrets=secrets)
        batches = [(r.sink, [a for a in ready if a.event in r.events]) for r in self.routes]
        return [(sink, batch) for sink, batch in batches if batch]

    async def deliver(self, sink: AlertSink, batch: Sequence[Alert], *,
                      secrets: Iterable[str] = ()) -> AlertError | None:
        """One batch to one sink; its failure as an AlertError scrubbed of secrets (and logged), never raised."""
        error = await _deliver(sink, batch)
        if error is None:
            return None
        clean = AlertError(scrub_text(str(error), self._secrets | {s for s in secrets if s}))
        log.warning("alert not delivered: %s", clean)
        return clean

    async def send(self, alerts: Iterable[Alert], *, secrets: Iterable[str] = ()) -> list[AlertError]:
        """Deliver; returns (and logs) one AlertError per failed sink. Never raises for a sink's failure."""
        extra = frozenset(s for s in secrets if s)
        batches = self.batches(alerts, secrets=extra)
        results = await asyncio.gather(*(self.deliver(sink, batch, secrets=extra) for sink, batch in batches))
        return [error for error in results if error is not None]


def sink_kind(sink: AlertSink) -> str:
    """``log``, ``webhook``, ``email`` or ``other``: a label value with no address in it."""
    return {LogSink: "log", WebhookSink: "webhook", EmailSink: "email"}.get(type(sink), "other")


async def _deliver(sink: AlertSink, alerts: Sequence[Alert]) -> AlertError | None:
    try:
        await sink.send(alerts)
    except AlertError as exc:
        return exc
    except Exception as exc:  # a sink's bug must not stop the run or the other sinks
        return AlertError(f"{getattr(sink, 'name', type(sink).__name__)}: unexpected error {exc!r}")
    return None
