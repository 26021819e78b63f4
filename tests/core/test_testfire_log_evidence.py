"""Issue 16 finding 5: a timestamped line without a `%FACILITY-N-MNEMONIC` tag (debug output) is a line of its own,
never glued onto the message before it, so the applet's success line still proves a test-fire."""

from __future__ import annotations

import pytest

from eemwatchd.core.ios.parsers import parse_log_lines
from eemwatchd.core.testfire import judge, message_pattern
from tests.support.transcripts import transcript

C8000V = "show_logging_c8000v_17_16_1a_untagged_lines__muninn_live.txt"
DOC_117337 = "debug_crypto_pki_ikev2_seqno_untagged__cisco_doc_117337.txt"


def test_an_untagged_platform_line_of_a_c8000v_does_not_continue_the_message_before_it() -> None:
    lines = parse_log_lines(transcript(C8000V))
    smart = next(ln for ln in lines if ln.mnemonic == "NOTIFY_NO_SNAPSHOT")
    assert smart.message == "Platform supports PAK snapshot, but none exists."
    # the multi-line messages of the same capture still keep their continuation lines
    test_start = next(ln for ln in lines if ln.mnemonic == "SELF_TEST_START")
    assert test_start.message.endswith("\nbegin Crypto Module self-tests")


@pytest.mark.parametrize(
    "debug",
    [
        pytest.param("*Dec  5 10:00:01.120: VXE-CSL-DBG:Unable to open the postFR backup file/file not present",
                     id="timestamped"),
        pytest.param("001851: *Dec  5 10:00:01.121: SMTP: connection to 127.0.0.1 closed", id="sequence-and-time"),
        pytest.param("001852: Dec  5 10:00:01.121 UTC: CRYPTO_PKI: (A16A8) Check for identical certs",
                     id="sequence-time-zone"),
        pytest.param("2328308: Jun 8 19:14:38.051 GMT: CRYPTO_PKI: (A16A8) Adding peer certificate",
                     id="doc-117337-seven-digit-sequence"),
    ],
)
def test_the_applets_success_line_followed_by_debug_output_still_proves_the_test_fire(debug: str) -> None:
    buffer = "\n".join([
        "001849: *Dec  5 10:00:00.900: %SYS-6-USERLOG_INFO: Message from tty2(user id: admin): eemwatchd-7f3a",
        "001850: *Dec  5 10:00:01.100: %HA_EM-6-LOG: MAILTEST: MAILTEST mail sent",
        debug,
        "R1#",
    ])
    lines = parse_log_lines(buffer, marker="eemwatchd-7f3a")
    assert [ln.message for ln in lines] == ["MAILTEST: MAILTEST mail sent"]
    verdict = judge("MAILTEST", "eemwatchd-7f3a", None, lines, [message_pattern("MAILTEST", "MAILTEST mail sent")],
                    timed_out=False, waited=1.0)
    assert verdict is not None and verdict.ok and "logged its success line" in verdict.reason


def test_debug_lines_of_cisco_doc_117337_are_no_messages() -> None:
    assert parse_log_lines(transcript(DOC_117337)) == []
