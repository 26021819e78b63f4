"""AIA completion against a tiny http.server on 127.0.0.1: DER, PEM, PKCS#7, limits, and the fetch flow."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest
from cryptography.hazmat.primitives.serialization import Encoding, pkcs7

from eemwatchd.adapters.aia import AiaLimits, complete_chain, fetch_issuer_certificates
from eemwatchd.core.certificate import Certificate
from eemwatchd.errors import AiaError
from eemwatchd.reconcile.observe import observe_server
from eemwatchd_lab.pki import Issued, make_intermediate, make_leaf, make_root
from eemwatchd_lab.smtp import LabSmtpServer

NOW = datetime.now(UTC)


@dataclass
class AiaPki:
    root: Issued
    intermediate: Issued
    leaf: Issued
    base: str


class _Handler(BaseHTTPRequestHandler):
    routes: ClassVar[dict[str, tuple[int, bytes, dict[str, str]]]] = {}

    def do_GET(self) -> None:
        if self.path == "/slow":
            time.sleep(1.0)
        if self.path == "/stream-big":  # no Content-Length: the limit must hold while reading
            self.send_response(200)
            self.end_headers()
            with contextlib.suppress(OSError):
                for _ in range(100):
                    self.wfile.write(b"\0" * 1024)
            return
        status, body, headers = self.routes.get(self.path, (404, b"not found", {}))
        with contextlib.suppress(OSError):
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def aia() -> Iterator[AiaPki]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    base = f"http://127.0.0.1:{server.server_address[1]}"
    root = make_root("AIA Test Root", now=NOW)
    inter = make_intermediate("AIA Test CA", by=root, now=NOW, ca_issuers_url=f"{base}/root.der")
    leaf = make_leaf(["smtp.lab.example", "127.0.0.1"], by=inter, now=NOW, ca_issuers_url=f"{base}/inter.der")
    der = inter.cert.der
    p7 = pkcs7.serialize_certificates([inter.cert.x509, root.cert.x509], Encoding.DER)
    _Handler.routes = {
        "/inter.der": (200, der, {"Content-Type": "application/pkix-cert"}),
        "/inter.pem": (200, inter.cert.pem.encode(), {}),
        "/inter.p7c": (200, p7, {"Content-Type": "application/pkcs7-mime"}),
        "/root.der": (200, root.cert.der, {}),
        "/slow": (200, der, {}),
        "/big": (200, b"\0" * 100_000, {}),
        "/garbage": (200, b"<html>not a certificate</html>", {}),
        "/moved": (302, b"", {"Location": f"{base}/inter.pem"}),
        "/to-https": (301, b"", {"Location": "https://127.0.0.1/inter.der"}),
    }
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield AiaPki(root, inter, leaf, base)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.mark.parametrize("path", ["/inter.der", "/inter.pem", "/inter.p7c", "/moved"],
                         ids=["der", "pem", "pkcs7", "redirect"])
async def test_formats(aia: AiaPki, path: str) -> None:
    certs = await fetch_issuer_certificates(aia.base + path)
    assert aia.intermediate.cert in certs


@pytest.mark.parametrize(
    ("path", "limits", "pattern"),
    [
        pytest.param("/big", AiaLimits(), r"response of 100000 bytes exceeds the limit of 65536",
                     id="too-big"),
        pytest.param("/stream-big", AiaLimits(), r"exceeds the limit of 65536 bytes", id="too-big-streamed"),
        pytest.param("/slow", AiaLimits(timeout=0.3), r"no complete answer within 0\.3 s", id="timeout"),
        pytest.param("/missing", AiaLimits(), r"HTTP status 404", id="404"),
        pytest.param("/garbage", AiaLimits(), r"neither PEM, DER nor PKCS#7", id="garbage"),
        pytest.param("/to-https", AiaLimits(), r"only http:// caIssuers URLs", id="redirect-to-https"),
    ],
)
async def test_bounded_and_clear_errors(aia: AiaPki, path: str, limits: AiaLimits, pattern: str) -> None:
    started = time.monotonic()
    with pytest.raises(AiaError, match=pattern):
        await fetch_issuer_certificates(aia.base + path, limits=limits)
    assert time.monotonic() - started < 3


async def test_complete_chain_fetches_the_missing_intermediate(aia: AiaPki) -> None:
    fetched = await complete_chain([aia.leaf.cert], anchors=[aia.root.cert])
    assert fetched == (aia.intermediate.cert,)


async def test_complete_chain_climbs_to_the_root_when_nothing_trusts(aia: AiaPki) -> None:
    other = make_root("Other Root", now=NOW).cert
    fetched = await complete_chain([aia.leaf.cert], anchors=[other])
    assert fetched == (aia.intermediate.cert, aia.root.cert)


async def test_complete_chain_does_nothing_for_a_complete_chain(aia: AiaPki) -> None:
    assert await complete_chain([aia.leaf.cert, aia.intermediate.cert], anchors=[aia.root.cert]) == ()


async def test_complete_chain_without_url(aia: AiaPki) -> None:
    bare = make_leaf(["x.example"], by=aia.intermediate, now=NOW)
    with pytest.raises(AiaError, match="names no caIssuers URL"):
        await complete_chain([bare.cert], anchors=[aia.root.cert])


async def test_complete_chain_rejects_a_wrong_issuer(aia: AiaPki) -> None:
    wrong = make_leaf(["x.example"], by=aia.intermediate, now=NOW, ca_issuers_url=f"{aia.base}/root.der")
    with pytest.raises(AiaError, match=r"served no certificate that signed 'x\.example'"):
        await complete_chain([wrong.cert], anchors=[aia.root.cert])


@pytest.mark.parametrize("use_aia", [True, False], ids=["aia-on", "aia-off"])
async def test_fetch_flow_completes_a_leaf_only_server(aia: AiaPki, use_aia: bool) -> None:
    async with LabSmtpServer(mode="starttls", certs=[aia.leaf.cert], key=aia.leaf.key) as srv:
        observations = await observe_server("127.0.0.1", srv.port, mode="starttls", anchors=[aia.root.cert],
                                            now=datetime.now(UTC), servername="smtp.lab.example", aia=use_aia)
    (obs,) = observations
    assert obs.chain == (aia.leaf.cert,)
    assert obs.verified is use_aia
    if use_aia:
        assert obs.aia_fetched == (aia.intermediate.cert,)
        assert obs.verification is not None
        assert obs.verification.path == (aia.leaf.cert, aia.intermediate.cert, aia.root.cert)
    else:
        assert obs.aia_fetched == ()
        assert obs.reason is not None
        assert "no trust anchor for 'AIA Test CA'" in obs.reason


def test_certificates_compare_by_der(aia: AiaPki) -> None:
    assert Certificate(aia.intermediate.cert.der) == aia.intermediate.cert
