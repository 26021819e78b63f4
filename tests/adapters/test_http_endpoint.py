"""The HTTP endpoint over real HTTP on 127.0.0.1: listen parsing, bind errors, /healthz, /readyz, /, /metrics."""

from __future__ import annotations

import asyncio
import socket
import urllib.request
from collections.abc import AsyncIterator

import pytest
from prometheus_client import CollectorRegistry

from eemwatchd.daemon.http_endpoint import HttpEndpoint, ListenError, parse_listen, start_http
from eemwatchd.daemon.metrics import Metrics
from tests.support.metrics_fleet import NOW, Served, fleet


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.beat: float | None = None

    def __call__(self) -> float:
        return self.now

    def heartbeat(self) -> float | None:
        return self.beat


@pytest.fixture
async def clocked() -> AsyncIterator[tuple[Served, Clock]]:
    clock = Clock()
    status = fleet()
    status.ready = False
    registry = CollectorRegistry()
    metrics = Metrics(registry, status=status)
    endpoint = await start_http("127.0.0.1:0", status=status, registry=registry, heartbeat=clock.heartbeat,
                                clock=clock, now=lambda: NOW, stale_after=30.0)
    yield Served(status, metrics, endpoint), clock
    await endpoint.close()


@pytest.mark.parametrize(
    ("listen", "expected"),
    [
        ("127.0.0.1:9810", ("127.0.0.1", 9810)),
        ("0.0.0.0:0", ("0.0.0.0", 0)),
        ("[::1]:9810", ("::1", 9810)),
        ("[::]:80", ("::", 80)),
        ("metrics.example.test:9810", ("metrics.example.test", 9810)),
    ],
    ids=["v4", "v4-any-port0", "v6-loopback", "v6-any", "hostname"],
)
def test_parse_listen(listen: str, expected: tuple[str, int]) -> None:
    assert parse_listen(listen) == expected


@pytest.mark.parametrize(
    ("listen", "message"),
    [
        ("9810", "not HOST:PORT"),
        ("::1:9810", "not HOST:PORT"),
        ("[::1]", "not HOST:PORT"),
        ("127.0.0.1:", "not HOST:PORT"),
        ("127.0.0.1:99999", "port 99999 is out of range"),
        ("", "not HOST:PORT"),
    ],
    ids=["port-only", "v6-without-brackets", "v6-without-port", "empty-port", "port-too-big", "empty"],
)
def test_parse_listen_rejects_with_the_key_and_the_fix(listen: str, message: str) -> None:
    with pytest.raises(ListenError, match=message) as caught:
        parse_listen(listen)
    assert str(caught.value).startswith(f"metrics.listen {listen!r}: ")
    assert "127.0.0.1:9810" in str(caught.value)  # the fix shows a valid value


async def test_port_in_use_is_a_listen_error_naming_the_key() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(ListenError, match="already in use") as caught:
            await start_http(f"127.0.0.1:{port}", status=fleet(), registry=CollectorRegistry(),
                             heartbeat=lambda: 0.0)
    assert f"metrics.listen '127.0.0.1:{port}'" in str(caught.value)


async def test_an_address_not_on_this_machine_is_a_listen_error() -> None:
    # 192.0.2.0/24 is TEST-NET-1: never a local address; binding fails locally, nothing is sent
    with pytest.raises(ListenError, match="not on this machine"):
        await start_http("192.0.2.1:0", status=fleet(), registry=CollectorRegistry(), heartbeat=lambda: 0.0)


async def test_port_zero_reports_the_bound_port_and_close_frees_it() -> None:
    endpoint = await start_http("127.0.0.1:0", status=fleet(), registry=CollectorRegistry(), heartbeat=lambda: 0.0)
    port = endpoint.port
    assert port > 0
    assert endpoint.url == f"http://127.0.0.1:{port}"
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        pass
    await endpoint.close()
    with socket.socket() as again:
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", port))  # free again


async def test_ipv6_loopback() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    try:
        endpoint: HttpEndpoint = await start_http("[::1]:0", status=fleet(), registry=CollectorRegistry(),
                                                  heartbeat=lambda: 0.0, clock=lambda: 0.0)
    except ListenError as exc:
        pytest.skip(f"::1 not usable here: {exc}")
    try:
        served = Served(fleet(), Metrics(CollectorRegistry(), status=fleet()), endpoint)
        assert endpoint.url == f"http://[::1]:{endpoint.port}"
        code, _, body = await served.get("/healthz")
        assert (code, body.startswith("ok")) == (200, True)
    finally:
        await endpoint.close()


async def test_healthz_follows_the_heartbeat(clocked: tuple[Served, Clock]) -> None:
    served, clock = clocked
    code, ctype, body = await served.get("/healthz")
    assert (code, body.strip()) == (503, "unhealthy: the daemon's loop has not beaten yet")
    assert ctype.startswith("text/plain")
    clock.beat = 995.0
    code, _, body = await served.get("/healthz")
    assert (code, body.strip()) == (200, "ok: the daemon's loop beat 5.0 s ago; every job on time")
    clock.now = 1026.0
    code, _, body = await served.get("/healthz")
    assert (code, body.strip()) == (503, "unhealthy: the daemon's loop last beat 31 s ago (limit 30 s)")
    clock.beat = 1025.0
    code, _, _ = await served.get("/healthz")
    assert code == 200


async def test_readyz_once_the_first_pass_finished(clocked: tuple[Served, Clock]) -> None:
    served, _ = clocked
    code, _, body = await served.get("/readyz")
    assert code == 503
    assert "first pass" in body
    served.status.ready = True
    code, _, body = await served.get("/readyz")
    assert (code, body.strip()) == (200, "ready")


async def test_status_page_is_html_with_a_strict_content_security_policy(clocked: tuple[Served, Clock]) -> None:
    served, _ = clocked
    code, ctype, body = await served.get("/")
    assert code == 200
    assert ctype == "text/html; charset=utf-8"
    assert body.startswith("<!DOCTYPE html>")
    assert 'id="routers"' in body


async def test_unknown_path_is_404(clocked: tuple[Served, Clock]) -> None:
    served, _ = clocked
    code, _, _ = await served.get("/admin")
    assert code == 404


async def test_headers_of_the_page() -> None:
    endpoint = await start_http("127.0.0.1:0", status=fleet(), registry=CollectorRegistry(), heartbeat=lambda: 0.0,
                                now=lambda: NOW)
    def head() -> dict[str, str]:
        with urllib.request.urlopen(endpoint.url + "/", timeout=5) as reply:
            return dict(reply.headers)

    try:
        headers = await asyncio.to_thread(head)
    finally:
        await endpoint.close()
    assert headers["Content-Security-Policy"].startswith("default-src 'none'; style-src 'unsafe-inline'")
    assert headers["X-Content-Type-Options"] == "nosniff"
