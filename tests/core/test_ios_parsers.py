"""Parsers against every shared running-config / clock / log / EEM history transcript, and variants."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from eemwatchd.core.certificate import Certificate
from eemwatchd.core.ios.formats import render_certificate_block
from eemwatchd.core.ios.parsers import (
    HistoryEvent,
    parse_clock_zones,
    parse_event_history,
    parse_log_lines,
    parse_mail_action,
    parse_running_config,
    parse_show_clock,
)
from eemwatchd.errors import ParseError
from tests.support.transcripts import transcript

CSR_17_3 = "show_running-config_crypto_pki_section__gh_ansible_facts_csr1000v_17_3.txt"
CISCOCONFPARSE = "show_running-config_crypto_pki_excerpt__ciscoconfparse_test.txt"
NVRAM_REFS = "show_startup-config_crypto_pki_nvram_refs__gh_ie_switch_17_3.txt"
HEAD = "show_running-config_head__gh_ansible_facts_csr1000v_17_3.txt"

# Cisco Licensing Root CA (SLA-TrustPoint). INDEX.md: cross-checked against genie trustpoints status.
SLA_SHA1 = "5CA95FB6 E2980EC1 5AFB681B BB7E62B5 AD3FA8B8"


def _summary(text: str) -> dict[str, list[tuple[str, str, str | None, str | None]]]:
    trustpoints = parse_running_config(text).trustpoints
    return {
        tp.name: [
            (h.kind, h.serial, h.certificate.sha1_ios if h.certificate else None, h.storage)
            for h in tp.certificates
        ]
        for tp in trustpoints
    }


@pytest.mark.parametrize(
    ("name", "hostname", "expected"),
    [
        pytest.param(
            CSR_17_3,
            None,
            {
                "TP-self-signed-3177340814": [
                    ("self-signed", "01", "894E89AD 8B9C4520 47568D9A 83AD4724 DBE2722A", None)
                ],
                "SLA-TrustPoint": [("ca", "01", SLA_SHA1, None)],
            },
            id="csr1000v-17.3-raw-tabs",
        ),
        pytest.param(
            CISCOCONFPARSE,
            "Test",
            {
                "TP-self-signed-1217560721": [
                    ("self-signed", "01", "46A28D7A 91CAF9F2 5B73F6C7 68DED7CF 7021DBC2", None)
                ],
                "SLA-TrustPoint": [("ca", "01", SLA_SHA1, None)],
            },
            id="ciscoconfparse-expanded-tabs-no-trailing-space",
        ),
        pytest.param(
            NVRAM_REFS,
            "groupswitch-batman",
            {
                "TP-self-signed-703295296": [("self-signed", "01", None, "nvram:IOS-Self-Sig#2.cer")],
                "SLA-TrustPoint": [("ca", "01", None, "nvram:CiscoLicensi#1CA.cer")],
            },
            id="startup-config-nvram-refs",
        ),
        pytest.param(HEAD, "csr1", {}, id="config-head-only"),
    ],
)
def test_running_config_transcripts(name: str, hostname: str | None, expected: dict[str, object]) -> None:
    text = transcript(name)
    assert _summary(text) == expected
    assert parse_running_config(text).hostname == hostname


@pytest.mark.parametrize("name", [CSR_17_3, CISCOCONFPARSE])
def test_running_config_hex_is_byte_exact(name: str) -> None:
    """Every decoded certificate verifies its own signature: a single wrong hex digit would break it."""
    trustpoints = parse_running_config(transcript(name)).trustpoints
    certs = [h.certificate for tp in trustpoints for h in tp.certificates]
    assert certs
    for cert in certs:
        assert cert is not None
        assert cert.is_self_signed
        assert cert.serial_ios == "01"


def _drop_trailing_spaces(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.split("\n"))


def _strip_indentation(text: str) -> str:
    return "\n".join(line.strip() for line in text.split("\n"))


def _without_separators(text: str) -> str:
    return "\n".join(line for line in text.split("\n") if line.strip() != "!")


def _with_pager(text: str) -> str:
    lines = text.split("\n")
    lines.insert(
        25, " --More-- \x08\x08\x08\x08\x08\x08\x08\x08\x08        \x08\x08\x08\x08\x08\x08\x08\x08\x08"
    )
    return "\n".join(lines)


def _with_blank_lines(text: str) -> str:
    return text.replace(" \n  ", " \n\n  ", 3)


def _missing_quit(text: str) -> str:
    return text.replace("  \tquit\n!", "!", 1)


@pytest.mark.parametrize(
    "variant",
    [
        pytest.param(lambda t: t, id="as-captured"),
        pytest.param(lambda t: t.expandtabs(8), id="tabs-expanded"),
        pytest.param(_drop_trailing_spaces, id="no-trailing-spaces"),
        pytest.param(lambda t: t.replace("\n", "\r\n"), id="crlf"),
        pytest.param(lambda t: t.replace("\n", "\r\r\n"), id="cr-cr-lf"),
        pytest.param(_strip_indentation, id="indentation-lost"),
        pytest.param(_without_separators, id="no-bang-separators"),
        pytest.param(_with_pager, id="pager-debris"),
        pytest.param(_with_blank_lines, id="blank-lines-in-hex"),
        pytest.param(lambda t: t.lower(), id="lowercase-hex"),
        pytest.param(_missing_quit, id="missing-quit-before-bang"),
    ],
)
def test_running_config_variants_give_the_same_der(variant: object) -> None:
    text = transcript(CSR_17_3)
    assert callable(variant)
    reference = _summary(text)
    summary = _summary(variant(text))
    if text.lower() == variant(text):
        # names are lowercased too; compare the certificates only
        assert [v for v in summary.values()] == [v for v in reference.values()]
    else:
        assert summary == reference


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        pytest.param(
            lambda t: t.replace("30820321 30820209", "30820321 3082Z209", 1),
            "expected hex or quit",
            id="non-hex-word",
        ),
        pytest.param(lambda t: t.replace("  D697DF7F 28\n", "  D697DF7F\n", 1), "not a DER", id="truncated"),
        pytest.param(
            lambda t: t.replace("  D697DF7F 28\n", "  D697DF7F 2\n", 1), "odd number", id="odd-digits"
        ),
        pytest.param(
            lambda t: t.replace(" certificate ca 01", " certificate ca 02", 1),
            "serial 01",
            id="serial-mismatch",
        ),
        pytest.param(
            lambda t: t.replace("  30820321 30820209", "  some odd text", 1),
            "expected hex or quit",
            id="odd-line-in-hex",
        ),
    ],
)
def test_running_config_bad_hex_is_a_problem_of_that_block_and_the_rest_is_still_read(
    mutate: object, reason: str
) -> None:
    assert callable(mutate)
    parsed = parse_running_config(mutate(transcript(CSR_17_3)))
    [problem] = parsed.problems
    assert reason in problem.reason
    assert problem.line and problem.block.startswith("crypto pki certificate chain ")
    assert problem.trustpoint is not None and parsed.unreadable == {problem.trustpoint}
    # every other trustpoint is read as before
    whole = parse_running_config(transcript(CSR_17_3))
    assert [tp for tp in parsed.trustpoints if tp.name != problem.trustpoint] == [
        tp for tp in whole.trustpoints if tp.name != problem.trustpoint]


def test_running_config_round_trips_iosformat_rendering() -> None:
    trustpoints = parse_running_config(transcript(CSR_17_3)).trustpoints
    cert = trustpoints[1].ca_certificates[0]
    identity = trustpoints[0].certificates[0].certificate
    assert identity is not None
    text = "\n".join(
        [
            "crypto pki trustpoint NEW",
            " enrollment terminal",
            " fingerprint " + cert.sha1_hex.lower(),
            " revocation-check none",
            " chain-validation stop",
            " rsakeypair NEW",
            "crypto pki certificate chain NEW",
            *render_certificate_block(identity, kind=""),
            *render_certificate_block(cert),
        ]
    )
    (tp,) = parse_running_config(text).trustpoints
    assert (tp.enrollment, tp.revocation_check, tp.chain_validation) == ("terminal", "none", "stop")
    assert tp.fingerprint == cert.sha1_hex
    assert tp.other_lines == ("rsakeypair NEW",)
    assert [(h.kind, h.certificate) for h in tp.certificates] == [("identity", identity), ("ca", cert)]


EEM_CONFIG = """\
hostname edge-1
!
event manager environment _email_server alerts:app-pass-1234@smtp.gmail.com
event manager environment _email_to noc@example.com
event manager environment _email_from alerts@example.com
event manager environment _email_subject "Router alert from edge-1"
event manager environment _email_note two words, unquoted
event manager applet MAIL-TEST authorization bypass
 description "test mail"
 event none maxrun 90
 action 0010 mail server "$_email_server" to "$_email_to" from "$_email_from" subject "$_email_subject" \
