"""Alerts: a real webhook receiver and a real SMTP server on 127.0.0.1, routing, de-duplication, failures,
and the reconcile service alerting on an untrusted chain (changing nothing) and on a rotated chain."""

from __future__ import annotations

import contextlib
import email
import email.policy
import json
import logging
import ssl
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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
from eemwatchd.core.plan import Action, Report, RouterPlan
from eemwatchd.core.reason import Reason
from eemwatchd.errors import AlertError
from eemwatchd.reconcile import (
    AddressOutcome,
    AppliedStep,
    Reconciler,
    RouterResult,
    RunReport,
    ServerOutcome,
    build_alerts,
    config_secrets,
)
from eemwatchd_lab.pki import GmailShapedPki
from eemwatchd_lab.smtp import LabSmtpServer, build_server_context
from tests import test_reconcile as rec

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ALERT_PASSWORD = "alert-sink-pw-K2"  # lab only; must never leave in an alert, a log line or an error
SECRETS = (ALERT_PASSWORD, rec.ROUTER_PASSWORD, rec.SMTP_PASSWORD)

lab = rec.lab  # the lab routers + lab SMTP server fixture of the reconcile tests


def alert(event: Any = "chain_changed", subject: str = "gmail", summary: str = "s", **details: Any) -> Alert:
    return Alert(event=event, subject=subject, summary=summary, details=details, at=NOW)


