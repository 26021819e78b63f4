"""The show parsers of tests/support/ios_show.py (`show crypto pki certificates [verbose|pem]`, `show crypto pki
trustpoints [status]`, PKI dates and their zones) against every shared transcript: the tests read the lab router
and the running-config parser back with them, so they are checked here first."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from eemwatchd.core.certificate import load_pem_certificates
from eemwatchd.core.ios.parsers import DEFAULT_ZONES, parse_clock_zones, parse_running_config
from eemwatchd.errors import ParseError
from tests.support.ios_show import (
    parse_show_crypto_pki_certificates,
    parse_show_crypto_pki_certificates_pem,
    parse_show_crypto_pki_trustpoints,
    parse_shown_date,
    zone_note,
)
from tests.support.transcripts import transcript

CSR_17_3 = "show_running-config_crypto_pki_section__gh_ansible_facts_csr1000v_17_3.txt"


def test_sla_root_matches_show_trustpoints_status_of_another_box() -> None:
    trustpoints = parse_running_config(transcript(CSR_17_3)).trustpoints
    sla = next(tp for tp in trustpoints if tp.name == "SLA-TrustPoint")
    shown = parse_show_crypto_pki_trustpoints(
        transcript("show_crypto_pki_trustpoints_status__genie_isr4451.txt")
    )
    status = next(tp for tp in shown if tp.name == "SLA-TrustPoint")
    assert sla.ca_certificates[0].sha1_ios == status.ca_fingerprint_sha1
    assert sla.ca_certificates[0].md5_ios == status.ca_fingerprint_md5
    assert sla.enrollment == "pkcs12"
    assert sla.revocation_check == "crl"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        pytest.param(
            "show_crypto_pki_certificates_CISCO_IDEVID_SUDI__genie_c3850.txt",
            [
                ("Certificate", "793B572700000003750B", ("CISCO_IDEVID_SUDI",)),
                ("CA Certificate", "02", ("CISCO_IDEVID_SUDI", "Trustpool")),
            ],
            id="genie-c3850-sudi",
        ),
        pytest.param(
            "show_crypto_pki_certificates_DTLS__gh_qytang_c8kv.txt",
            [
                ("Certificate", "1100000016CF558DE6D0B87832000000000016", ("DTLS",)),
                ("CA Certificate", "3EEC76FB95DE8EAA4F8BA62964A87D98", ("DTLS",)),
            ],
            id="qytang-dtls",
        ),
        pytest.param(
            "show_crypto_pki_certificates_TP-self-signed__genie_csr1000v.txt",
            [("Router Self-Signed Certificate", "01", ("TP-self-signed-4146203551",))],
            id="genie-self-signed",
        ),
        pytest.param(
            "show_crypto_pki_certificates__genie_rv1_ie3100.txt",
            [
                ("Certificate", "03612596745103596F2C", ("CISCO_IDEVID_SUDI",)),
                ("CA Certificate", "0A6475524CD8617C62", ("CISCO_IDEVID_SUDI", "Trustpool")),
                ("CA Certificate", "019A335878CE16C1C1", ("CISCO_IDEVID_SUDI0", "Trustpool")),
                ("CA Certificate", "0A6475524CD8617C62", ("CISCO_IDEVID_SUDI", "Trustpool")),
            ],
            id="genie-ie3100-no-indentation",
        ),
        pytest.param(
            "show_crypto_pki_certificates__ntc_1.txt",
            [
                ("Certificate", "1234567890ABCDEFGHIJK", ("caserver.domain.com",)),
                ("CA Certificate", "ABCDEFGHIJK1234567890", ("caserver.domain.com",)),
                ("CA Certificate", "12345ABCDEFGHIJK67890", ("ROOT-CA",)),
            ],
            id="ntc-sanitized",
        ),
        pytest.param(
            "show_crypto_pki_certificates_verbose_CA__gh_qytang_c8kv.txt",
            [
                ("Certificate", "11000000173954880F15AD7941000000000017", ("CA",)),
                ("CA Certificate", "3EEC76FB95DE8EAA4F8BA62964A87D98", ("CA", "DTLS")),
            ],
            id="qytang-verbose",
        ),
        pytest.param(
            "show_crypto_pki_certificates_verbose__genie_csr.txt",
            [("Certificate", "02", ("client",)), ("CA Certificate", "01", ("client", "ROOT"))],
            id="genie-verbose-csr",
        ),
        pytest.param(
            "show_crypto_pki_certificates_verbose__genie_csr8kv.txt",
            [
                ("Certificate", "03", ("openssl_test",)),
                ("CA Certificate", "4BE62C7CF3A30DDB6F133B50B2CFDCCD4F84D0B0", ("openssl_test",)),
            ],
            id="genie-verbose-csr8kv",
        ),
        pytest.param(
            "show_crypto_pki_certificates_pem_server__genie_1.txt", [], id="pem-command-has-no-blocks"
        ),
    ],
)
def test_show_crypto_pki_certificates(name: str, expected: list[tuple[str, str, tuple[str, ...]]]) -> None:
    shown = parse_show_crypto_pki_certificates(transcript(name))
    assert [(c.kind, c.serial, c.trustpoints) for c in shown] == expected
    for cert in shown:
        assert cert.status == "Available"
        assert cert.valid_until_text is not None
        assert cert.issuer


def test_show_certificates_fields() -> None:
    (leaf, ca) = parse_show_crypto_pki_certificates(
        transcript("show_crypto_pki_certificates_CISCO_IDEVID_SUDI__genie_c3850.txt")
    )
    assert leaf.name == "WS-C3850-24P-0057D21BC800"
    assert leaf.subject == ("cn=WS-C3850-24P-0057D21BC800", "serialNumber=PID:WS-C3850-24P SN:FCW1947C0GF")
    assert leaf.valid_until == datetime(2025, 11, 20, 0, 44, 52, tzinfo=UTC)
    assert ca.crl_urls == ("http://www.cisco.com/security/pki/crl/crcam2.crl",)
    (self_signed,) = parse_show_crypto_pki_certificates(
        transcript("show_crypto_pki_certificates_TP-self-signed__genie_csr1000v.txt")
    )
    assert self_signed.storage == "nvram:IOS-Self-Sig#1.cer"
    # IST without the router's `clock timezone`: not read (IST names +05:30, +01:00 and +02:00), and said so
    csr = parse_show_crypto_pki_certificates(
        transcript("show_crypto_pki_certificates_verbose__genie_csr.txt")
    )
    assert csr[0].valid_until is None
    assert csr[0].valid_until_text == "21:58:50 IST Nov 10 2022"
    assert csr[0].zone_note is not None
    assert "time zone IST is not defined by the router's `clock timezone`" in csr[0].zone_note
    ist = parse_show_crypto_pki_certificates(
        transcript("show_crypto_pki_certificates_verbose__genie_csr.txt"),
        zones=parse_clock_zones("clock timezone IST 5 30"),
    )
    assert ist[0].valid_until == datetime(2022, 11, 10, 16, 28, 50, tzinfo=UTC)
    assert ist[0].zone_note is None  # the router said what IST is


def test_verbose_fingerprint_matches_the_pem_pasted_on_the_same_router() -> None:
    """qytang C8Kv: the CA pasted in `crypto pki authenticate DTLS` is the one `show ... verbose CA` lists."""
    pasted = load_pem_certificates(transcript("crypto_pki_authenticate_terminal_paste__gh_qytang_c8kv.txt"))
    (ca,) = pasted
    shown = parse_show_crypto_pki_certificates(
        transcript("show_crypto_pki_certificates_verbose_CA__gh_qytang_c8kv.txt")
    )
    block = next(c for c in shown if c.kind == "CA Certificate")
    assert block.fingerprint_sha1 == ca.sha1_ios
    assert block.fingerprint_md5 == ca.md5_ios
    assert block.serial == ca.serial_ios
    for dtls in parse_show_crypto_pki_certificates(
        transcript("show_crypto_pki_certificates_DTLS__gh_qytang_c8kv.txt")
    ):
        if dtls.kind == "CA Certificate":
            assert dtls.serial == ca.serial_ios


def test_pem_certificates_with_scrambled_base64_is_a_parse_error() -> None:
    with pytest.raises(ParseError, match="show crypto pki certificates pem"):
        parse_show_crypto_pki_certificates_pem(
            transcript("show_crypto_pki_certificates_pem_server__genie_1.txt")
        )


def test_pem_certificates_real() -> None:
    (ca,) = load_pem_certificates(transcript("crypto_pki_authenticate_terminal_paste__gh_qytang_c8kv.txt"))
    text = f"------Trustpoint: DTLS------\n% CA certificate:\n{ca.pem}\n"
    assert parse_show_crypto_pki_certificates_pem(text) == [("DTLS", "CA certificate", ca)]


def test_show_trustpoints() -> None:
    shown = parse_show_crypto_pki_trustpoints(transcript("show_crypto_pki_trustpoints__genie_1.txt"))
    assert [t.name for t in shown] == [
        "SLA-TrustPoint",
        "CISCO_IDEVID_SUDI",
        "CISCO_IDEVID_SUDI0",
        "TP-self-signed-1504826562",
        "CISCO_IDEVID_CMCA2_SUDI",
        "CISCO_IDEVID_CMCA2_SUDI0",
        "CISCO_IDEVID_CMCA_SUDI",
        "CISCO_IDEVID_CMCA_SUDI0",
        "trustpoint1",
    ]
    assert shown[0].subject == ("cn=Cisco Licensing Root CA", "o=Cisco")
    assert (shown[0].serial, shown[0].certificate_configured) == ("01", True)
    assert (shown[3].self_signed, shown[3].key_label) == (True, "TP-self-signed-1504826562")
    assert (shown[-1].serial, shown[-1].certificate_configured, shown[-1].subject) == (None, False, ())


def test_show_trustpoints_status() -> None:
    shown = parse_show_crypto_pki_trustpoints(
        transcript("show_crypto_pki_trustpoints_status__genie_isr4451.txt")
    )
    assert len(shown) == 6
    proxy = next(t for t in shown if t.name == "PROXY-SIGNING-CA")
    assert proxy.ca_fingerprint_sha1 == "54161DDA 2D5AD554 A4DEC0EB A332996E 0271151D"
    assert proxy.router_fingerprint_md5 == "1CDBDA3E C1B9E7E1 5AE2C539 056CBAB1"
    assert proxy.enrollment_status == "Granted"
    assert proxy.state["Issuing CA authenticated"] == "Yes"
    (test,) = parse_show_crypto_pki_trustpoints(
        transcript("show_crypto_pki_trustpoints_TEST_status__gh_c9200l.txt")
    )
    assert test.ca_subject == test.router_subject == "cn=c9200.example.com"
    assert test.state["Keys generated"] == "Yes (General Purpose, non-exportable)"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("00:34:52 UTC Nov 20 2015", datetime(2015, 11, 20, 0, 34, 52, tzinfo=UTC)),
        ("00:34:52 XYZ Nov 20 2015", None),  # a zone the router's config does not define
    ],
    ids=["utc", "unknown-zone"],
)
def test_shown_date(text: str, expected: datetime | None) -> None:
    assert parse_shown_date(text) == expected


def test_impossible_shown_date_is_a_parse_error_naming_the_line() -> None:
    with pytest.raises(ParseError, match=r"not a valid date.*Feb 30 2015"):
        parse_shown_date("00:34:52 UTC Feb 30 2015")


@pytest.mark.parametrize(
    ("text", "zones", "expected"),
    [
        ("00:34:52 UTC Nov 20 2015", None, datetime(2015, 11, 20, 0, 34, 52, tzinfo=UTC)),
        ("10:35:18 GMT Oct 30 2023", None, datetime(2023, 10, 30, 10, 35, 18, tzinfo=UTC)),
        # a zone name alone says nothing: only the router's own `clock` lines give its offset
        ("23:09:23 IST Nov 17 2021", None, None),
        ("23:09:23 IST Nov 17 2021", "clock timezone IST 5 30", datetime(2021, 11, 17, 17, 39, 23, tzinfo=UTC)),
        # Ireland's summer time, told by the router's own `clock summer-time IST recurring`
        ("23:09:23 IST Jul 17 2021", "clock timezone GMT 0 0\nclock summer-time IST recurring",
         datetime(2021, 7, 17, 22, 9, 23, tzinfo=UTC)),
        ("23:09:23 IST Jul 17 2021", "clock timezone IST 2 0", datetime(2021, 7, 17, 21, 9, 23, tzinfo=UTC)),
        ("12:00:00 CET Jan 5 2026", "clock timezone CET 1 0", datetime(2026, 1, 5, 11, 0, 0, tzinfo=UTC)),
        ("12:00:00 CEST Jun 5 2026", "clock timezone CET 1 0\nclock summer-time CEST recurring last Sun Mar 2:00 "
         "last Sun Oct 3:00", datetime(2026, 6, 5, 10, 0, 0, tzinfo=UTC)),
        ("12:00:00 EST Jan 5 2026", "clock timezone EST -5 0", datetime(2026, 1, 5, 17, 0, 0, tzinfo=UTC)),
        ("12:00:00 CST Jan 5 2026", None, None),
        # FN72323: CST is China (+8) on that router; its `clock timezone` tells us so
        ("02:12:23 CST Jan 17 2014", "clock timezone CST 8 0", datetime(2014, 1, 16, 18, 12, 23, tzinfo=UTC)),
        ("12:00:00 NST Jan 5 2026", "clock timezone NST -3 30", datetime(2026, 1, 5, 15, 30, 0, tzinfo=UTC)),
        # the same name at two offsets in one real lab (sergl352130 EVE-NG export: MSK 0 0 and MSK 3 0)
        ("19:02:49 MSK Dec 24 2023", "clock timezone MSK 0 0", datetime(2023, 12, 24, 19, 2, 49, tzinfo=UTC)),
        ("22:02:49 MSK Dec 24 2023", "clock timezone MSK 3 0", datetime(2023, 12, 24, 19, 2, 49, tzinfo=UTC)),
        ("12:00:00 MSK Jan 5 2026", None, None),
        ("12:00:00 XYZ Jan 5 2026", None, None),
    ],
    ids=lambda v: v if isinstance(v, str) and len(v) < 30 else None,
)
def test_shown_dates_take_the_zone_only_from_the_routers_own_clock_lines(
    text: str, zones: str | None, expected: datetime | None
) -> None:
    table = parse_clock_zones(zones) if zones else DEFAULT_ZONES
    assert parse_shown_date(text, zones=table) == expected
    assert (zone_note(text.split()[1], table) is None) is (expected is not None)


MSK_LAB = "show_crypto_pki_certificates_multi_router_MSK_offsets_and_config_chain__gh_sergl352130_otus.txt"


def _router_output(text: str, router: str) -> str:
    """One router's `show crypto pki certificates` out of a capture holding several (up to the next prompt)."""
    start = text.index(f"{router}#show crypto pki certificates")
    rest = text[start:].split("\n", 1)[1]
    end = re.search(r"^\s*R\d+#", rest, flags=re.M)
    return rest[: end.start()] if end else rest