body "EEM mail test" secure tls port 587
 action 0020 syslog msg "mail sent to $_email_to"
event manager applet WATCHDOG
 event timer watchdog time 3600
 action 1.0 mail server smtp.example.com to noc@example.com from r1@example.com cc ops@example.com \
subject Hourly body "still alive"
 action 2.0 cli command "enable"
!
end
"""


def test_eem_environment_and_applets() -> None:
    parsed = parse_running_config(EEM_CONFIG)
    env, applets, hostname = parsed.environment, parsed.applets, parsed.hostname
    assert hostname == "edge-1"
    assert env == {
        "_email_server": "alerts:app-pass-1234@smtp.gmail.com",
        "_email_to": "noc@example.com",
        "_email_from": "alerts@example.com",
        "_email_subject": "Router alert from edge-1",
        "_email_note": "two words, unquoted",
    }
    test, watchdog = applets
    assert (test.name, test.event, test.maxrun, test.is_event_none) == ("MAIL-TEST", "none", 90.0, True)
    (mail,) = test.mail_actions
    assert (mail.label, mail.server, mail.to, mail.from_, mail.subject, mail.body) == (
        "0010",
        "$_email_server",
        "$_email_to",
        "$_email_from",
        "$_email_subject",
        "EEM mail test",
    )
    assert (mail.secure, mail.port, mail.cc) == ("tls", 587, None)
    assert test.syslog_messages_after_mail() == ("mail sent to $_email_to",)
    assert test.other_lines == ('description "test mail"',)
    assert (watchdog.event, watchdog.maxrun, watchdog.is_event_none) == (
        "timer watchdog time 3600",
        None,
        False,
    )
    (plain,) = watchdog.mail_actions
    assert (plain.server, plain.cc, plain.subject, plain.body, plain.secure, plain.port) == (
        "smtp.example.com",
        "ops@example.com",
        "Hourly",
        "still alive",
        None,
        None,
    )
    assert [(a.label, a.verb, a.arguments) for a in watchdog.other_actions] == [
        ("2.0", "cli", 'command "enable"')
    ]
    assert "app-pass-1234" not in repr(mail)


@pytest.mark.parametrize(
    ("arguments", "reason"),
    [
        pytest.param('to "a@b" subject x body y', "has no server", id="no-server"),
        pytest.param("server s to a port five", "port is not a number", id="bad-port"),
    ],
)
def test_mail_action_errors(arguments: str, reason: str) -> None:
    with pytest.raises(ParseError, match=reason):
        parse_mail_action("10", arguments)


CET = timezone(timedelta(hours=1), "CET")


@pytest.mark.parametrize(
    ("text", "zones", "expected"),
    [
        pytest.param(
            "*22:04:31.123 UTC Thu Nov 26 2026",
            None,
            datetime(2026, 11, 26, 22, 4, 31, 123000, UTC),
            id="star-not-set",
        ),
        pytest.param(
            ".22:04:31.123 UTC Thu Nov 26 2026",
            None,
            datetime(2026, 11, 26, 22, 4, 31, 123000, UTC),
            id="dot-not-synced",
        ),
        pytest.param(
            "22:04:31 GMT Thu Nov 26 2026\r\n",
            None,
            datetime(2026, 11, 26, 22, 4, 31, tzinfo=UTC),
            id="synced-no-msec-crlf",
        ),
        pytest.param(
            "router#show clock\n 9:01:02.5 UTC Mon Mar 2 2026\nrouter#",
            None,
            datetime(2026, 3, 2, 9, 1, 2, 500000, UTC),
            id="with-echo-and-prompt",
        ),
        pytest.param(
            "23:04:31.123 CET Thu Nov 26 2026",
            "clock timezone CET 1 0",
            datetime(2026, 11, 26, 22, 4, 31, 123000, UTC),
            id="configured-zone",
        ),
        pytest.param(
            "12:00:00.000 CEST Fri Jul 3 2026",
            "clock timezone CET 1 0\nclock summer-time CEST recurring last Sun Mar 2:00 last Sun Oct 3:00",
            datetime(2026, 7, 3, 10, 0, 0, tzinfo=UTC),
            id="summer-time",
        ),
        pytest.param(
            "07:00:00.000 IST Fri Jul 3 2026",
            "clock timezone IST 5 30",
            datetime(2026, 7, 3, 1, 30, 0, tzinfo=UTC),
            id="half-hour-zone",
        ),
        pytest.param(
            "07:00:00.000 EST Fri Jul 3 2026",
            "clock timezone EST -5 0",
            datetime(2026, 7, 3, 12, 0, 0, tzinfo=UTC),
            id="negative-zone",
        ),
    ],
)
def test_show_clock(text: str, zones: str | None, expected: datetime) -> None:
    kwargs = {"zones": parse_clock_zones(zones)} if zones else {}
    assert parse_show_clock(text, **kwargs) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        pytest.param("*22:04:31.123 CET Thu Nov 26 2026", "unknown time zone 'CET'", id="unknown-zone"),
        pytest.param("% Invalid input detected at '^' marker.", "expected a line like", id="error-text"),
        pytest.param("*22:04:31.123 UTC Thu Feb 30 2026", "not a valid date", id="impossible-date"),
    ],
)
def test_show_clock_errors(text: str, reason: str) -> None:
    with pytest.raises(ParseError, match=reason):
        parse_show_clock(text)


def test_log_fmpd_failure_lines() -> None:
    lines = parse_log_lines(transcript("eem_applet_mail_fmpd_smtp_error__gh_iosv.txt"))
    tags = [line.tag for line in lines]
    assert tags[-2:] == ["%HA_EM-3-FMPD_SMTP", "%HA_EM-3-FMPD_ERROR"]
    assert lines[-1].message == "Error executing applet LOOP0 statement 7.0"
    assert lines[-1].timestamp == "*Dec  6 20:17:37.658"
    status = next(line for line in lines if line.message.startswith("LOOP0: Interface status is:"))
    assert "Loopback0 is up, line protocol is up" in status.message  # continuation lines kept


def test_log_after_marker() -> None:
    text = transcript("send_log_severity_userlog__gh_rt01_iol.txt")
    lines = parse_log_lines(text, marker="SVC-ERR3")
    assert [(line.tag, line.message) for line in lines][:2] == [
        ("%SYS-4-USERLOG_WARNING", "Message from tty0(user id: ): SVC-WARN4"),
        ("%SYS-5-USERLOG_NOTICE", "Message from tty0(user id: ): SVC-NOTE5"),
    ]
    assert lines[-1].tag == "%LINK-5-UPDOWN"
    with pytest.raises(ParseError, match="not in the log buffer"):
        parse_log_lines(text, marker="eemwatchd-test-fire-0123456789ab")


@pytest.mark.parametrize(
    ("name", "first_tag", "count"),
    [
        pytest.param(
            "show_logging_PKI-3-CRL_FETCH_FAIL__gh_dnac_switch.txt", "%PKI-3-CRL_FETCH_FAIL", 1, id="dnac"
        ),
        pytest.param(
            "show_logging_include_HA_EM_and_USERLOG__gh_ciscolive_csr1000v.txt",
            "%HA_EM-6-LOG",
            2,
            id="ciscolive",
        ),
        pytest.param(
            "eem_mail_action_debug_fmpd_smtp_timeout__gh_networklessons_ios.txt",
            "%OSPF-5-ADJCHG",
            14,
            id="networklessons-no-timestamps",
        ),
        pytest.param("event_manager_run_syslog_msg__gh_freeztp_c3850.txt", "%HA_EM-6-LOG", 14, id="freeztp"),
        pytest.param(
            "send_log_userlog_info_vty__gh_lambreca_cmdrunner.txt", "%SYS-6-USERLOG_INFO", 2, id="vty"
        ),
        pytest.param(
            "show_logging_process_ios_module_pki__genie_c8000v.txt", None, 0, id="btrace-not-syslog"
        ),
    ],
)
def test_log_transcripts(name: str, first_tag: str | None, count: int) -> None:
    lines = parse_log_lines(transcript(name))
    assert len(lines) == count
    if first_tag:
        assert lines[0].tag == first_tag


def test_log_continuation_and_pri() -> None:
    (crl,) = parse_log_lines(transcript("show_logging_PKI-3-CRL_FETCH_FAIL__gh_dnac_switch.txt"))
    assert crl.message == "CRL fetch for trustpoint DNAC-CA failed\nReason : Enrollment URL not configured."
    (pri,) = parse_log_lines(
        "<188>233: *Sep 13 09:18:12.291: %SYS-4-USERLOG_WARNING: Message from tty0(user id: ): X"
    )
    assert (pri.sequence, pri.timestamp) == (233, "*Sep 13 09:18:12.291")
    assert str(pri) == "000233: *Sep 13 09:18:12.291: %SYS-4-USERLOG_WARNING: Message from tty0(user id: ): X"


def test_certificate_fixture_sanity() -> None:
    """The SLA root decodes the same from both running-config transcripts (two independent captures)."""
    a = parse_running_config(transcript(CSR_17_3)).trustpoints[1].ca_certificates[0]
    b = parse_running_config(transcript(CISCOCONFPARSE)).trustpoints[1].ca_certificates[0]
    assert isinstance(a, Certificate)
    assert a == b


# --- show event manager history events -----------------------------------------------------------------

HISTORY = "show_event_manager_history_events__gh_rolling_pcap_iosxe.txt"
CML_IOL = "show_logging_seqno_and_event_history__gh_cml_iol.txt"


def test_event_history_real_transcripts() -> None:
    # command echo, blank lines around the header and the row (as published)
    assert parse_event_history(transcript(HISTORY)) == [
        HistoryEvent(1, 72991, "Actv", "success", "Wed Mar10 13:22:46 2021", "timer watchdog", "rolling-pcap"),
    ]
    table = transcript(CML_IOL).split("\n\n")[-1]
    rows = parse_event_history(table)
    assert [(r.number, r.job_id, r.status, r.time_text, r.event_type, r.name) for r in rows] == [
        (1, 1, "success", "Sun May17 18:06:42 2026", "syslog", "P09_EEM_LOOP99_DOWN"),
        (2, 2, "success", "Sun May17 23:44:16 2026", "syslog", "P09_EEM_LOOP99_DOWN"),
    ]


HEADER = "No.  Job Id Proc Status   Time of Event            Event Type        Name"


@pytest.mark.parametrize(("row", "time_text", "status", "event_type", "name", "kind"), [
    ("3    12     Actv success  Tue Dec 1 23:49:35 2026  none              applet: CERTCHECK",
     "Tue Dec 1 23:49:35 2026", "success", "none", "CERTCHECK", "applet"),
    ("3    12     Actv abort    Tue Dec1 23:49:35 2026  none              applet: CERTCHECK",
     "Tue Dec1 23:49:35 2026", "abort", "none", "CERTCHECK", "applet"),
    ("3    12     Actv success  Thu Dec10 08:05:00 2026  timer watchdog    applet: with space",
     "Thu Dec10 08:05:00 2026", "success", "timer watchdog", "with space", "applet"),
    ("3    12     Actv success  Thu Dec10 08:05:00 2026  syslog            script: tm_crash.tcl",
     "Thu Dec10 08:05:00 2026", "success", "syslog", "tm_crash.tcl", "script"),
], ids=["one-digit-day-padded", "one-digit-day-unpadded", "two-word-event-type", "script"])
def test_event_history_row_variants(
    row: str, time_text: str, status: str, event_type: str, name: str, kind: str
) -> None:
    text = f"R1#show event manager history events\r\n{HEADER}\r\n{row}\r\nR1#"
    (event,) = parse_event_history(text)
    assert (event.number, event.job_id, event.time_text, event.status) == (3, 12, time_text, status)
    assert (event.event_type, event.name, event.kind) == (event_type, name, kind)


@pytest.mark.parametrize("text", ["", "R1#show event manager history events\nR1#", HEADER,
                                  f"\n{HEADER}\n\n", "No EEM events in history"],
                         ids=["empty", "echo-only", "header-only", "header-blank-lines", "no-history-words"])
def test_event_history_empty(text: str) -> None:
    assert parse_event_history(text) == []


@pytest.mark.parametrize("text", [
    f"{HEADER}\n1    1      Actv success  Tue Dec 1 23:49 2026  none  applet: X",
    f"{HEADER}\n1    x      Actv success  Tue Dec 1 23:49:35 2026  none  applet: X",
    f"{HEADER}\n1    1      Actv success  Tue Dec 1 23:49:35 2026  none  policy X",
    "Command authorization failed.",
    "% Authorization failed.",
    "                    ^\n% Invalid input detected at '^' marker.",
], ids=["short-time", "job-not-a-number", "no-kind-prefix", "aaa-refusal", "aaa-percent-refusal", "invalid-input"])
def test_event_history_bad_lines_are_errors(text: str) -> None:
    with pytest.raises(ParseError, match="show event manager history events"):
        parse_event_history(text)


def test_log_sequence_numbers_and_a_table_after_the_buffer() -> None:
    """The CML IOL capture: `001908: May 17 23:44:16.407 UTC:` lines, then the EEM history table."""
    lines = parse_log_lines(transcript(CML_IOL))
    assert [(x.sequence, x.timestamp, x.tag) for x in lines][:2] == [
        (1908, "May 17 23:44:16.407 UTC", "%LINEPROTO-5-UPDOWN"),
        (1909, "May 17 23:44:16.407 UTC", "%LINK-5-CHANGED"),
    ]
    assert len(lines) == 5
    # the history rows after the log are not glued onto the last message
    assert lines[-1].message == "Interface Loopback99, changed state to up"
    assert lines[2].moment(year=2026) == datetime(2026, 5, 17, 23, 44, 16, 410000, tzinfo=UTC)
    assert lines[2].zone == "UTC" and lines[2].is_synchronised is True
    # even without a blank line between them
    glued = "\n".join(ln for ln in transcript(CML_IOL).splitlines() if ln.strip())
    assert parse_log_lines(glued)[-1].message == "Interface Loopback99, changed state to up"


CEST = {"CET": timedelta(hours=1), "CEST": timedelta(hours=2)}


@pytest.mark.parametrize(("line", "sequence", "timestamp", "synced", "zone", "moment"), [
    ("001850: May 17 18:06:42.919 UTC: %SYS-5-CONFIG_I: x", 1850, "May 17 18:06:42.919 UTC", True, "UTC",
     datetime(2026, 5, 17, 18, 6, 42, 919000, tzinfo=UTC)),
    ("000012: *May 17 20:06:42.919 CEST: %SYS-5-CONFIG_I: x", 12, "*May 17 20:06:42.919 CEST", False, "CEST",
     datetime(2026, 5, 17, 18, 6, 42, 919000, tzinfo=UTC)),
    (".May  7 03:00:00.000 CET: %SYS-5-CONFIG_I: x", None, ".May  7 03:00:00.000 CET", None, "CET",
     datetime(2026, 5, 7, 2, 0, tzinfo=UTC)),
    ("*Oct 11 2018 17:02:22.999 PDT: %HA_EM-6-LOG: x", None, "*Oct 11 2018 17:02:22.999 PDT", False, "PDT", None),
    ("*Dec  1 23:49:35.120: %HA_EM-6-LOG: x", None, "*Dec  1 23:49:35.120", False, None, None),
    ("000007: %SYS-5-CONFIG_I: x", 7, "", None, None, None),
    ("May 31 03:29:35: %PKI-3-CRL_FETCH_FAIL: x", None, "May 31 03:29:35", True, None, None),
], ids=["seq-utc", "seq-unsynced-dst-zone", "dot-mark-other-zone", "year-unknown-zone", "no-zone", "seq-only",
        "no-msec"])
def test_log_timestamp_styles(line: str, sequence: int | None, timestamp: str, synced: bool | None,
                              zone: str | None, moment: datetime | None) -> None:
    (entry,) = parse_log_lines(line)
    assert (entry.sequence, entry.timestamp, entry.is_synchronised, entry.zone) == (sequence, timestamp, synced,
                                                                                   zone)
    assert entry.message == "x"
    assert entry.moment(year=2026, zones={**CEST, "UTC": timedelta(0)}) == moment


# --- identity and self-signed certificates in trustpoints ------------------------------------------


def _cat4500_shaped_config() -> tuple[str, Certificate, Certificate]:
    """A chain holding the router's identity certificate followed directly by its CA, as the Cat4500-X
    running-config described in the shared INDEX.md shows (raw: trailing spaces, `  <TAB>quit`)."""
    from eemwatchd_lab.pki import make_leaf, make_root

    now = datetime(2026, 12, 1, tzinfo=UTC)
    root = make_root("Lab Enterprise CA", now=now, key_kind="rsa")
    identity = make_leaf(["cat4500x.example.net"], by=root, now=now, key_kind="rsa")
    id_cert, ca_cert = identity.cert, root.cert
    text = "\n".join(
        [
            "crypto pki trustpoint ENTERPRISE",
            " enrollment url http://10.0.0.5:80",
            " serial-number",
            " revocation-check none",
            " rsakeypair ENTERPRISE",
            "!",
            "crypto pki certificate chain ENTERPRISE",
            *render_certificate_block(id_cert, kind=""),
            *render_certificate_block(ca_cert),
            "!",
            "crypto pki certificate chain TP-self-signed-1",
            *render_certificate_block(ca_cert, kind="self-signed"),
        ]
    )
    return text, id_cert, ca_cert


def test_identity_certificate_is_kept_with_its_kind() -> None:
    text, id_cert, ca_cert = _cat4500_shaped_config()
    assert "\tquit" in text
    (enterprise, self_signed) = parse_running_config(text).trustpoints
    assert [h.kind for h in enterprise.certificates] == ["identity", "ca"]
    assert enterprise.certificates_with_kind == (("identity", id_cert), ("ca", ca_cert))
    assert enterprise.ca_certificates == (ca_cert,)
    assert self_signed.certificates_with_kind == (("self-signed", ca_cert),)
    assert self_signed.ca_certificates == ()


def test_every_certificate_of_the_csr_17_3_config_is_listed_with_its_kind() -> None:
    trustpoints = parse_running_config(transcript(CSR_17_3)).trustpoints
    listed = {tp.name: [kind for kind, _cert in tp.certificates_with_kind] for tp in trustpoints}
    assert listed == {"TP-self-signed-3177340814": ["self-signed"], "SLA-TrustPoint": ["ca"]}


def test_nvram_references_are_not_listed_as_certificates() -> None:
    trustpoints = parse_running_config(
        transcript("show_startup-config_crypto_pki_nvram_refs__gh_ie_switch_17_3.txt")
    ).trustpoints
    assert all(tp.certificates_with_kind == () for tp in trustpoints)
    assert any(tp.certificates for tp in trustpoints)