def assert_no_secrets(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


@dataclass
class RecordingSink:
    """A sink that keeps what it was given (a Protocol fake: no base class)."""

    name: str = "recorder"
    batches: list[list[Alert]] = field(default_factory=list)

    async def send(self, alerts: Sequence[Alert]) -> None:
        self.batches.append(list(alerts))

    @property
    def alerts(self) -> list[Alert]:
        return [a for batch in self.batches for a in batch]


class FailingSink:
    def __init__(self, name: str, exc: Exception) -> None:
        self.name = name
        self._exc = exc

    async def send(self, alerts: Sequence[Alert]) -> None:
        raise self._exc


# --- a real webhook receiver ---------------------------------------------------------------------------


@dataclass
class Receiver:
    url: str
    bodies: list[dict[str, Any]]
    headers: list[dict[str, str]]
    status: int = 204
    answer: bytes = b""
    delay: float = 0.0
    release: threading.Event = field(default_factory=threading.Event)


@contextlib.contextmanager
def serve_webhook(tls: ssl.SSLContext | None = None) -> Iterator[Receiver]:
    """A real HTTP(S) server on 127.0.0.1, port 0, recording every POST."""
    state = Receiver(url="", bodies=[], headers=[])

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            state.bodies.append(json.loads(self.rfile.read(length)))
            state.headers.append(dict(self.headers))
            if state.delay:
                state.release.wait(state.delay)
            self.send_response(state.status)
            self.send_header("Content-Length", str(len(state.answer)))
            self.end_headers()
            self.wfile.write(state.answer)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    scheme = "https" if tls is not None else "http"
    state.url = f"{scheme}://127.0.0.1:{server.server_address[1]}/hooks/secret-token-path?key=abc"
    try:
        yield state
    finally:
        state.release.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with serve_webhook() as state:
        yield state


@pytest.mark.timeout(10)
async def test_webhook_posts_one_json_document(receiver: Receiver) -> None:
    sink = WebhookSink(receiver.url, timeout=3)
    sent = [alert(address="127.0.0.1", chain_sha256=["ab" * 32]), alert("expiry", "r1", "soon")]
    await sink.send(sent)
    [body] = receiver.bodies
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
    assert receiver.headers[0]["Content-Type"] == "application/json"


@pytest.mark.timeout(10)
async def test_webhook_non_2xx_is_an_alert_error_with_status_and_excerpt(receiver: Receiver) -> None:
    receiver.status, receiver.answer = 500, b"internal\nboom " + b"x" * 1000
    with pytest.raises(AlertError) as caught:
        await WebhookSink(receiver.url, timeout=3).send([alert()])
    text = str(caught.value)
    assert "HTTP 500: internal boom xxx" in text
    assert len(text) < 300
    assert "secret-token-path" not in text and "key=abc" not in text  # the URL's path may be a token


@pytest.mark.timeout(10)
async def test_webhook_timeout_is_bounded(receiver: Receiver) -> None:
    receiver.delay = 5.0
    started = datetime.now(UTC)
    with pytest.raises(AlertError, match=r"no answer within 0\.5 s"):
        await WebhookSink(receiver.url, timeout=0.5).send([alert()])
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


@pytest.fixture
def pki() -> GmailShapedPki:
    return GmailShapedPki.create()


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
async def test_email_over_starttls_with_auth(pki: GmailShapedPki) -> None:
    async with LabSmtpServer(
        mode="starttls", certs=pki.served, key=pki.leaf.key, username="alerts", password=ALERT_PASSWORD
    ) as smtp:
        await email_sink(smtp.port, pki).send(
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
async def test_email_wrong_password_is_an_alert_error_without_the_password(pki: GmailShapedPki) -> None:
    async with LabSmtpServer(
        mode="starttls", certs=pki.served, key=pki.leaf.key, username="alerts", password="other-pw"
    ) as smtp:
        with pytest.raises(AlertError, match=r"email 127.0.0.1:\d+: 535") as caught:
            await email_sink(smtp.port, pki).send([alert()])
    assert_no_secrets(str(caught.value))


@pytest.mark.timeout(10)
async def test_email_never_sends_the_password_without_tls(pki: GmailShapedPki) -> None:
    async with LabSmtpServer(mode="plain") as smtp:
        with pytest.raises(AlertError, match="offers no STARTTLS; not sending the password"):
            await email_sink(smtp.port, pki).send([alert()])
        assert smtp.messages == []


@pytest.mark.timeout(10)
async def test_email_untrusted_server_certificate_is_an_alert_error(pki: GmailShapedPki) -> None:
    other = GmailShapedPki.create(prefix="Other")
    async with LabSmtpServer(mode="starttls", certs=other.served, key=other.leaf.key) as smtp:
        with pytest.raises(AlertError, match="CERTIFICATE_VERIFY_FAILED"):
            await email_sink(smtp.port, pki).send([alert()])


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
        f"login with {rec.ROUTER_PASSWORD} failed\nsecond line",
        error=f"mail server alerts:{rec.SMTP_PASSWORD}@127.0.0.1 said no",
        steps=[{"detail": ALERT_PASSWORD}],
    )
    errors = await alerter.send([leaky], secrets=[rec.ROUTER_PASSWORD])
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


# --- alerts from a run (pure) ---------------------------------------------------------------------------


def test_build_alerts_from_a_run_report() -> None:
    shas = ("aa" * 32, "bb" * 32)
    plan = RouterPlan(
        actions=(Action("add", "EEMW-AB", "cc" * 32, "gmail 127.0.0.1: anchor"),),
        reports=(Report("expiring", "EEMW-OLD", "CN=Old expires in 3 days"), Report("unmanaged", "X", "kept")),
    )
    applied = RouterResult(
        "r1",
        reachable=True,
        plan=plan,
        result="applied",
        steps=[
            AppliedStep("add", "EEMW-AB", "cc" * 32, True, "anchor"),
            AppliedStep("test-fire", None, None, True, "mail sent"),
        ],
    )
    report = RunReport(
        servers=[
            ServerOutcome(
                "gmail",
                (
                    AddressOutcome("127.0.0.1", shas, False, "unknown issuer", 1),
                    AddressOutcome("::1", shas, True, None, 3, changed_from=("dd" * 32,)),
                    AddressOutcome("10.0.0.1", shas, True, None, 3, pinned=False),
                    AddressOutcome("10.0.0.2", (), False, "connection refused"),
                    AddressOutcome("10.0.0.3", shas, True, None, 5),
                ),
            )
        ],
        routers=[applied, RouterResult("r2", error="router r2: connection refused\nmore")],
        events=[],
    )
    alerts = build_alerts(report, at=NOW)
    assert [(a.event, a.subject) for a in alerts] == [
        ("chain_unverified", "gmail"),
        ("chain_changed", "gmail"),
        ("chain_unverified", "gmail"),
        ("router_drift", "r1"),
        ("refresh_succeeded", "r1"),
        ("expiry", "r1"),
        ("refresh_failed", "r2"),
    ]
    unverified, changed, unpinned = alerts[:3]
    assert unverified.details == {
        "server": "gmail",
        "address": "127.0.0.1",
        "chain_sha256": list(shas),
        "reason": "unknown issuer",
    }
    assert unverified.summary.startswith("SECURITY: gmail 127.0.0.1") and "nothing changed" in unverified.summary
    assert changed.details["previous_chain_sha256"] == ["dd" * 32]
    assert unpinned.details["reason"] == "no certificate matches the configured pins"
    assert alerts[3].details["actions"][0]["trustpoint"] == "EEMW-AB"
    assert alerts[5].details["certificates"] == [
        {"kind": "expiring", "trustpoint": "EEMW-OLD", "message": "CN=Old expires in 3 days"}
    ]
    assert alerts[6].summary == "router r2: unreachable: connection refused"  # the router is named once
    assert all(a.at == NOW and "\n" not in a.summary for a in alerts)


def test_failed_apply_is_refresh_failed_not_succeeded() -> None:
    plan = RouterPlan(actions=(Action("retire", "EEMW-OLD", "ee" * 32, "unneeded"),), reports=())
    result = RouterResult(
        "r1",
        reachable=True,
        plan=plan,
        result="failed",
        error="test-fire failed; nothing retired",
        steps=[AppliedStep("test-fire", None, None, False, "535 auth failed")],
    )
    events = [a.event for a in build_alerts(RunReport([], [result], []), at=NOW)]
    assert events == ["refresh_failed", "router_drift"]


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


# --- with the reconcile service, lab routers and the lab SMTP server ---------------------------------------


def reconciler(lab: rec.Lab, receiver: Receiver, recorder: RecordingSink) -> Reconciler:
    """The config's own alerter (a real webhook) plus a recorder; the lab routers over real SSH."""
    config = lab.config.model_copy(
        update={"alerts": (AlertConfig(kind="webhook", url=receiver.url, timeout=3, events=EVENTS),)}
    )
    built = Reconciler(config, lab.store, connect=rec.fast_connector, clock=lab.clock)
    alerter = Alerter([*built.alerter.routes, Route(recorder, frozenset(EVENTS))], secrets=config_secrets(config))
    return Reconciler(config, lab.store, connect=rec.fast_connector, clock=lab.clock, alerter=alerter)


async def converge(lab: rec.Lab, service: Reconciler) -> list[RunReport]:
    first = await service.run(apply=True)
    lab.clock.advance(timedelta(minutes=10))
    second = await service.run(apply=True)
    assert all(r.result == "applied" for r in second.routers), [r.error for r in second.routers]
    return [first, second]


def events_of(report: RunReport) -> list[tuple[str, str]]:
    return [(a.event, a.subject) for a in report.alerts]


@pytest.mark.timeout(30)
async def test_unverified_chain_is_alerted_and_changes_nothing(lab: rec.Lab, receiver: Receiver) -> None:
    recorder = RecordingSink()
    service = reconciler(lab, receiver, recorder)
    first, second = await converge(lab, service)
    # First sighting: nothing is acted on yet, and no router is in sync while the chain is unconfirmed
    # (r1 cannot accept it yet; r2 already does, through its own trustpoint). Awaiting confirmation is a
    # state that ends by itself, not drift: no alert.
    assert [r.reason for r in first.routers] == [Reason.UNCONFIRMED, Reason.UNCONFIRMED]
    assert events_of(first) == []
    # The refreshes are news; they brought both routers in sync.
    assert set(events_of(second)) == {("refresh_succeeded", "r1"), ("refresh_succeeded", "r2")}
    before = {n: lab.trustpoints(n) for n in ("r1", "r2")}
    audit_before = lab.store.audit()

    intruder = GmailShapedPki.create(prefix="Intruder")
    lab.smtp.set_chain(intruder.served, intruder.leaf.key)
    lab.clock.advance(timedelta(minutes=10))
    report = await service.run(apply=True)

    # the intruder's chain is a security event, and nothing changed on the routers
    assert events_of(report) == [("chain_unverified", "lab")]
    [security] = report.alerts
    assert security.state == "firing"
    assert security.details["address"] == "127.0.0.1"
    assert security.details["chain_sha256"] == [c.sha256 for c in intruder.served]
    assert security.details["reason"]
    assert report.alert_errors == []
    assert {n: lab.trustpoints(n) for n in ("r1", "r2")} == before
    assert lab.store.audit() == audit_before
    # the webhook got each run's alerts; nothing it got holds a secret
    assert [a["event"] for a in receiver.bodies[-1]["alerts"]] == ["chain_unverified"]
    assert_no_secrets(json.dumps(receiver.bodies))
    assert_no_secrets(json.dumps([a.to_json() for a in recorder.alerts]))
    assert_no_secrets(json.dumps(report.to_json()))


@pytest.mark.timeout(30)
async def test_chain_changed_after_rotation_once(lab: rec.Lab, receiver: Receiver) -> None:
    recorder = RecordingSink()
    service = reconciler(lab, receiver, recorder)
    await converge(lab, service)
    original = [c.sha256 for c in lab.pki.served]
    lab.pki.rotate_intermediate("Lab WR2")
    lab.smtp.set_chain(lab.pki.served, lab.pki.leaf.key)
    lab.clock.advance(timedelta(hours=1))

    report = await service.run(apply=False)
    [changed] = [a for a in report.alerts if a.event == "chain_changed"]
    assert changed.subject == "lab"
    assert changed.details["chain_sha256"] == [c.sha256 for c in lab.pki.served]
    assert changed.details["previous_chain_sha256"] == original
    assert [a["event"] for a in receiver.bodies[-1]["alerts"]] == [a.event for a in report.alerts]

    lab.clock.advance(timedelta(minutes=10))
    again = await service.run(apply=True)  # same chain again: no change alert; now it is acted on
    assert "chain_changed" not in [e for e, _ in events_of(again)]
    assert ("refresh_succeeded", "r1") in events_of(again)
    assert_no_secrets(json.dumps(receiver.bodies))


@pytest.mark.timeout(30)
async def test_default_alerter_logs_and_a_dead_webhook_does_not_stop_the_run(
    lab: rec.Lab, caplog: pytest.LogCaptureFixture
) -> None:
    config = lab.config.model_copy(
        update={
            "alerts": (
                AlertConfig(kind="webhook", url="http://127.0.0.1:9/hook", timeout=1),
                AlertConfig(kind="log", events=EVENTS),
            )
        }
    )
    service = Reconciler(config, lab.store, connect=rec.fast_connector, clock=lab.clock)
    with caplog.at_level(logging.INFO, logger="eemwatchd.alerts"):
        first = await service.run(apply=True)
        lab.clock.advance(timedelta(minutes=10))
        second = await service.run(apply=True)
        intruder = GmailShapedPki.create(prefix="Intruder")
        lab.smtp.set_chain(intruder.served, intruder.leaf.key)
        lab.clock.advance(timedelta(minutes=10))
        third = await service.run(apply=True)
    assert all(r.result == "applied" for r in second.routers)
    # the first run awaits confirmation (no alert), the second brings both routers in sync (its refreshes are
    # not among the hook's events): the hook has nothing to miss until the intruder's chain, which reaches the
    # log but not the dead hook, and the run goes on
    assert first.alert_errors == [] and second.alert_errors == []
    assert len(third.alert_errors) == 1
    assert third.alert_errors[0].startswith("webhook http://127.0.0.1:9: ")
    logged = [r.getMessage() for r in caplog.records if r.name == "eemwatchd.alerts"]
    assert any(line.startswith("ALERT chain_unverified lab:") for line in logged)
    assert any(line.startswith("ALERT refresh_succeeded r1:") for line in logged)
    assert_no_secrets("\n".join(logged))
