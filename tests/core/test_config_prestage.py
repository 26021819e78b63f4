"""`servers[].prestage` at config load (issue 20): every refusal names the key path, the file and the reason; what
passes is carried in the config. The clock is pinned: certificates are minted relative to it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from eemwatchd.config import load_config, parse_config
from eemwatchd.errors import ConfigError
from eemwatchd_lab.pki import GmailShapedPki, cross_sign, make_root

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
MINTED = NOW - timedelta(days=5)
PKI = GmailShapedPki.create(now=MINTED)
NEXT = make_root("Next Root R5", now=MINTED)
NEXT_CROSS = cross_sign(NEXT, by=PKI.old_root, now=MINTED)
STRANGER = make_root("Stranger Root", now=MINTED)
EXPIRED = make_root("Expired Root", now=NOW - timedelta(days=400), days=100)


@pytest.fixture
def files(tmp_path: Path) -> Path:
    """A config directory: the trust store (both lab roots) and a file per candidate certificate."""
    (tmp_path / "store.pem").write_text(PKI.old_root.cert.pem + PKI.new_root.cert.pem)
    for name, pem in {"cross.pem": PKI.new_root_cross.pem, "inter.pem": PKI.intermediate.cert.pem,
                      "leaf.pem": PKI.leaf.cert.pem, "next.pem": NEXT.cert.pem,
                      "next-and-cross.pem": NEXT.cert.pem + NEXT_CROSS.pem, "stranger.pem": STRANGER.cert.pem,
                      "expired.pem": EXPIRED.cert.pem, "empty.pem": "", "junk.pem": "not a certificate\n"}.items():
        (tmp_path / name).write_text(pem)
    return tmp_path


def config(prestage: str, *, extra: str = "") -> str:
    return f"""
servers:
  - name: gmail
    host: smtp.gmail.com
    ca_file: store.pem
    prestage: {prestage}
{extra}"""


def problems(text: str, base: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, base=base, now=NOW)
    return caught.value.problems


@pytest.mark.parametrize(("entry", "words"), [
    pytest.param("leaf.pem", "smtp.lab.example [{leaf}, expires", id="a-server-certificate-is-not-a-ca"),
    pytest.param("expired.pem", "Expired Root [{expired}, expires", id="an-expired-root"),
    pytest.param("stranger.pem", "is a self-signed root that is not in the trust store, and no sha256 pins it",
                 id="a-root-neither-in-the-trust-store-nor-pinned"),
    pytest.param("{{file: next.pem, sha256: '{stranger_sha}'}}", "not the pinned", id="a-pin-that-does-not-match"),
    pytest.param("missing.pem", "cannot read it (No such file or directory)", id="a-file-that-does-not-read"),
    pytest.param("empty.pem", "is empty: it holds no certificate", id="an-empty-file"),
    pytest.param("junk.pem", "holds no readable certificate", id="a-file-without-a-certificate"),
    pytest.param("{{file: next-and-cross.pem, sha256: '{next_sha}'}}", "holds 2 certificates, and one sha256 pins one",
                 id="one-pin-for-a-file-of-two"),
    pytest.param("{{file: next.pem, sha256: 1234}}", "write the SHA-256 fingerprint in quotes",
                 id="a-pin-yaml-reads-as-a-number"),
    pytest.param("{{file: next.pem, sha256: 'abc'}}", "must be a SHA-256 fingerprint", id="a-pin-too-short"),
    pytest.param("{{file: next.pem, pin: 'x'}}", "prestage[0].pin: is not a known key (check the spelling",
                 id="an-unknown-key"),
])
def test_a_refused_entry_names_its_key_path_file_and_reason(files: Path, entry: str, words: str) -> None:
    values = {"leaf": PKI.leaf.cert.short_fingerprint, "expired": EXPIRED.cert.short_fingerprint,
              "stranger_sha": STRANGER.cert.sha256, "next_sha": NEXT.cert.sha256}
    found = problems(config(f"[{entry.format(**values)}]"), files)
    assert len(found) == 1, found
    assert found[0].startswith("servers[0].prestage[0]"), found
    assert words.format(**values) in found[0], found
    named = entry.split("{file: ")[-1].split(",")[0].split("}")[0]
    if "sha256: 1234" not in entry and "'abc'" not in entry and "pin:" not in entry:
        assert str(files / named) in found[0]  # the file, as an absolute path


def test_the_reasons_of_a_refusal(files: Path) -> None:
    [leaf] = problems(config("[leaf.pem]"), files)
    assert "is not a CA certificate (no basicConstraints CA:TRUE)" in leaf
    [expired] = problems(config("[expired.pem]"), files)
    assert f"expired on {EXPIRED.cert.not_after:%Y-%m-%d %H:%M} UTC" in expired


@pytest.mark.parametrize("entry", [
    pytest.param("[cross.pem]", id="a-cross-signed-root-verifies-through-its-signer"),
    pytest.param("[inter.pem]", id="an-intermediate-verifies-through-its-root"),
    pytest.param("[next-and-cross.pem]", id="an-announced-root-with-its-cross-sign-verifies-through-it"),
    pytest.param(f"[{{file: next.pem, sha256: '{NEXT.cert.sha256}'}}]", id="pinned-it-need-not-chain"),
    pytest.param(f"[{{file: stranger.pem, sha256: '{STRANGER.cert.sha256.upper()}'}}]", id="a-pin-in-upper-case"),
])
def test_accepted_entries_carry_their_certificates(files: Path, entry: str) -> None:
    server = parse_config(config(entry), base=files, now=NOW).config.servers[0]
    assert server.prestaged_certificates
    assert all(c.is_ca for c in server.prestaged_certificates)
    assert server.prestage[0].file == files / entry.strip("[]{}").split(",")[0].removeprefix("file: ")


def test_every_refusal_is_reported_at_once_with_the_other_problems(files: Path) -> None:
    found = problems(config("[leaf.pem, cross.pem, stranger.pem]", extra="    port: 0"), files)
    assert any(p.startswith("servers[0].port") for p in found)
    assert [p.split(":", 1)[0] for p in found if "prestage" in p] == ["servers[0].prestage[0]",
                                                                     "servers[0].prestage[2]"]


def test_a_default_is_judged_against_each_server_s_own_trust_store_and_reported_once(files: Path) -> None:
    (files / "other-store.pem").write_text(STRANGER.cert.pem)
    text = """
