"""The verdict of a test-fire, from what the router shows: success only on positive evidence (pure).

Success: this run's row in `show event manager history events` with status `success`, or a line the applet
logs after its mail action. Failure: another status, an `FMPD_*` error, or nothing within the bound.
docs/design.md, "What counts as evidence of working mail".
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from eemwatchd.core.ios.parsers import HistoryEvent, LogLine

SHOW_HISTORY = "show event manager history events"


@dataclass(frozen=True)
class FireResult:
    """Outcome of a test-fire. ``ok`` only on positive evidence; ``evidence`` says what was seen (the
    history row of this run, the applet's success line) or the router's words refusing the run.
    ``lines`` are the router's HA_EM log lines after the marker (empty when the log does not keep them)."""

    ok: bool
    marker: str
    lines: tuple[str, ...]
    reason: str = ""
    evidence: str = ""


def job_after(events: Sequence[HistoryEvent], applet: str, baseline: int) -> HistoryEvent | None:
    """This run's history row: the first job of ``applet`` newer than the newest before the run."""
    ours = [e for e in events if e.name == applet and e.job_id > baseline]
    return min(ours, key=lambda e: e.job_id) if ours else None


def judge(
    applet: str,
    marker: str,
    job: HistoryEvent | None,
    entries: Sequence[LogLine] | None,
    success: Sequence[re.Pattern[str]],
    *,
    timed_out: bool,
    waited: float,
) -> FireResult | None:
    """The verdict on what the router shows so far, or None to keep waiting. Success needs evidence."""
    ours = [e for e in entries or () if e.facility == "HA_EM"]
    lines = tuple(str(e) for e in ours)
    failures = [
        e for e in ours
        if e.mnemonic.startswith("FMPD_") and (e.mnemonic != "FMPD_ERROR" or f"applet {applet} " in e.message + " ")
    ]
    said = [e for e in ours if e.mnemonic == "LOG" and any(p.match(e.message) for p in success)]
    if job is not None and job.status.lower() != "success":
        detail = failures[0].message.splitlines()[0] if failures else "no mail error in the log"
        return FireResult(False, marker, tuple(str(e) for e in failures) or lines,
                          reason=f"job {job.job_id} of {applet} ended with status {job.status!r}: {detail}",
                          evidence=history_row(job))
    if any(e.mnemonic == "FMPD_ERROR" for e in failures):
        return FireResult(False, marker, tuple(str(e) for e in failures),
                          reason=failures[0].message.splitlines()[0], evidence=str(failures[0]))
    if job is not None:
        evidence = history_row(job) + (f"; {said[0]}" if said else "")
        return FireResult(True, marker, lines, reason="the applet ran to its end after its mail action",
                          evidence=evidence)
    if said and not failures:
        return FireResult(True, marker, lines, reason="the applet logged its success line", evidence=str(said[0]))
    if not timed_out:
        return None
    why = f"no history row for this run and no success line within {waited:.0f}s"
    if failures:
        why = failures[0].message.splitlines()[0]
    elif entries is None:
        why += ("; the log buffer does not hold our marker either (buffered logging must keep informational "
                "messages: `logging buffered 64000 informational`)")
    return FireResult(False, marker, lines, reason=f"could not prove mail works: {why}")


def history_row(job: HistoryEvent) -> str:
    return f"{SHOW_HISTORY}: job {job.job_id} {job.status} {job.time_text} {job.event_type} applet: {job.name}"


def message_pattern(applet: str, text: str) -> re.Pattern[str]:
    """`%HA_EM-6-LOG: <applet>: <msg>` with `$variables` in msg matching anything."""
    parts = re.split(r"\$\{?[A-Za-z_][A-Za-z0-9_]*\}?", text)
    body = ".*".join(re.escape(p) for p in parts)
    return re.compile(rf"{re.escape(applet)}\s*:\s*{body}\s*$", re.S)
