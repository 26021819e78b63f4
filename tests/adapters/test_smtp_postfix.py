"""The chain fetcher against a real Postfix (a private instance on 127.0.0.1; skipped where Postfix cannot run).

Postfix is what many relays really run, and it sends its chain from OpenSSL's server code, not Python's:
what we fetch must be exactly what Postfix was configured to send, in order, and must verify.
The system Postfix (its /etc/postfix, queue and service) is never touched; see tests/support/postfix_lab.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from eemwatchd.adapters.smtp import FetchTimeouts, Mode, fetch_chain, fetch_server
from eemwatchd.cli import main
from eemwatchd.core.certificate import Certificate, load_pem_certificates
from eemwatchd.core.chain import verify_chain
from eemwatchd.errors import FetchTimeout, SmtpProtocolError, TlsHandshakeError
from eemwatchd_lab.pki import GmailShapedPki, key_pem
from tests.support.postfix_lab import PostfixLab, PostfixUnavailable, running_postfix

pytestmark = [pytest.mark.postfix, pytest.mark.timeout(30)]

HOSTNAME = "smtp.lab.example"
FAST = FetchTimeouts(connect=5.0, step=5.0, total=10.0)
OPENSSL = shutil.which("openssl")


def _postfix(certs: Sequence[Certificate], postfix_pki: GmailShapedPki) -> Iterator[PostfixLab]:
    try:
        instance = running_postfix(certs, key_pem(postfix_pki.leaf.key))
        lab = instance.__enter__()
    except PostfixUnavailable as exc:
        if os.environ.get("EEMWATCHD_REQUIRE_POSTFIX"):  # CI that installed Postfix: a skip would hide a break
            pytest.fail(f"EEMWATCHD_REQUIRE_POSTFIX is set but Postfix cannot run: {exc}")
        pytest.skip(f"cannot run a private Postfix here: {exc}")
    try:
        yield lab
    finally:
        instance.__exit__(None, None, None)


@pytest.fixture(scope="module")
def postfix_pki() -> GmailShapedPki:
    """The PKI of the module's Postfix, minted now (OpenSSL and our verification read the host's clock)."""
    return GmailShapedPki.create()


@pytest.fixture(scope="module")
def postfix(postfix_pki: GmailShapedPki) -> Iterator[PostfixLab]:
    """One Postfix for the module, configured to send ``pki.served`` (leaf, intermediate, cross-signed root)."""
    yield from _postfix(postfix_pki.served, postfix_pki)


def _port(lab: PostfixLab, mode: Mode) -> int:
    return lab.starttls_port if mode == "starttls" else lab.implicit_port


def _sha256s(chain: Sequence[Certificate]) -> list[str]:
    return [c.sha256 for c in chain]


MODES = [pytest.param("starttls", id="starttls"), pytest.param("implicit", id="implicit-tls")]


@pytest.mark.parametrize("mode", MODES)
async def test_fetched_chain_is_what_postfix_was_configured_to_send(
    postfix: PostfixLab, postfix_pki: GmailShapedPki, mode: Mode
) -> None:
    results = await fetch_server("127.0.0.1", _port(postfix, mode), mode=mode, servername=HOSTNAME, timeouts=FAST)
    assert len(results) == 1
    result = results[0]
    assert result.ok, result.error
    assert result.address == "127.0.0.1"
    assert _sha256s(result.chain) == _sha256s(postfix_pki.served)

    now = datetime.now(UTC)
    both = verify_chain(result.chain, hostname=HOSTNAME, anchors=postfix_pki.anchors, now=now)
    assert both.verified, both.error
    assert both.anchor in postfix_pki.anchors
    # A store with only the old root (an old router) needs the cross-signed root Postfix sends.
    old_only = verify_chain(result.chain, hostname=HOSTNAME, anchors=[postfix_pki.old_root.cert], now=now)
    assert old_only.verified, old_only.error
    assert old_only.anchor == postfix_pki.old_root.cert
    assert _sha256s(old_only.path) == [*_sha256s(postfix_pki.served), postfix_pki.old_root.cert.sha256]


@pytest.mark.parametrize("mode", MODES)
async def test_cli_fetch_json_against_postfix(
    postfix: PostfixLab, postfix_pki: GmailShapedPki, tmp_path: Path, capsys: pytest.CaptureFixture[str], mode: Mode
) -> None:
    ca = tmp_path / "anchors.pem"
    ca.write_text(postfix_pki.old_root.cert.pem)
    argv = ["fetch", f"127.0.0.1:{_port(postfix, mode)}", "--mode", mode, "--servername", HOSTNAME,
            "--ca-file", str(ca), "--json", "--no-aia", "--timeout", "10"]
    code = await asyncio.to_thread(main, argv)
    out, err = capsys.readouterr()
    assert code == 0, err
    doc = json.loads(out)
    assert doc["port"] == _port(postfix, mode)
    [entry] = doc["addresses"]
    assert entry["verified"] is True
    assert entry["error"] is None
    assert entry["anchor_sha256"] == postfix_pki.old_root.cert.sha256
    assert [c["sha256"] for c in entry["chain"]] == _sha256s(postfix_pki.served)


def _openssl_chain(port: int) -> list[str]:
    assert OPENSSL is not None
    proc = subprocess.run(
        [OPENSSL, "s_client", "-starttls", "smtp", "-showcerts", "-servername", HOSTNAME,
         "-connect", f"127.0.0.1:{port}"],
        input=b"", capture_output=True, timeout=20, check=False,
    )
    return _sha256s(load_pem_certificates(proc.stdout))


@pytest.mark.skipif(OPENSSL is None, reason="openssl is not installed")
async def test_same_fingerprints_as_openssl_s_client(postfix: PostfixLab, postfix_pki: GmailShapedPki) -> None:
    ours = await fetch_chain("127.0.0.1", postfix.starttls_port, mode="starttls", servername=HOSTNAME,
                             timeouts=FAST)
    reference = await asyncio.to_thread(_openssl_chain, postfix.starttls_port)
    assert reference == _sha256s(postfix_pki.served)
    assert _sha256s(ours) == reference


async def test_odd_chain_is_kept_as_postfix_sends_it(postfix_pki: GmailShapedPki) -> None:
    """Postfix sends smtpd_tls_chain_files as written: out of order, duplicates, a self-signed twin."""
    odd = [postfix_pki.leaf.cert, postfix_pki.new_root_cross, postfix_pki.intermediate.cert,
           postfix_pki.intermediate.cert, postfix_pki.new_root.cert]
    for lab in _postfix(odd, postfix_pki):
        for mode in ("starttls", "implicit"):
            chain = await fetch_chain("127.0.0.1", _port(lab, mode), mode=mode, servername=HOSTNAME,
                                      timeouts=FAST)
            assert _sha256s(chain) == _sha256s(odd), mode
            verdict = verify_chain(chain, hostname=HOSTNAME, anchors=[postfix_pki.old_root.cert], now=datetime.now(UTC))
            assert verdict.verified, verdict.error


async def test_implicit_tls_against_the_starttls_port_is_refused(postfix: PostfixLab) -> None:
    # Which side wins the race decides the error: Postfix's greeting arrives before our ClientHello
    # (we refuse to handshake with a server that spoke first), or the handshake reads the greeting as
    # a TLS record (wrong version number). Both must point the operator at STARTTLS.
    with pytest.raises((SmtpProtocolError, TlsHandshakeError)) as caught:
        await fetch_chain("127.0.0.1", postfix.starttls_port, mode="implicit", servername=HOSTNAME,
                          timeouts=FAST)
    assert "STARTTLS" in str(caught.value)
    if isinstance(caught.value, SmtpProtocolError):
        assert "220 smtp.lab.example ESMTP" in str(caught.value)


async def test_starttls_against_the_implicit_port_times_out_waiting_for_the_greeting(postfix: PostfixLab) -> None:
    quick = FetchTimeouts(connect=2.0, step=1.0, total=3.0)
    with pytest.raises(FetchTimeout) as caught:
        await fetch_chain("127.0.0.1", postfix.implicit_port, mode="starttls", servername=HOSTNAME, timeouts=quick)
    assert caught.value.step == "waiting for the greeting"
    assert caught.value.address == f"127.0.0.1:{postfix.implicit_port}"
