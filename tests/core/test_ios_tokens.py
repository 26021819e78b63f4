"""IOS tokens: a name that reaches a router command line is exactly one safe word, or a reason why not."""

from __future__ import annotations

import pytest

from eemwatchd.core.ios.tokens import (
    APPLET_NAME_MAX,
    TRUSTPOINT_NAME_MAX,
    check_applet_name,
    check_ios_token,
    check_trustpoint_name,
    check_username,
    show_value,
)

INJECTION = "X\nconfigure terminal\nhostname PWNED"


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("", "is empty"),
        (INJECTION, "contains a line break"),
        ("X\rY", "contains a line break"),
        ("MAIL ALERT", "contains a space"),
        ("MAIL\tALERT", "control character (TAB)"),
        ("MAIL\x1b[2J", "control character (ESC)"),
        ("MAIL\x00", "control character (NUL)"),
        ("MAIL\x7f", "control character (DEL)"),
        ("MAIL\u00a0ALERT", "space character (U+00A0)"),
        ("MAİL", "not ASCII (U+0130)"),
        ("MAIL?", "contains '?'"),
        ("show|include", "contains '|'"),
        ('MAIL"X', "quote"),
        ("MAIL'X", "quote"),
        ("!MAIL", "starts with '!'"),
        ("#MAIL", "starts with '#'"),
        ("A" * 65, "is 65 characters, more than the 64"),
    ],
    ids=["empty", "injection-lf", "cr", "space", "tab", "esc", "nul", "del", "nbsp", "non-ascii", "help",
         "pipe", "double-quote", "single-quote", "bang-comment", "hash-comment", "too-long"],
)
def test_unsafe_tokens_have_a_reason(value: str, fragment: str) -> None:
    reason = check_ios_token(value, what="a thing")
    assert reason is not None and fragment in reason, reason
    assert "\n" not in reason and "\r" not in reason
    assert reason.endswith("a thing is one word of printable ASCII characters")


@pytest.mark.parametrize(
    "value",
    ["MAIL-ALERT", "a", "A" * 64, "user@example.net", "x!y", "a#b", "r1.lab:2", "$_x", "100%"],
    ids=["applet", "one-char", "max-length", "at-sign", "inner-bang", "inner-hash", "dots-colon", "dollar",
         "percent"],
)
def test_safe_tokens_pass(value: str) -> None:
    assert check_ios_token(value, what="a thing") is None


def test_the_injection_example_reads_as_the_issue_asks() -> None:
    assert check_applet_name(INJECTION) == (
        '"X\\nconfigure terminal\\nhostname PWNED" contains a line break; '
        "an EEM applet name is one word (letters, digits, - _ . :)"
    )


@pytest.mark.parametrize(
    ("check", "good", "bad", "fragment"),
    [
        (check_applet_name, "MAIL-ALERT.v2:x", "MAIL/ALERT", "contains '/'"),
        (check_applet_name, "A" * APPLET_NAME_MAX, "A" * (APPLET_NAME_MAX + 1), "more than the 64"),
        (check_trustpoint_name, "EEMW-0123456789ABCDEF", "EEMW.1", "contains '.'"),
        (check_trustpoint_name, "T" * TRUSTPOINT_NAME_MAX, "T" * (TRUSTPOINT_NAME_MAX + 1), "more than the 32"),
        (check_username, "noc+eem@example.net", "noc eem", "contains a space"),
    ],
    ids=["applet-slash", "applet-length", "trustpoint-dot", "trustpoint-length", "username-space"],
)
def test_kinds_narrow_alphabet_and_length(check: object, good: str, bad: str, fragment: str) -> None:
    assert callable(check)
    assert check(good) is None
    reason = check(bad)
    assert reason is not None and fragment in reason, reason


def test_secret_values_stay_out_of_the_reason() -> None:
    reason = check_ios_token("hunter2 pw", what="a password", show=False)
    assert reason == "contains a space; a password is one word of printable ASCII characters"


def test_shown_value_is_escaped_and_cut() -> None:
    assert show_value('a"b\x1b') == '"a\\"b\\x1b"'
    assert show_value("A" * 100) == '"' + "A" * 40 + '..."'
