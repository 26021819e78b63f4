"""`eemwatchd fetch` end to end against loopback servers; the JSON agrees with `openssl s_client`."""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from eemwatchd.cli import main
from eemwatchd.commands.fetch import parse_target
from eemwatchd.core.certificate import Certificate, load_pem_certificates
from eemwatchd_lab.pki import GmailShapedPki, make_root
from eemwatchd_lab.smtp import LabSmtpServer

OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"


def _ca_file(tmp_path: Path, *certs: Certificate) -> str:
    path = tmp_path / "anchors.pem"
    path.write_text("".join(c.pem for c in certs))
    return str(path)


async def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = await asyncio.to_thread(main, argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("mode", ["starttls", "implicit"])
async def test_json_document(wall_clock_pki: GmailShapedPki, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                             mode: str) -> None:
    ca = _ca_file(tmp_path, wall_clock_pki.old_root.cert)
    async with LabSmtpServer(mode=mode, certs=wall_clock_pki.served, key=wall_clock_pki.leaf.key) as srv:  # type: ignore[arg-type]
        code, out, err = await _run(
            ["fetch", f"127.0.0.1:{srv.port}", "--mode", mode, "--servername", "smtp.lab.example",
             "--ca-file", ca, "--json", "--no-aia"], capsys)
    assert code == 0, err
    assert err == ""
    doc = json.loads(out)
    assert doc["server"] == "127.0.0.1"
    assert doc["port"] == srv.port
    assert doc["ok"] is True
    assert len(doc["addresses"]) == 1
    entry = doc["addresses"][0]
    assert entry["address"] == "127.0.0.1"
    assert entry["verified"] is True
    assert entry["error"] is None
    assert entry["anchor_sha256"] == wall_clock_pki.old_root.cert.sha256
    assert [c["sha256"] for c in entry["chain"]] == [c.sha256 for c in wall_clock_pki.served]
    for item, cert in zip(entry["chain"], wall_clock_pki.served, strict=True):
        assert re.fullmatch(r"[0-9a-f]{64}", item["sha256"])
        assert item["subject"] == cert.subject
        assert item["issuer"] == cert.issuer
        assert item["not_after"] == cert.not_after.isoformat()
        assert isinstance(item["is_ca"], bool)
        assert Certificate.from_pem(item["pem"]) == cert
    assert [c["is_ca"] for c in entry["chain"]] == [False, True, True]


async def test_not_verified_exits_non_zero_with_one_line(wall_clock_pki: GmailShapedPki, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    ca = _ca_file(tmp_path, make_root("Unrelated Root", now=wall_clock_pki.leaf.cert.not_before).cert)
    async with LabSmtpServer(mode="starttls", certs=wall_clock_pki.served, key=wall_clock_pki.leaf.key) as srv:
        code, out, err = await _run(["fetch", f"127.0.0.1:{srv.port}", "--ca-file", ca, "--json"], capsys)
    assert code == 1
    doc = json.loads(out)  # still printed
    assert doc["ok"] is False
    assert doc["addresses"][0]["verified"] is False
    assert doc["addresses"][0]["anchor_sha256"] is None
    assert "no trust anchor for 'Lab GlobalSign Root CA'" in doc["addresses"][0]["error"]
    assert len(err.strip().splitlines()) == 1
    assert err.startswith(f"eemwatchd fetch: 127.0.0.1:{srv.port}: chain not verified for 127.0.0.1: ")


async def test_fetch_failure_exits_non_zero(tmp_path: Path, wall_clock_pki: GmailShapedPki,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    ca = _ca_file(tmp_path, wall_clock_pki.old_root.cert)
    async with LabSmtpServer(mode="plain") as srv:
        argv = ["fetch", f"127.0.0.1:{srv.port}", "--ca-file", ca, "--timeout", "5"]
        code, out, err = await _run(argv, capsys)
    assert code == 1
    assert "fetch FAILED" in out
    assert len(err.strip().splitlines()) == 1
    assert "no STARTTLS offered" in err


async def test_human_table_and_pem(wall_clock_pki: GmailShapedPki, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    ca = _ca_file(tmp_path, *wall_clock_pki.anchors)
    async with LabSmtpServer(mode="starttls", certs=wall_clock_pki.served, key=wall_clock_pki.leaf.key) as srv:
        code, out, err = await _run(["fetch", f"localhost:{srv.port}", "--ca-file", ca, "--pem"], capsys)
    assert code == 0, err
    assert f"== 127.0.0.1:{srv.port} ==" in out
    for position, cert in enumerate(wall_clock_pki.served):
        row = next(line for line in out.splitlines() if cert.sha256 in line)
        assert row.split()[0] == str(position)
    assert "verified for localhost: smtp.lab.example -> Lab GTS CA 1C3 -> " in out
    assert "anchor: " in out
    assert load_pem_certificates(out) == wall_clock_pki.served


async def test_missing_ca_file_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = await _run(["fetch", "127.0.0.1:25", "--ca-file", str(tmp_path / "nope.pem")], capsys)
    assert code == 2
    assert "nope.pem" in err
    assert "cannot read" in err


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("smtp.gmail.com", ("smtp.gmail.com", None), id="name"),
        pytest.param("smtp.gmail.com:465", ("smtp.gmail.com", 465), id="name-port"),
        pytest.param("192.0.2.1:25", ("192.0.2.1", 25), id="ipv4-port"),
        pytest.param("[2001:db8::1]:587", ("2001:db8::1", 587), id="ipv6-port"),
        pytest.param("[2001:db8::1]", ("2001:db8::1", None), id="ipv6-bracketed"),
        pytest.param("2001:db8::1", ("2001:db8::1", None), id="ipv6-bare"),
    ],
)
def test_parse_target(text: str, expected: tuple[str, int | None]) -> None:
    assert parse_target(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("smtp.gmail.com:0", id="port-zero"),
        pytest.param("smtp.gmail.com:70000", id="port-too-big"),
        pytest.param("smtp.gmail.com:smtp", id="port-name"),
        pytest.param("[2001:db8::1", id="unclosed-bracket"),
        pytest.param("a:b:c", id="not-an-ipv6"),
        pytest.param(":25", id="no-host"),
    ],
)
def test_parse_target_refuses(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_target(text)


def _openssl_chain(port: int) -> list[str]:
    proc = subprocess.run(
        [OPENSSL, "s_client", "-starttls", "smtp", "-showcerts", "-connect", f"127.0.0.1:{port}"],
        input=b"", capture_output=True, timeout=20, check=False,
    )
    return [c.sha256 for c in load_pem_certificates(proc.stdout)]


@pytest.mark.skipif(not Path(OPENSSL).exists(), reason="openssl is not installed")
async def test_same_fingerprints_in_the_same_order_as_openssl(
    wall_clock_pki: GmailShapedPki, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 2's "done when": `fetch --json` lists what `openssl s_client -showcerts` shows, in order."""
    odd = [wall_clock_pki.leaf.cert, wall_clock_pki.intermediate.cert, wall_clock_pki.new_root_cross,
           wall_clock_pki.intermediate.cert, wall_clock_pki.new_root.cert]
    ca = _ca_file(tmp_path, wall_clock_pki.old_root.cert)
    async with LabSmtpServer(mode="starttls", certs=odd, key=wall_clock_pki.leaf.key) as srv:
        code, out, err = await _run(["fetch", f"127.0.0.1:{srv.port}", "--ca-file", ca, "--json"], capsys)
        reference = await asyncio.to_thread(_openssl_chain, srv.port)
    assert code == 0, err
    ours = [c["sha256"] for c in json.loads(out)["addresses"][0]["chain"]]
    assert reference == [c.sha256 for c in odd]
    assert ours == reference