def test_the_same_ca_certificate_shown_at_two_msk_offsets_is_one_instant_with_each_routers_clock_lines() -> None:
    text = transcript(MSK_LAB)
    r19_zones = parse_clock_zones(transcript("startup-config_clock_timezone_MSK_0_0_pki_server_nvram_chain__gh_"
                                             "sergl_eve_R19.txt"))
    r27_zones = parse_clock_zones(transcript("startup-config_clock_timezone_MSK_3_0_nvram_identity_chain__gh_"
                                             "sergl_eve_R27.txt"))
    [r19_ca] = [c for c in parse_show_crypto_pki_certificates(_router_output(text, "R19"), zones=r19_zones)
                if c.kind == "CA Certificate"]
    [r27_ca] = [c for c in parse_show_crypto_pki_certificates(_router_output(text, "R27"), zones=r27_zones)
                if c.kind == "CA Certificate"]
    assert (r19_ca.valid_from_text, r27_ca.valid_from_text) == ("19:02:49 MSK Dec 24 2023", "22:02:49 MSK Dec 24 2023")
    # the certificate's notBefore, checked against its hex in the capture's source line: 2023-12-24 19:02:49Z
    assert r19_ca.valid_from == r27_ca.valid_from == datetime(2023, 12, 24, 19, 2, 49, tzinfo=UTC)


