"""Configuration: every problem reported at once, with its key path and a fix; secrets never leak."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from eemwatchd.config import Secret, load_config, parse_config, parse_duration
from eemwatchd.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent

MINIMAL = """
servers:
  - {name: gmail, host: smtp.gmail.com}
routers:
  - {name: r1, host: 192.0.2.1, username: u, password_file: pw, applet: MAIL, servers: [gmail],
     known_hosts: kh}
"""


@pytest.fixture
def base(tmp_path: Path) -> Path:
    (tmp_path / "pw").write_text("s3cret-pw\n")
    return tmp_path


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90.0), (90, 90.0), ("90s", 90.0), ("15m", 900.0), ("1h", 3600.0), ("7d", 604800.0),
     ("1w", 604800.0), ("250ms", 0.25), (1.5, 1.5)],
    ids=lambda v: str(v),
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["soon", "1y", "-5", True, "", None], ids=str)
def test_bad_durations(text: object) -> None:
    with pytest.raises(ValueError, match=r"duration|negative"):
        parse_duration(text)


def test_minimal_config_and_defaults(base: Path) -> None:
    cfg = parse_config(MINIMAL, base=base).config
    server = cfg.server("gmail")
    assert (server.mode, server.effective_port, server.interval) == ("starttls", 587, 3600.0)
    router = cfg.router("r1")
    assert router.port == 22
    assert isinstance(router.password, Secret)
    assert router.password.reveal() == "s3cret-pw"
    assert router.known_hosts == base / "kh"
    assert cfg.policy.trustpoint_prefix == "EEMW-"
    assert cfg.policy.confirmations == 2


def test_implicit_mode_defaults_to_465(base: Path) -> None:
    cfg = parse_config("servers: [{name: s, host: h, mode: implicit}]", base=base).config
    assert cfg.servers[0].effective_port == 465


def test_defaults_section_is_merged_and_entry_wins(base: Path) -> None:
    text = """
defaults:
  servers: {interval: 15m}
  routers: {username: shared, password_file: pw, applet: MAIL, servers: [s], known_hosts: kh, port: 2222}
servers: [{name: s, host: h}, {name: t, host: h2, interval: 1h}]
routers: [{name: r1, host: a}, {name: r2, host: b, port: 22}]
"""
    cfg = parse_config(text, base=base).config
    assert [s.interval for s in cfg.servers] == [900.0, 3600.0]
    assert [r.port for r in cfg.routers] == [2222, 22]
    assert {r.username for r in cfg.routers} == {"shared"}


def test_every_problem_reported_at_once_with_paths(base: Path) -> None:
    text = """
servers:
  - {name: a, host: x, port: 70000, mode: foo, interval: soon}
routers:
  - {name: r1, host: h, username: u, password_file: pw, applet: A, servers: [a, b], known_hosts: kh}
  - {name: r1, host: h, port: 0, username: u, applet: A, servers: [a], trust_on_first_use: true, colour: red}