defaults:
  servers: {prestage: [cross.pem, leaf.pem]}
servers:
  - {name: a, host: a.example, ca_file: store.pem}
  - {name: b, host: b.example, ca_file: store.pem}
  - {name: c, host: c.example, ca_file: other-store.pem}
  - {name: d, host: d.example, ca_file: other-store.pem, prestage: [stranger.pem]}
"""
    found = problems(text, files)
    assert [p for p in found if "leaf.pem" in p] == [
        f"defaults.servers.prestage[1]: {files / 'leaf.pem'}: {PKI.leaf.cert.describe()} is not a CA certificate "
        "(no basicConstraints CA:TRUE); pre-stage the provider's root or intermediate, not a server certificate"]
    cross = [p for p in found if "cross.pem" in p]
    assert len(cross) == 1 and cross[0].startswith("defaults.servers.prestage[0]")
    assert "(the trust store of c)" in cross[0]  # only c's store lacks the cross-sign's signer
    assert not [p for p in found if "stranger.pem" in p]  # d's own list, trusted by its own store


def test_the_trust_store_is_policy_trust_store_without_ca_file(files: Path) -> None:
    text = """
servers: [{name: a, host: a.example, prestage: [cross.pem]}]
policy: {trust_store: store.pem}
"""
    assert parse_config(text, base=files, now=NOW).config.servers[0].prestaged_certificates == (PKI.new_root_cross,)


def test_validity_is_judged_at_the_given_moment(files: Path) -> None:
    text = config("[next-and-cross.pem]")
    assert parse_config(text, base=files, now=NOW).config
    later = NEXT_CROSS.not_after + timedelta(days=1)
    with pytest.raises(ConfigError, match="expired on"):
        parse_config(text, base=files, now=later)


def test_load_config_reads_the_files_relative_to_the_config_file(files: Path) -> None:
    (files / "eemwatchd.yaml").write_text(config("[cross.pem]"))
    loaded = load_config(files / "eemwatchd.yaml", now=NOW).config
    assert loaded.servers[0].prestage[0].file == files / "cross.pem"
    changed = parse_config(config("[inter.pem]"), base=files, now=NOW).config
    assert changed.servers[0] != loaded.servers[0]  # a reload with another file changes the server
