"""Alerts: a real webhook receiver and a real SMTP server on 127.0.0.1, routing, de-duplication, failures,
secrets kept out; the store remembering the last verified chain."""

from __future__ import annotations

import email
import email.policy
import json
import logging
import ssl
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from eemwatchd.adapters.alerts import (
    EVENTS,
    Alert,
    Alerter,
    EmailSink,
    LogSink,
    Route,
    WebhookSink,
    scrub_text,
)
from eemwatchd.adapters.store import Store
from eemwatchd.config import AlertConfig, Secret
from eemwatchd.errors import AlertError
from eemwatchd_lab.pki import GmailShapedPki
from eemwatchd_lab.smtp import LabSmtpServer, build_server_context
from tests.support.alert_sinks import ALERT_PASSWORD, RecordingSink, assert_no_secrets
from tests.support.reconcile_lab import ROUTER_PASSWORD, SMTP_PASSWORD
from tests.support.webhook import Receiver, serve_webhook

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def alert(event: Any = "chain_changed", subject: str = "gmail", summary: str = "s", **details: Any) -> Alert:
    return Alert(event=event, subject=subject, summary=summary, details=details, at=NOW)


class FailingSink:
    def __init__(self, name: str, exc: Exception) -> None:
        self.name = name
        self._exc = exc

    async def send(self, alerts: Sequence[Alert]) -> None:
        raise self._exc


# --- a real webhook receiver ---------------------------------------------------------------------------


@pytest.mark.timeout(10)
async def test_webhook_posts_one_json_document(webhook_receiver: Receiver) -> None:
    sink = WebhookSink(webhook_receiver.url, timeout=3)
    sent = [alert(address="127.0.0.1", chain_sha256=["ab" * 32]), alert("expiry", "r1", "soon")]
    await sink.send(sent)
    [body] = webhook_receiver.bodies
    assert body["source"] == "eemwatchd"
    assert body["alerts"][0] == {
        "event": "chain_changed",
        "state": "firing",
        "subject": "gmail",
        "summary": "s",
        "details": {"address": "127.0.0.1", "chain_sha256": ["ab" * 32]},
        "at": NOW.isoformat(),
    }
    assert [a["event"] for a in body["alerts"]] == ["chain_changed", "expiry"]
    assert webhook_receiver.headers[0]["Content-Type"] == "application/json"


@pytest.mark.timeout(10)
async def test_webhook_non_2xx_is_an_alert_error_with_status_and_excerpt(webhook_receiver: Receiver) -> None:
    webhook_receiver.status, webhook_receiver.answer = 500, b"internal\nboom " + b"x" * 1000
    with pytest.raises(AlertError) as caught:
        await WebhookSink(webhook_receiver.url, timeout=3).send([alert()])
    text = str(caught.value)
    assert "HTTP 500: internal boom xxx" in text
    assert len(text) < 300
    assert "secret-token-path" not in text and "key=abc" not in text  # the URL's path may be a token


@pytest.mark.timeout(10)
async def test_webhook_timeout_is_bounded(webhook_receiver: Receiver) -> None:
    webhook_receiver.delay = 5.0
    started = datetime.now(UTC)
    with pytest.raises(AlertError, match=r"no answer within 0\.5 s"):
        await WebhookSink(webhook_receiver.url, timeout=0.5).send([alert()])
    assert datetime.now(UTC) - started < timedelta(seconds=3)


@pytest.mark.timeout(10)
async def test_webhook_refused_connection_is_an_alert_error() -> None:
    with pytest.raises(AlertError, match=r"webhook http://127.0.0.1:9: "):
        await WebhookSink("http://127.0.0.1:9/x", timeout=2).send([alert()])


@pytest.mark.timeout(10)
async def test_webhook_over_https_checks_the_certificate() -> None:
    pki = GmailShapedPki.create()
    with serve_webhook(build_server_context(pki.served, pki.leaf.key)) as state:
        await WebhookSink(state.url, timeout=3, ssl_context=client_context(pki)).send([alert()])
        assert [b["alerts"][0]["event"] for b in state.bodies] == ["chain_changed"]
        with pytest.raises(AlertError, match="CERTIFICATE_VERIFY_FAILED"):
            await WebhookSink(state.url, timeout=3, ssl_context=client_context(GmailShapedPki.create())).send([alert()])


def test_webhook_needs_http_or_https() -> None:
    with pytest.raises(ValueError, match="http"):
        WebhookSink("file:///etc/passwd")


# --- a real SMTP server ------------------------------------------------------------------------------


def client_context(pki: GmailShapedPki) -> ssl.SSLContext:
    return ssl.create_default_context(cadata="".join(c.pem for c in pki.anchors))