def test_a_pending_enrollment_is_read_beside_the_valid_ca_certificate() -> None:
    text = transcript("show_crypto_pki_certificates_pending_request_and_R14CA_storage__gh_otus_lab.txt")
    shown = parse_show_crypto_pki_certificates(_router_output(text, "R18"))
    assert [(c.kind, c.serial, c.status) for c in shown] == [("CA Certificate", "01", "Available"),
                                                            ("Certificate", None, "Pending")]
    ca, pending = shown
    assert ca.storage == "nvram:R14CA#1CA.cer" and ca.trustpoints == ("VPN",)
    assert pending.name == "R18" and pending.usage == "General Purpose" and pending.trustpoints == ("VPN",)


def test_a_scep_url_is_not_glued_onto_the_trustpoints_subject() -> None:
    text = transcript("show_crypto_pki_trustpoints_scep_url_server_vs_client__gh_otus_r12_r14.txt")
    shown = {tp.name: tp for tp in parse_show_crypto_pki_trustpoints(text)}
    assert shown["R12"].subject == ("cn=R12",) and shown["R12"].scep_url is None
    assert shown["R14"].subject == ("cn=R12",)
    assert shown["R14"].scep_url == "http://10.1.255.12:80/cgi-bin"


def test_genie_ist_transcripts_parse_every_date() -> None:
    for name in (
        "show_crypto_pki_certificates_verbose__genie_csr.txt",
        "show_crypto_pki_certificates_verbose__genie_csr8kv.txt",
    ):
        shown = parse_show_crypto_pki_certificates(transcript(name))
        assert shown
        for cert in shown:
            assert cert.valid_from is None and cert.zone_note is not None  # IST: which one?
    (first, *_rest) = parse_show_crypto_pki_certificates(
        transcript("show_crypto_pki_certificates_verbose__genie_csr8kv.txt"),
        zones=parse_clock_zones("clock timezone IST 5 30"),  # the genie routers are in India
    )
    assert first.valid_from == datetime(2021, 11, 17, 17, 39, 23, tzinfo=UTC)  # 23:09:23 IST
