"""Config keys: bounded finite durations, coherent windows, IOS-token names, the new keys, secrets, check-config."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from eemwatchd.cli import main
from eemwatchd.config import parse_config, parse_duration
from eemwatchd.errors import ConfigError
from tests.support.repo import REPO

INJECTION = "X\nconfigure terminal\nhostname PWNED"

ROUTER_KEYS = ("name: r1", "host: 192.0.2.1", "username: u", "password_file: pw", "applet: MAIL", "servers: [s]",
               "known_hosts: kh")
ROUTER = "{" + ", ".join(ROUTER_KEYS) + "}"


def config_text(*, server: str = "", router: str = "", policy: str = "", top: str = "") -> str:
    """A valid config with one key set (or replaced) in the server, the router or the policy."""
    keys = [k for k in ROUTER_KEYS if not router or k.split(":")[0] != router.split(":")[0]]
    return (f"servers: [{{name: s, host: h{', ' + server if server else ''}}}]\n"
            f"routers: [{{{', '.join([*keys, router] if router else keys)}}}]\n"
            f"policy: {{{policy}}}\n{top}")


def problems(text: str, config_dir: Path, *, strict_windows: bool = False) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, base=config_dir, strict_windows=strict_windows)
    return info.value.problems


# --- durations ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [float("inf"), float("nan"), "1e400"], ids=["inf", "nan", "overflow-text"])
def test_durations_must_be_finite(value: object) -> None:
    with pytest.raises(ValueError, match=r"duration"):
        parse_duration(value)


@pytest.mark.parametrize(
    ("key", "fragment"),
    [
        ("server: 'interval: .inf'", "servers[0].interval: must be a finite duration"),
        ("server: 'interval: .nan'", "servers[0].interval: must be a finite duration"),
        ("server: 'interval: 99999999999w'", "servers[0].interval: must be between 1s and 7d"),
        ("server: 'interval: 500ms'", "servers[0].interval: must be between 1s and 7d (got 0.5s)"),
        ("server: 'interval: 8d'", "servers[0].interval: must be between 1s and 7d (got 8d)"),
        ("router: 'interval: 2s'", "routers[0].interval: must be between 5s and 7d (got 2s)"),
        ("router: 'timeouts: {connect: 0s}'", "routers[0].timeouts.connect: must be between 1s and 1h"),
        ("server: 'timeouts: {total: 2h}'", "servers[0].timeouts.total: must be between 1s and 1h"),
        ("policy: 'recent: 0s'", "policy.recent: must be between 1s and 365d (got 0s)"),
        ("policy: 'recent: 400d'", "policy.recent: must be between 1s and 365d (got 400d)"),
        ("policy: 'retention: 366d'", "policy.retention: must be between 0s and 365d"),
        ("policy: 'expiry_warning: 2000d'", "policy.expiry_warning: must be between 0s and 365d"),
        ("policy: 'alert_reminder: 10s'", "policy.alert_reminder: must be between 1m and 30d"),
        ("top: 'alerts: [{kind: log, timeout: 1h}]'", "alerts[0].timeout: must be between 1s and 5m"),
    ],
    ids=lambda v: v.split("'")[1] if "'" in v else v[:20],
)
def test_each_duration_has_bounds(config_dir: Path, key: str, fragment: str) -> None:
    where, value = key.split(": ", 1)
    found = problems(config_text(**{where: value.strip("'")}), config_dir)
    assert any(p.startswith(fragment) for p in found), found


def test_defaults_within_bounds_load(config_dir: Path) -> None:
    cfg = parse_config(config_text(), base=config_dir).config
    assert (cfg.routers[0].interval, cfg.policy.alert_reminder) == (3600.0, 86400.0)
    assert cfg.routers[0].legacy_algorithms is False
    assert cfg.servers[0].account is None


# --- windows -------------------------------------------------------------------------------------------


def test_recent_shorter_than_confirmations_times_interval_is_a_problem_when_strict(config_dir: Path) -> None:
    text = config_text(server="interval: 6h", policy="recent: 12h, confirmations: 2")
    assert problems(text, config_dir, strict_windows=True) == [
        "policy.recent: 12h is too short: a chain counts after 2 sightings (policy.confirmations) and "
        "servers[0] (s) is fetched every 6h, so a chain cannot be confirmed while it is still recent; make "
        "recent longer than 12h (the default is 14d) or fetch more often"
    ]


def test_the_same_windows_are_a_problem_by_default_and_a_warning_only_when_asked(config_dir: Path) -> None:
    text = config_text(server="interval: 6h", policy="recent: 12h")
    assert problems(text, config_dir, strict_windows=True)[0].startswith("policy.recent: 12h is too short")
    with pytest.raises(ConfigError):
        parse_config(text, base=config_dir)
    loaded = parse_config(text, base=config_dir, strict_windows=False)
    assert len(loaded.warnings) == 1 and loaded.warnings[0].startswith("policy.recent: 12h is too short")


def test_the_longest_interval_counts(config_dir: Path) -> None:
    text = ("servers: [{name: a, host: h, interval: 1m}, {name: b, host: h, interval: 1d}]\n"
            "policy: {recent: 36h, confirmations: 2}\n")
    found = problems(text, config_dir, strict_windows=True)
    assert found[0].startswith("policy.recent: 36h is too short") and "servers[1] (b)" in found[0], found
    parse_config(text.replace("36h", "49h"), base=config_dir, strict_windows=True)


def test_step_and_connect_must_fit_in_total(config_dir: Path) -> None:
    found = problems(config_text(server="timeouts: {step: 5m, total: 1m}",
                                 router="timeouts: {connect: 2m, total: 1m}"), config_dir)
    assert found == [
        "servers[0].timeouts: step (5m) is longer than total (1m); total bounds the whole session, so make it "
        "at least 5m",
        "routers[0].timeouts: connect (2m) is longer than total (1m); total bounds the whole session, so make "
        "it at least 2m",
    ]


# --- values that reach router commands are IOS tokens -------------------------------------------------


@pytest.mark.parametrize(
    ("where", "value", "expected"),
    [
        ("router", 'applet: "X\\nconfigure terminal\\nhostname PWNED"',
         'routers[0].applet: "X\\nconfigure terminal\\nhostname PWNED" contains a line break; an EEM applet '
         "name is one word (letters, digits, - _ . :)"),
        ("router", "applet: 'MAIL ALERT'", 'routers[0].applet: "MAIL ALERT" contains a space'),
        ("router", "applet: 'MAIL|x'", "routers[0].applet: \"MAIL|x\" contains '|'"),
        ("router", "username: 'admin?'", "routers[0].username: \"admin?\" contains '?'"),
        ("router", 'username: "u\\r\\nwrite erase"', 'routers[0].username: "u\\r\\nwrite erase" contains a line '
         "break; a user name is one word"),
        ("router", "adopt: [CA-Root, '!x']", "routers[0].adopt[1]: \"!x\" starts with '!'"),
        ("router", "adopt: [CA.Root]", "routers[0].adopt[0]: \"CA.Root\" contains '.'; a trustpoint name"),
        ("policy", 'trustpoint_prefix: "E\\nno crypto pki trustpoint X"', "policy.trustpoint_prefix: "
         '"E\\nno crypto pki trustpoint X" contains a line break'),
        ("policy", "trustpoint_prefix: ABCDEFGHIJKLMNOPQ",
         "policy.trustpoint_prefix: 'ABCDEFGHIJKLMNOPQ' is 17 characters; a trustpoint name is the prefix plus "
         "at least 16 hex characters of the fingerprint, within the 32 characters of a trustpoint name, so the "
         "prefix has at most 16"),
        ("policy", "trustpoint_prefix: 1EEMW-", "policy.trustpoint_prefix: '1EEMW-' must start with a letter"),
    ],
    ids=["applet-injection", "applet-space", "applet-pipe", "username-help", "username-crlf", "adopt-comment",
         "adopt-dot", "prefix-injection", "prefix-too-long", "prefix-digit"],
)
def test_values_reaching_router_commands_are_one_ios_token(config_dir: Path, where: str, value: str,
                                                           expected: str) -> None:
    found = problems(config_text(**{where: value}), config_dir)
    assert any(p.startswith(expected) for p in found), found


def test_injection_through_defaults_names_every_router(config_dir: Path) -> None:
    text = ('defaults: {routers: {applet: "X\\nhostname PWNED"}}\nservers: [{name: s, host: h}]\n'
            "routers: [{name: a, host: h, username: u, password_file: pw, servers: [s], known_hosts: kh},\n"
            "          {name: b, host: h, username: u, password_file: pw, servers: [s], known_hosts: kh}]\n")
    found = problems(text, config_dir)
    assert [p.split(":")[0] for p in found] == ["routers[0].applet", "routers[1].applet"]


def test_a_sixteen_character_prefix_is_the_longest(config_dir: Path) -> None:
    cfg = parse_config(config_text(policy="trustpoint_prefix: ABCDEFGHIJKLMNOP"), base=config_dir).config
    assert cfg.policy.trustpoint_prefix == "ABCDEFGHIJKLMNOP"


# --- new keys -----------------------------------------------------------------------------------------


def test_router_interval_in_defaults_and_per_router(config_dir: Path) -> None:
    text = ("defaults: {routers: {interval: 15m}}\nservers: [{name: s, host: h}]\n"
            f"routers: [{ROUTER}, {ROUTER.replace('r1', 'r2')[:-1]}, interval: 2h}}]\n")
    assert [r.interval for r in parse_config(text, base=config_dir).config.routers] == [900.0, 7200.0]


def test_legacy_algorithms_warns_for_every_router_that_sets_it(config_dir: Path) -> None:
    text = ("defaults: {routers: {legacy_algorithms: true}}\nservers: [{name: s, host: h}]\n"
            f"routers: [{ROUTER}, {ROUTER.replace('r1', 'r2')[:-1]}, legacy_algorithms: false}}]\n")
    loaded = parse_config(text, base=config_dir)
    assert [r.legacy_algorithms for r in loaded.config.routers] == [True, False]
    assert loaded.warnings == [
        "routers[0].legacy_algorithms: SHA-1 key exchange, MACs and host-key signatures are allowed for r1; "
        "keep this only for an IOS image that offers nothing newer"
    ]


ACCOUNT = "account: {{username: {user}, password_file: smtp.pw, from: {sender}}}"


def test_account_loads_with_its_secret(config_dir: Path) -> None:
    loaded = parse_config(config_text(server=ACCOUNT.format(user="relay-user", sender="routers@example.net")),
                          base=config_dir)
    account = loaded.config.servers[0].account
    assert account is not None
    assert (account.username, account.mail_from, account.password.reveal()) == (
        "relay-user", "routers@example.net", "app-pass-123")
    assert "app-pass-123" not in repr(loaded.config)


@pytest.mark.parametrize(
    ("account", "expected"),
    [
        (ACCOUNT.format(user="alerts@gmail.com", sender="alerts@gmail.com"),
         "servers[0].account.username: 'alerts@gmail.com' contains '@': EEM splits _email_server at the first "
         "'@' (Cisco bug CSCwe75439), so the login name cannot hold one; use an account whose login name has no "
         "'@' (an app-specific or API login)"),
        (ACCOUNT.format(user="a:b", sender="r@example.net"), "servers[0].account.username: 'a:b' contains ':'"),
        (ACCOUNT.format(user="'a b'", sender="r@example.net"), 'servers[0].account.username: "a b" contains a '
         "space"),
        ("account: {username: relay, password_file: smtp.pw}",
         "servers[0].account.from: is required: the login name cannot be an address (no '@')"),
        (ACCOUNT.format(user="relay", sender="nobody"), "servers[0].account.from: 'nobody' is not a mail address"),
        (ACCOUNT.format(user="relay", sender='"r@example.net\\n"'), "servers[0].account.from: "
         '"r@example.net\\n" contains a line break'),
        ("account: {username: relay, password: 'p@ss', from: r@example.net}",
         "servers[0].account.password: contains '@': EEM splits _email_server at the first '@'; use a password "
         "without '@' (value not shown)"),
        ("account: {username: relay, password: 'p ss?', from: r@example.net}",
         "servers[0].account.password: contains a space; user:password in _email_server is one word of "
         "printable ASCII characters (value not shown)"),
        ("account: {username: relay, from: r@example.net}", "servers[0].account.password: is required"),
    ],
    ids=["at-in-login", "colon-in-login", "space-in-login", "no-from", "from-not-address", "from-injection",
         "at-in-password", "space-in-password", "no-password"],
)
def test_account_refuses_what_eem_cannot_use(config_dir: Path, account: str, expected: str) -> None:
    found = problems(config_text(server=account), config_dir)
    assert any(p.startswith(expected) for p in found), found
    assert not any("p@ss" in p or "p ss?" in p for p in found)


# --- secrets ------------------------------------------------------------------------------------------


def test_config_secrets_lists_every_secret_once(config_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EEMW_TEST_ENABLE", "enable-secret-1")
    monkeypatch.setenv("EEMW_TEST_ALERT", "alert-pass-1")
    text = config_text(
        server=ACCOUNT.format(user="relay", sender="r@example.net"),
        router="enable_secret: '${EEMW_TEST_ENABLE}'",
        top="alerts: [{kind: email, smtp_host: m, mail_from: a@b.c, mail_to: [n@b.c], password: '${EEMW_TEST_ALERT}'}]",
    )
    cfg = parse_config(text, base=config_dir).config
    assert sorted(cfg.secrets()) == sorted(["s3cret-pw", "enable-secret-1", "alert-pass-1", "app-pass-123"])


def test_secrets_are_deduplicated(config_dir: Path) -> None:
    text = f"servers: [{{name: s, host: h}}]\nrouters: [{ROUTER}, {ROUTER.replace('r1', 'r2')}]\n"
    assert parse_config(text, base=config_dir).config.secrets() == ["s3cret-pw"]


# --- the example and check-config ---------------------------------------------------------------------


def test_example_documents_and_loads_the_account(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("EEMWATCHD_ROUTER_PASSWORD", "x")
    monkeypatch.setenv("EEMWATCHD_SMTP_PASSWORD", "y")
    example = (REPO / "config" / "eemwatchd.example.yaml").read_text()
    # Uncomment the documented account block.
    enabled = re.sub(r"(?m)^    # (account:|  username:|  password:|  from:)", r"    \1", example)
    assert enabled != example
    cfg = parse_config(enabled, base=tmp_path, strict_windows=True).config
    assert cfg.servers[0].account is not None and cfg.servers[0].account.mail_from == "routers@example.net"
    for key in ("interval", "legacy_algorithms", "alert_reminder", "account", "trustpoint_prefix"):
        assert f"{key}:" in example, key


def run_check_config(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["check-config", "-c", str(path)])
    out, err = capsys.readouterr()
    return code, out, err


def test_check_config_prints_warnings_and_ok(config_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = config_dir / "c.yaml"
    file.write_text(config_text(router="legacy_algorithms: true"))
    code, out, err = run_check_config(file, capsys)
    assert code == 0, err
    assert out.strip() == f"{file}: OK (1 servers, 1 routers)"
    assert err.strip() == ("warning: routers[0].legacy_algorithms: SHA-1 key exchange, MACs and host-key "
                           "signatures are allowed for r1; keep this only for an IOS image that offers nothing "
                           "newer")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (config_text(policy="recent: 1h"), "  policy.recent: 1h is too short"),
        (config_text(router='applet: "X\\nconfigure terminal"'), '  routers[0].applet: "X\\nconfigure terminal" '
         "contains a line break"),
        ("a: &x 1\nb: *x\n", "  YAML aliases are not allowed (line 2)"),
        ("servers: [{name: s, host: h}]\nservers: []\n", "  key 'servers' appears twice (line 1 and line 2)"),
    ],
    ids=["windows", "injection", "alias", "duplicate"],
)
def test_check_config_refuses_with_the_problem(config_dir: Path, capsys: pytest.CaptureFixture[str], text: str,
                                               expected: str) -> None:
    file = config_dir / "c.yaml"
    file.write_text(text)
    code, out, err = run_check_config(file, capsys)
    assert code == 2 and out == ""
    assert err.startswith(f"{file}: 1 problem\n{expected}"), err
    assert "Traceback" not in err


def test_check_config_on_invalid_utf8(config_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = config_dir / "c.yaml"
    file.write_bytes(b"servers: [{name: \xff}]\n")
    code, _, err = run_check_config(file, capsys)
    assert code == 2
    assert err.strip() == f"{file}: 1 problem\n  not valid UTF-8 at byte offset 17 (line 1); save the file as UTF-8"


def test_secret_files_may_live_in_systemds_credentials_directory(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "router-password").write_text("from-credentials\n")
    text = config_text(router="password_file: '${CREDENTIALS_DIRECTORY}/router-password'")
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    assert any("CREDENTIALS_DIRECTORY} is not set" in p for p in problems(text, tmp_path))
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    config = parse_config(text, base=tmp_path).config
    assert config.routers[0].password is not None and config.routers[0].password.reveal() == "from-credentials"