def email_sink(port: int, pki: GmailShapedPki, *, password: str = ALERT_PASSWORD, user: str = "alerts") -> EmailSink:
    return EmailSink(
        host="127.0.0.1",
        port=port,
        mail_from="eemwatchd@lab.example",
        mail_to=["ops@lab.example", "noc@lab.example"],
        username=user,
        password=Secret(password, origin="inline"),
        timeout=3,
        ssl_context=client_context(pki),
    )


@pytest.mark.timeout(10)
async def test_email_over_starttls_with_auth(wall_clock_pki: GmailShapedPki) -> None:
    async with LabSmtpServer(
        mode="starttls", certs=wall_clock_pki.served, key=wall_clock_pki.leaf.key, username="alerts",
        password=ALERT_PASSWORD,
    ) as smtp:
        await email_sink(smtp.port, wall_clock_pki).send(
            [alert("chain_unverified", "gmail", "SECURITY: untrusted chain", reason="unknown issuer"), alert()]
        )
        [message] = await smtp.wait_for_messages(1, timeout=5)
    assert message.tls and message.login == "alerts"
    assert message.rcpt_tos == ("ops@lab.example", "noc@lab.example")
    text = message.data.decode()
    parsed = email.message_from_bytes(message.data, policy=email.policy.default)
    assert parsed["Subject"].strip() == "[eemwatchd] chain_unverified gmail: SECURITY: untrusted chain (+1 more)"
    assert 'reason: "unknown issuer"' in text
    assert_no_secrets(text)


@pytest.mark.timeout(10)
async def test_email_wrong_password_is_an_alert_error_without_the_password(wall_clock_pki: GmailShapedPki) -> None:
    async with LabSmtpServer(
        mode="starttls", certs=wall_clock_pki.served, key=wall_clock_pki.leaf.key, username="alerts",
        password="other-pw",
    ) as smtp:
        with pytest.raises(AlertError, match=r"email 127.0.0.1:\d+: 535") as caught:
            await email_sink(smtp.port, wall_clock_pki).send([alert()])
    assert_no_secrets(str(caught.value))


@pytest.mark.timeout(10)
async def test_email_never_sends_the_password_without_tls(wall_clock_pki: GmailShapedPki) -> None:
    async with LabSmtpServer(mode="plain") as smtp:
        with pytest.raises(AlertError, match="offers no STARTTLS; not sending the password"):
            await email_sink(smtp.port, wall_clock_pki).send([alert()])
        assert smtp.messages == []


@pytest.mark.timeout(10)
async def test_email_untrusted_server_certificate_is_an_alert_error(wall_clock_pki: GmailShapedPki) -> None:
    other = GmailShapedPki.create(prefix="Other")
    async with LabSmtpServer(mode="starttls", certs=other.served, key=other.leaf.key) as smtp:
        with pytest.raises(AlertError, match="CERTIFICATE_VERIFY_FAILED"):
            await email_sink(smtp.port, wall_clock_pki).send([alert()])


# --- routing, de-duplication, failures, secrets -----------------------------------------------------------


async def test_routes_by_event_and_deduplicates() -> None:
    chains, everything = RecordingSink("chains"), RecordingSink("all")
    alerter = Alerter(
        [Route(chains, frozenset({"chain_changed", "chain_unverified"})), Route(everything, frozenset(EVENTS))]
    )
    errors = await alerter.send([alert(), alert("expiry", "r1", "soon"), alert(), alert("router_drift", "r1", "d")])
    assert errors == []
    assert [a.event for a in chains.alerts] == ["chain_changed"]
    assert [a.event for a in everything.alerts] == ["chain_changed", "expiry", "router_drift"]
    assert len(everything.batches) == 1  # one batch per sink per run


async def test_a_sink_with_nothing_to_say_is_not_called() -> None:
    quiet = RecordingSink()
    await Alerter([Route(quiet, frozenset({"expiry"}))]).send([alert()])
    assert quiet.batches == []


async def test_a_failing_sink_never_stops_the_others(caplog: pytest.LogCaptureFixture) -> None:
    good = RecordingSink()
    alerter = Alerter(
        [
            Route(FailingSink("webhook http://x", AlertError("webhook http://x: HTTP 503: busy")), frozenset(EVENTS)),
            Route(FailingSink("buggy", RuntimeError("oops")), frozenset(EVENTS)),
            Route(good, frozenset(EVENTS)),
        ]
    )
    with caplog.at_level(logging.WARNING, logger="eemwatchd.alerts"):
        errors = await alerter.send([alert()])
    assert [str(e) for e in errors] == [
        "webhook http://x: HTTP 503: busy",
        "buggy: unexpected error RuntimeError('oops')",
    ]
    assert all(isinstance(e, AlertError) for e in errors)
    assert len(good.alerts) == 1
    lines = [r.getMessage() for r in caplog.records]
    assert "alert not delivered: webhook http://x: HTTP 503: busy" in lines
    assert all("\n" not in line for line in lines)


