"""The test-fire verdict from what the router shows (pure, table-driven): success only on evidence."""

from __future__ import annotations

import pytest

from eemwatchd.core.ios.parsers import HistoryEvent, LogLine
from eemwatchd.core.testfire import job_after, judge, message_pattern

APPLET = "MAIL"


def row(job: int, status: str = "success", name: str = APPLET) -> HistoryEvent:
    return HistoryEvent(number=1, job_id=job, proc="Actv", status=status, time_text="Tue Dec 1 10:00:00 2026",
                        event_type="none", name=name)


def log(mnemonic: str, message: str, severity: int = 3) -> LogLine:
    return LogLine(timestamp="*Dec  1 10:00:01.000", facility="HA_EM", severity=severity, mnemonic=mnemonic,
                   message=message)


SMTP_ERROR = log("FMPD_SMTP", "Error occurred when sending mail to SMTP server: 10.0.0.1 : error in connecting")
APPLET_ERROR = log("FMPD_ERROR", f"Error executing applet {APPLET} statement 0010")
OTHER_APPLET_ERROR = log("FMPD_ERROR", "Error executing applet OTHER statement 0010")
SAID = log("LOG", f"{APPLET}: mail sent to noc@example.net", 6)
SUCCESS = [message_pattern(APPLET, "mail sent to $_email_to")]


@pytest.mark.parametrize(
    ("job", "entries", "timed_out", "ok", "reason"),
    [
        pytest.param(row(7), [], False, True, "ran to its end", id="history-success-row"),
        pytest.param(row(7), None, False, True, "ran to its end", id="success-row-even-without-log"),
        pytest.param(None, [SAID], False, True, "logged its success line", id="success-line-only"),
        pytest.param(row(7, "abort"), [SMTP_ERROR, APPLET_ERROR], False, False, "status 'abort'", id="aborted"),
        pytest.param(None, [SMTP_ERROR, APPLET_ERROR], False, False, "Error occurred", id="fmpd-error-early"),
        pytest.param(None, [OTHER_APPLET_ERROR], False, None, "", id="another-applets-error-keeps-waiting"),
        pytest.param(None, [], False, None, "", id="nothing-yet-keeps-waiting"),
        pytest.param(None, [], True, False, "could not prove mail works: no history row", id="nothing-in-time"),
        pytest.param(None, None, True, False, "log buffer does not hold our marker", id="nothing-and-no-marker"),
        pytest.param(None, [SMTP_ERROR], True, False, "could not prove mail works: Error occurred",
                     id="smtp-error-then-timeout"),
        pytest.param(None, [SAID, SMTP_ERROR], False, None, "", id="success-line-but-an-error-is-no-proof"),
    ],
)
def test_judge(job: HistoryEvent | None, entries: list[LogLine] | None, timed_out: bool, ok: bool | None,
               reason: str) -> None:
    verdict = judge(APPLET, "marker", job, entries, SUCCESS, timed_out=timed_out, waited=22.0)
    if ok is None:
        assert verdict is None
        return
    assert verdict is not None and verdict.ok is ok and reason in verdict.reason
    if ok:
        assert verdict.evidence  # success always says what proved it
    if job is not None:
        assert f"job {job.job_id} {job.status}" in verdict.evidence


def test_this_runs_row_is_the_first_newer_one_of_the_applet() -> None:
    events = [row(3), row(5, name="OTHER"), row(6), row(8)]
    assert job_after(events, APPLET, baseline=5) == row(6)
    assert job_after(events, APPLET, baseline=8) is None