policy: {confirmations: 0, install: everything}
"""
    with pytest.raises(ConfigError) as info:
        parse_config(text, base=base, source="bad.yaml")
    problems = info.value.problems
    expected = [
        "servers[0].port: must be 1-65535",
        "servers[0].mode: must be one of 'starttls' or 'implicit'",
        "servers[0].interval: must be a duration like 30s, 15m, 1h or 7d",
        "routers[1].port: must be 1-65535",
        "routers[1].colour: is not a known key",
        "policy.confirmations: must be 1 or more",
        "policy.install: must be one of 'path' or 'anchor_only'",
        "routers[1].name: 'r1' is already used by routers[0]",
        "routers[0].servers[1]: unknown server 'b'",
        "routers[1]: needs password, password_file or key_file",
    ]
    for line in expected:
        assert any(p.startswith(line) for p in problems), (line, problems)
    assert len(problems) == len(expected), problems
    assert str(info.value).startswith("bad.yaml: 10 problems")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("servers: [", "not valid YAML at line 1"),
        ("- just\n- a list", "(top level): must be a mapping"),
        ("servers: []", "servers: must not be empty"),
        ("servers: [{name: 'bad name!', host: h}]", "servers[0].name:"),
        ("servers: [{name: s, host: h, pins: [abc]}]", "must be a SHA-256 fingerprint"),
        ("servers: [{name: s, host: h}]\nalerts: [{kind: webhook}]", "a webhook alert needs url"),
        ("servers: [{name: s, host: h}]\nmetrics: {listen: nowhere}", "metrics.listen:"),
        ("servers: [{name: s, host: h}]\npolicy: {trust_store: /no/such/file.pem}", "policy.trust_store:"),
        ("servers: [{name: s, host: h}]\ndefaults: {alerts: {}}", "defaults.alerts: is not a known key"),
        ("servers: [{name: s, host: h, ca_file: missing.pem}]", "servers[0].ca_file:"),
        (
            "servers: [{name: s, host: h}]\nrouters: [{name: r, host: h, username: u, password_file: pw,"
            " applet: A, servers: [s]}]",
            "routers[0].known_hosts: required",
        ),
        (
            "servers: [{name: s, host: h}]\nrouters: [{name: r, host: h, username: u, password_file: nope,"
            " applet: A, servers: [s], known_hosts: kh}]",
            "routers[0].password_file: cannot read",
        ),
        (
            "servers: [{name: s, host: h}]\nrouters: [{name: r, host: h, username: u, password: x,"
            " password_file: pw, applet: A, servers: [s], known_hosts: kh}]",
            "give either password or password_file",
        ),
    ],
    ids=["yaml-syntax", "not-mapping", "no-servers", "bad-name", "bad-pin", "webhook-url", "listen",
         "trust-store", "defaults-key", "ca-file", "no-known-hosts", "password-file-missing", "both-secrets"],
)
def test_problems_name_the_key_and_fix(base: Path, text: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text, base=base)
    assert any(fragment in p for p in info.value.problems), info.value.problems


def test_secret_from_environment(base: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EEMW_TEST_PW", "from-env-pw")
    text = MINIMAL.replace("password_file: pw", "password: '${EEMW_TEST_PW}'")
    loaded = parse_config(text, base=base)
    secret = loaded.config.routers[0].password
    assert secret is not None and secret.reveal() == "from-env-pw"
    assert loaded.warnings == []
    assert "from-env-pw" not in repr(loaded.config)


def test_missing_environment_variable_is_a_problem(base: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EEMW_UNSET_PW", raising=False)
    with pytest.raises(ConfigError, match=r"routers\[0\].password: environment variable EEMW_UNSET_PW is not set"):
        parse_config(MINIMAL.replace("password_file: pw", "password: '${EEMW_UNSET_PW}'"), base=base)


def test_clear_text_secret_warns_and_never_shows(base: Path) -> None:
    loaded = parse_config(MINIMAL.replace("password_file: pw", "password: hunter2-clear"), base=base)
    assert loaded.warnings == [
        "routers[0].password: secret written in clear in the config file; use password: ${ENV_VAR} "
        "or password_file: instead"
    ]
    assert "hunter2-clear" not in repr(loaded.config)
    assert "hunter2-clear" not in str(loaded.config.routers[0].password)


def test_example_config_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EEMWATCHD_ROUTER_PASSWORD", "x")
    cfg = load_config(REPO / "config" / "eemwatchd.example.yaml").config
    assert cfg.routers[0].applet == "MAIL-ALERT"


def test_check_config_command_exit_codes(base: Path) -> None:
    good = base / "good.yaml"
    good.write_text(MINIMAL)
    bad = base / "bad.yaml"
    bad.write_text("servers: [{name: s, host: h, port: 0}]\n")
    run = [sys.executable, "-m", "eemwatchd.cli", "check-config", "-c"]
    ok = subprocess.run([*run, str(good)], capture_output=True, text=True, timeout=30, check=False)
    assert ok.returncode == 0, ok.stderr
    assert "OK (1 servers, 1 routers)" in ok.stdout
    fail = subprocess.run([*run, str(bad)], capture_output=True, text=True, timeout=30, check=False)
    assert fail.returncode == 2
    assert "servers[0].port: must be 1-65535" in fail.stderr
    assert "Traceback" not in fail.stderr
    missing = subprocess.run([*run, str(base / "nope.yaml")], capture_output=True, text=True, timeout=30,
                             check=False)
    assert missing.returncode == 2
    assert "cannot read the file" in missing.stderr


def test_error_text_is_one_readable_block(base: Path) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(textwrap.dedent("servers: [{name: s, host: h, port: 0}]"), base=base, source="x.yaml")
    assert str(info.value) == "x.yaml: 1 problem\n  servers[0].port: must be 1-65535"