async def test_secrets_are_scrubbed_from_alerts_and_errors() -> None:
    sink = RecordingSink()
    alerter = Alerter(
        [
            Route(sink, frozenset(EVENTS)),
            Route(FailingSink("f", AlertError(f"f: echo {ALERT_PASSWORD}")), frozenset(EVENTS)),
        ],
        secrets=[ALERT_PASSWORD],
    )
    leaky = alert(
        "refresh_failed",
        "r1",
        f"login with {ROUTER_PASSWORD} failed\nsecond line",
        error=f"mail server alerts:{SMTP_PASSWORD}@127.0.0.1 said no",
        steps=[{"detail": ALERT_PASSWORD}],
    )
    errors = await alerter.send([leaky], secrets=[ROUTER_PASSWORD])
    [sent] = sink.alerts
    assert_no_secrets(json.dumps(sent.to_json()))
    assert_no_secrets(str(errors))
    assert sent.summary == "login with **** failed second line"
    assert sent.details["error"] == "mail server alerts:****@127.0.0.1 said no"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("user:pw@host", "user:****@host", id="credentials"),
        pytest.param("no secrets here", "no secrets here", id="plain"),
        pytest.param("a@b.example", "a@b.example", id="mail-address"),
        pytest.param(f"x {ALERT_PASSWORD} y", "x **** y", id="known-secret"),
    ],
)
def test_scrub_text(text: str, expected: str) -> None:
    assert scrub_text(text, [ALERT_PASSWORD]) == expected


async def test_log_sink_levels(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="eemwatchd.alerts"):
        await LogSink().send(
            [alert("chain_unverified", "gmail", "bad", reason="x"), alert("refresh_succeeded", "r1", "ok")]
        )
    levels = [(r.levelno, r.name, r.getMessage()) for r in caplog.records]
    assert levels == [
        (logging.WARNING, "eemwatchd.alerts", "ALERT chain_unverified gmail: bad"),
        (logging.INFO, "eemwatchd.alerts", "ALERT refresh_succeeded r1: ok"),
    ]
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="eemwatchd.alerts"):  # the facts, on request
        await LogSink().send([alert("chain_unverified", "gmail", "bad", reason="x")])
    assert [r.getMessage() for r in caplog.records] == [
        "ALERT chain_unverified gmail: bad",
        'ALERT chain_unverified gmail details: {"reason":"x"}',
    ]


def test_alerter_from_config_builds_each_kind() -> None:
    alerter = Alerter.from_config(
        [
            AlertConfig(kind="log"),
            AlertConfig(kind="webhook", url="https://hooks.example/T0/secret", events=("expiry",)),
            AlertConfig(
                kind="email",
                smtp_host="mx.example",
                mail_from="a@example",
                mail_to=("b@example",),
                username="u",
                password=Secret(ALERT_PASSWORD, origin="inline"),
            ),
        ]
    )
    assert [(type(r.sink).__name__, r.sink.name) for r in alerter.routes] == [
        ("LogSink", "log"),
        ("WebhookSink", "webhook https://hooks.example"),
        ("EmailSink", "email mx.example:587"),
    ]
    assert alerter.routes[1].events == {"expiry"}
    assert "refresh_succeeded" not in alerter.routes[0].events  # not in the default events
    assert alerter.prepare([alert(summary=ALERT_PASSWORD)])[0].summary == "****"  # its own password is known


# --- the store remembers the last verified chain ----------------------------------------------------------


def test_store_last_verified(tmp_path: Path) -> None:
    pki = GmailShapedPki.create(now=NOW - timedelta(days=5))
    other = GmailShapedPki.create(now=NOW - timedelta(days=5), prefix="Other")
    path = [pki.leaf.cert, pki.intermediate.cert, pki.new_root.cert]
    with Store.open(tmp_path / "state.db") as store:
        assert store.last_verified(server="gmail", address="a") is None
        store.record_observation(
            server="gmail", address="a", chain=pki.served, verified=True, path=path, error=None, now=NOW
        )
        store.record_observation(
            server="gmail",
            address="a",
            chain=other.served,
            verified=False,
            path=[],
            error="unknown issuer",
            now=NOW + timedelta(hours=1),
        )
        last = store.last_verified(server="gmail", address="a")
        assert last is not None and list(last.chain) == pki.served  # an unverified chain is never "last verified"
        assert store.last_verified(server="gmail", address="b") is None


