"""Pure parsers for IOS / IOS XE show output: running-config, clock, log, EEM history."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone, tzinfo

from eemwatchd.core.certificate import Certificate
from eemwatchd.core.ios.formats import parse_hex_lines
from eemwatchd.core.router_state import (
    Applet,
    AppletAction,
    ConfigProblem,
    HeldCertificate,
    HeldKind,
    MailAction,
    Trustpoint,
)
from eemwatchd.errors import CertificateError, ParseError

RUNNING_CONFIG = "show running-config"
SHOW_CLOCK = "show clock"
SHOW_LOGGING = "show logging"

# A router without `clock timezone` shows UTC; GMT is what routers in the transcripts name +0.
DEFAULT_ZONES: Mapping[str, timedelta] = {"UTC": timedelta(0), "GMT": timedelta(0)}


_MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTHS = {m: i for i, m in enumerate(_MONTH_NAMES, start=1)}
# Pager debris a capture may contain when paging was not disabled (` --More-- ` plus backspaces).
_PAGER = re.compile(r"\s*--More--\s*[\x08 ]*")
_HEX_LINE = re.compile(r"^[0-9A-Fa-f]{1,8}(?:\s+[0-9A-Fa-f]{1,8})*$")
_CERT_HEAD = re.compile(
    r"^certificate(?:\s+(?P<kind>ca|self-signed|rollover(?:\s+ca)?))?\s+(?P<serial>[0-9A-Fa-f]+)"
    r"(?:\s+(?P<storage>\S+))?$"
)
_TOKEN = re.compile(r'"(?P<quoted>(?:[^"\\]|\\.)*)"|(?P<word>\S+)')
_MAIL_KEYS = frozenset({"server", "to", "from", "cc", "subject", "body", "secure", "port"})


def _clean(raw: str) -> str:
    """One line without CR, pager debris and trailing whitespace."""
    line = raw.replace("\r", "")
    if "--More--" in line:
        line = _PAGER.sub("", line)
    return line.rstrip()


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


# --- show running-config -------------------------------------------------------------------------


@dataclass
class _TrustpointBuilder:
    name: str
    enrollment: str | None = None
    revocation_check: str | None = None
    chain_validation: str | None = None
    fingerprint: str | None = None
    other_lines: list[str] = field(default_factory=list)
    certificates: list[HeldCertificate] = field(default_factory=list)
    declared: bool = False

    def add_setting(self, text: str) -> None:
        keyword, _, rest = text.partition(" ")
        rest = rest.strip()
        if keyword == "enrollment":
            self.enrollment = rest
        elif keyword == "revocation-check":
            self.revocation_check = rest
        elif keyword == "chain-validation":
            self.chain_validation = rest
        elif keyword == "fingerprint":
            self.fingerprint = rest.upper()
        else:
            self.other_lines.append(text)

    def build(self) -> Trustpoint:
        return Trustpoint(
            name=self.name,
            enrollment=self.enrollment,
            revocation_check=self.revocation_check,
            chain_validation=self.chain_validation,
            fingerprint=self.fingerprint,
            other_lines=tuple(self.other_lines),
            certificates=tuple(self.certificates),
        )


@dataclass
class _OpenCertificate:
    chain: str
    kind: HeldKind | None  # None: a rollover (shadow) certificate, parsed but not kept
    serial: str
    storage: str | None
    head_line: str
    hex_lines: list[str] = field(default_factory=list)

    def finish(self) -> HeldCertificate | None:
        where = f"certificate {self.serial} of chain {self.chain}"
        certificate: Certificate | None = None
        if self.hex_lines:
            try:
                certificate = Certificate.from_der(parse_hex_lines(self.hex_lines, what=where), what=where)
            except CertificateError as exc:
                raise ParseError(RUNNING_CONFIG, str(exc), line=self.head_line) from exc
            if certificate.serial_ios.lstrip("0") != self.serial.upper().lstrip("0"):
                raise ParseError(
                    RUNNING_CONFIG,
                    f"{where}: the hex decodes to a certificate with serial {certificate.serial_ios}",
                    line=self.head_line,
                )
        # Neither hex nor a file reference: IOS shows some certificates as a bare header and `quit`
        # (CSR1000V 16.9: `certificate self-signed 01` then `quit`). Held, content not shown.
        if self.kind is None:
            return None
        return HeldCertificate(
            kind=self.kind, serial=self.serial.upper(), certificate=certificate, storage=self.storage
        )


@dataclass
class _AppletBuilder:
    name: str
    event: str | None = None
    maxrun: float | None = None
    mail_actions: list[MailAction] = field(default_factory=list)
    other_actions: list[AppletAction] = field(default_factory=list)
    other_lines: list[str] = field(default_factory=list)

    def add_line(self, text: str) -> None:
        keyword, _, rest = text.partition(" ")
        if keyword == "event":
            event, maxrun = _split_maxrun(rest.strip(), line=text)
            if maxrun is not None:
                self.maxrun = maxrun
            if self.event is None:
                self.event = event
            else:
                self.other_lines.append(text)
        elif keyword == "action":
            label, _, body = rest.strip().partition(" ")
            verb, _, arguments = body.strip().partition(" ")
            if not label or not verb:
                raise ParseError(
                    RUNNING_CONFIG, f"applet {self.name}: action without label or verb", line=text
                )
            if verb == "mail":
                self.mail_actions.append(parse_mail_action(label, arguments, line=text))
            else:
                self.other_actions.append(AppletAction(label=label, verb=verb, arguments=arguments.strip()))
        else:
            self.other_lines.append(text)

    def build(self) -> Applet:
        return Applet(
            name=self.name,
            event=self.event or "",
            maxrun=self.maxrun,
            mail_actions=tuple(self.mail_actions),
            other_actions=tuple(self.other_actions),
            other_lines=tuple(self.other_lines),
        )


def _split_maxrun(event: str, *, line: str) -> tuple[str, float | None]:
    """`none maxrun 60` -> (`none`, 60.0). maxrun is an option of the event statement."""
    match = re.search(r"(?:^|\s)maxrun\s+(?P<value>\S+)", event)
    if not match:
        return event, None
    try:
        value = float(match.group("value"))
    except ValueError as exc:
        raise ParseError(RUNNING_CONFIG, "maxrun is not a number", line=line) from exc
    return (event[: match.start()] + event[match.end() :]).strip(), value


def parse_mail_action(label: str, arguments: str, *, line: str | None = None) -> MailAction:
    """The arguments of ``action LABEL mail ...`` (quoted or single-word values, any order)."""
    tokens = [
        m.group("quoted") if m.group("quoted") is not None else m.group("word")
        for m in _TOKEN.finditer(arguments)
    ]
    values: dict[str, str] = {}
    extra: list[str] = []
    i = 0
    while i < len(tokens):
        key = tokens[i]
        if key in _MAIL_KEYS and i + 1 < len(tokens):
            values[key] = tokens[i + 1]
            i += 2
        else:
            extra.append(key)
            i += 1
    if "server" not in values:
        raise ParseError(RUNNING_CONFIG, f"mail action {label} has no server", line=line or arguments)
    port: int | None = None
    if "port" in values:
        try:
            port = int(values["port"])
        except ValueError as exc:
            raise ParseError(
                RUNNING_CONFIG, f"mail action {label}: port is not a number", line=line or arguments
            ) from exc
    return MailAction(
        label=label,
        server=values["server"],
        to=values.get("to"),
        from_=values.get("from"),
        cc=values.get("cc"),
        subject=values.get("subject"),
        body=values.get("body"),
        secure=values.get("secure"),
        port=port,
        extra=tuple(extra),
    )


@dataclass(frozen=True)
class RunningConfig:
    """What eemwatchd reads from a `show running-config` (or parts of it).

    ``problems``: blocks that could not be read; the trustpoints they belong to are in ``unreadable``.
    """

    trustpoints: tuple[Trustpoint, ...] = ()
    environment: Mapping[str, str] = field(default_factory=dict, repr=False)
    applets: tuple[Applet, ...] = ()
    hostname: str | None = None
    problems: tuple[ConfigProblem, ...] = ()

    @property
    def unreadable(self) -> frozenset[str]:
        """Trustpoints whose certificate chain could not be read: what they hold is unknown."""
        return frozenset(p.trustpoint for p in self.problems if p.trustpoint is not None)


class _BlockError(Exception):
    """A line of the block under way cannot be read: the block is skipped up to the next top-level line."""

    def __init__(self, reason: str, line: str) -> None:
        super().__init__(reason)
        self.reason, self.line = reason, line


def parse_running_config(text: str) -> RunningConfig:  # noqa: C901 - one state machine, read top to bottom
    """Trustpoints, EEM environment, applets, hostname and the blocks that could not be read.

    Tolerant of expanded tabs, missing trailing spaces, CR characters, `!` or nothing between
    sections, `nvram:` references instead of hex (startup-config) and indentation lost in copies.
    A block that cannot be read (hex that does not decode to the certificate its header names, an
    unexpected line in a chain, an applet action without a verb) is a ConfigProblem, never the end of
    the router: the block is skipped up to the next top-level line and everything else is still read.
    """
    trustpoints: dict[str, _TrustpointBuilder] = {}
    environment: dict[str, str] = {}
    applets: list[_AppletBuilder] = []
    hostname: str | None = None
    problems: list[ConfigProblem] = []

    block: str | None = None  # "trustpoint" | "chain" | "applet" | "skip" | None
    block_line = ""
    current_tp: _TrustpointBuilder | None = None
    current_applet: _AppletBuilder | None = None
    open_cert: _OpenCertificate | None = None

    def trustpoint(name: str) -> _TrustpointBuilder:
        if name not in trustpoints:
            trustpoints[name] = _TrustpointBuilder(name)
        return trustpoints[name]

    def close_cert() -> None:
        nonlocal open_cert
        cert, open_cert = open_cert, None
        if cert is not None:
            try:
                held = cert.finish()
            except ParseError as exc:
                raise _BlockError(exc.reason, exc.line or cert.head_line) from exc
            if held is not None and current_tp is not None:
                current_tp.certificates.append(held)

    def give_up(error: _BlockError) -> None:
        """Record the block under way as unreadable and skip the rest of it."""
        nonlocal block, open_cert, current_applet
        problems.append(ConfigProblem(
            block=block_line.strip(), reason=error.reason, line=error.line.strip(),
            trustpoint=current_tp.name if block in ("chain", "trustpoint") and current_tp is not None else None,
            applet=current_applet.name if block == "applet" and current_applet is not None else None,
        ))
        if block == "applet" and current_applet is not None and current_applet in applets:
            applets.remove(current_applet)  # half an applet is not the applet: treated as not readable
        block, open_cert, current_applet = "skip", None, None

    def chain_line(line: str, stripped: str, indented: bool) -> bool:
        """One line inside a certificate chain; False when a top-level line ends the chain."""
        nonlocal open_cert
        # Children of a chain: certificate headers, hex, quit. Accepted at column 0 too, for
        # copies that lost their indentation.
        head = _CERT_HEAD.match(stripped)
        if stripped.startswith("!"):
            return True
        if head:
            close_cert()
            kind_text = head.group("kind")
            kind: HeldKind | None
            if kind_text is None:
                kind = "identity"
            elif kind_text.startswith("rollover"):
                kind = None
            else:
                kind = "ca" if kind_text == "ca" else "self-signed"
            assert current_tp is not None
            open_cert = _OpenCertificate(current_tp.name, kind, head.group("serial"), head.group("storage"), line)
            if open_cert.storage is not None:
                close_cert()  # a file reference has no hex and no quit
            return True
        if stripped == "quit":
            close_cert()
            return True
        if open_cert is not None and _HEX_LINE.match(stripped):
            open_cert.hex_lines.append(stripped)
            return True
        if indented:
            if open_cert is not None:
                raise _BlockError(f"expected hex or quit in certificate {open_cert.serial} of chain "
                                  f"{open_cert.chain}", line)
            raise _BlockError(f"unexpected line in certificate chain {current_tp and current_tp.name}", line)
        close_cert()  # a top-level line ends the chain, even without `quit`
        return False

    for raw in text.splitlines():
        line = _clean(raw)
        stripped = line.strip()
        if not stripped:
            continue
        indented = line[0] in " \t"

        if block == "chain":
            try:
                if chain_line(line, stripped, indented):
                    continue
            except _BlockError as error:
                give_up(error)
                continue
            block = None

        if indented:
            try:
                if block == "trustpoint" and current_tp is not None:
                    current_tp.add_setting(stripped)
                elif block == "applet" and current_applet is not None:
                    current_applet.add_line(stripped)
            except ParseError as exc:
                give_up(_BlockError(exc.reason, line))
            continue

        block, current_applet = None, None
        if stripped.startswith("!"):
            continue
        block_line = line
        words = stripped.split()
        if words[0] == "hostname" and len(words) >= 2:
            hostname = _unquote(stripped[len("hostname") :])
        elif words[:3] == ["crypto", "pki", "trustpoint"] and len(words) >= 4:
            current_tp = trustpoint(words[3])
            current_tp.declared = True
            block = "trustpoint"
        elif words[:4] == ["crypto", "pki", "certificate", "chain"] and len(words) >= 5:
            current_tp = trustpoint(words[4])
            block = "chain"
        elif words[:3] == ["event", "manager", "environment"] and len(words) >= 4:
            value = stripped.split(None, 4)[4] if len(words) >= 5 else ""
            environment[words[3]] = _unquote(value)
        elif words[:3] == ["event", "manager", "applet"] and len(words) >= 4:
            current_applet = _AppletBuilder(_unquote(words[3]))
            applets.append(current_applet)
            block = "applet"
    if block == "chain":
        try:
            close_cert()
        except _BlockError as error:
            give_up(error)

    return RunningConfig(
        trustpoints=tuple(tp.build() for tp in trustpoints.values()),
        environment=environment,
        applets=tuple(a.build() for a in applets),
        hostname=hostname,
        problems=tuple(problems),
    )


def parse_clock_zones(text: str) -> dict[str, timedelta]:
    """Zone name -> UTC offset from `clock timezone` / `clock summer-time` lines of running-config.

    `clock timezone CET 1 0`; `clock summer-time CEST recurring [... [offset-minutes]]` shows as
    the standard offset plus 60 minutes unless the line ends with another offset.
    """
    zones = dict(DEFAULT_ZONES)
    standard = timedelta(0)
    summer: tuple[str, list[str]] | None = None
    for raw in text.splitlines():
        words = _clean(raw).split()
        if words[:2] == ["clock", "timezone"] and len(words) >= 4:
            try:
                hours = int(words[3])
                minutes = int(words[4]) if len(words) >= 5 and words[4].lstrip("-").isdigit() else 0
            except ValueError as exc:
                raise ParseError(RUNNING_CONFIG, "clock timezone offset is not a number", line=raw) from exc
            sign = -1 if words[3].startswith("-") else 1
            standard = timedelta(hours=hours, minutes=sign * abs(minutes))
            zones[words[2]] = standard
        elif words[:2] == ["clock", "summer-time"] and len(words) >= 3:
            summer = (words[2], words)
    if summer is not None:
        name, words = summer
        extra = 60
        if len(words) > 4 and words[-1].isdigit() and ":" in words[-2]:
            extra = int(words[-1])
        zones[name] = standard + timedelta(minutes=extra)
    return zones


# --- show clock ----------------------------------------------------------------------------------

_CLOCK = re.compile(
    r"(?P<flag>[*.])?(?P<h>\d{1,2}):(?P<m>\d{2}):(?P<s>\d{2})(?:\.(?P<frac>\d{1,6}))?\s+"
    r"(?P<zone>[A-Za-z][A-Za-z0-9+\-]*)\s+(?:[A-Z][a-z]{2}\s+)?(?P<mon>[A-Z][a-z]{2})\s+(?P<day>\d{1,2})"
    r"\s+(?P<year>\d{4})"
)


def _zone(name: str, zones: Mapping[str, timedelta]) -> timezone | None:
    offset = zones.get(name)
    if offset is None:
        return None
    return UTC if offset == timedelta(0) else timezone(offset, name)


def _moment(
    match: re.Match[str], month: int, zone: tzinfo, *, micro: int = 0, what: str, line: str
) -> datetime:
    """The datetime of a matched IOS time (groups year, day, h, m, s); an impossible date is a ParseError."""
    try:
        return datetime(
            int(match.group("year")), month, int(match.group("day")),
            int(match.group("h")), int(match.group("m")), int(match.group("s")), micro, tzinfo=zone,
        )
    except ValueError as exc:
        raise ParseError(what, f"not a valid date ({exc})", line=line) from exc


def parse_show_clock(text: str, *, zones: Mapping[str, timedelta] = DEFAULT_ZONES) -> datetime:
    """The router's time from `show clock` (`*22:04:31.123 UTC Thu Nov 26 2026`), timezone-aware.

    A leading `*` (not set) or `.` (not synchronised) is accepted: the clock is read as shown.
    ``zones`` maps the shown zone name to its offset (see parse_clock_zones).
    """
    for raw in text.splitlines():
        line = _clean(raw).strip()
        match = _CLOCK.fullmatch(line)
        if not match:
            continue
        zone = _zone(match.group("zone"), zones)
        if zone is None:
            raise ParseError(
                SHOW_CLOCK,
                f"unknown time zone {match.group('zone')!r} (no `clock timezone` for it)",
                line=line,
            )
        month = _MONTHS.get(match.group("mon"))
        if month is None:
            raise ParseError(SHOW_CLOCK, "unknown month", line=line)
        frac = (match.group("frac") or "0").ljust(6, "0")
        return _moment(match, month, zone, micro=int(frac), what=SHOW_CLOCK, line=line)
    raise ParseError(
        SHOW_CLOCK,
        "expected a line like '*22:04:31.123 UTC Thu Nov 26 2026'",
        line=next((ln for ln in text.splitlines() if ln.strip()), ""),
    )


# --- show logging --------------------------------------------------------------------------------

_LOG_LINE = re.compile(
    r"^(?P<prefix>.*?)%(?P<facility>[A-Z][A-Z0-9_]*(?:-[A-Z][A-Z0-9_]*)*?)-(?P<severity>[0-7])-"
    r"(?P<mnemonic>[A-Z][A-Z0-9_]*)\s*:\s?(?P<message>.*)$"
)


_PROMPT_LINE = re.compile(r"^[\w.\-@/:]{1,63}(?:\([\w.\-@/:+]{0,32}\))?[#>]")
# A line of its own in the buffer that carries no `%FACILITY-N-MNEMONIC` tag: debug output and platform
# messages (`*Mar  7 23:36:40.992: VXE-CSL-DBG:Unable to open ...`, C8000V 17.16.1a;
# `2328308: Jun 8 19:14:38.051 GMT: CRYPTO_PKI: (A16A8) Adding peer certificate`, Cisco doc 117337).
# It starts with the same timestamp (and sequence number) as a message, so it never continues one.
_UNTAGGED_LINE = re.compile(
    r"^(?:<\d+>\s*)?(?:\d+:\s*)?[*.]?[A-Z][a-z]{2}\s+\d{1,2}(?:\s+\d{4})?\s+\d{1,2}:\d{2}:\d{2}(?:\.\d{1,6})?"
    r"(?:\s+[A-Za-z][A-Za-z0-9+\-]*)?:\s|^\d{6,}:\s"
)


# `001850: May 17 18:06:42.919 UTC` (service sequence-numbers + show-timezone; the CML IOL capture),
# `*Dec  6 20:17:37.657` (`*`: clock never set/synchronised), `.May 17 ...` (was synchronised, now is not),
# `*Oct 11 2018 17:02:22.999 PDT` (`year`; freeztp C3850), `May 31 03:29:35` (no msec; dnac switch).
_LOG_SEQUENCE = re.compile(r"^(?P<seq>\d+):\s*(?P<rest>.*)$")
_LOG_TIMESTAMP = re.compile(
    r"^(?P<mark>[*.])?(?P<mon>[A-Z][a-z]{2})\s+(?P<day>\d{1,2})(?:\s+(?P<year>\d{4}))?\s+"
    r"(?P<h>\d{1,2}):(?P<m>\d{2}):(?P<s>\d{2})(?:\.(?P<frac>\d{1,6}))?(?:\s+(?P<zone>[A-Za-z][A-Za-z0-9+\-]*))?$"
)


@dataclass(frozen=True)
class LogLine:
    """One syslog message; ``message`` includes continuation lines joined with newlines.

    ``timestamp`` is the router's time text without the sequence number (`*May 17 18:06:42.919 UTC`);
    ``sequence`` is the `service sequence-numbers` counter when the line has one.
    """

    timestamp: str
    facility: str
    severity: int
    mnemonic: str
    message: str
    sequence: int | None = None

    @property
    def tag(self) -> str:
        return f"%{self.facility}-{self.severity}-{self.mnemonic}"

    @property
    def is_synchronised(self) -> bool | None:
        """False for `*` (never set/synced), True for a plain time, None for `.` or no timestamp."""
        match = _LOG_TIMESTAMP.match(self.timestamp)
        if match is None or match.group("mark") == ".":
            return None
        return match.group("mark") != "*"

    @property
    def zone(self) -> str | None:
        """The zone name shown with `show-timezone` (`UTC`, `CEST`, ...), else None."""
        match = _LOG_TIMESTAMP.match(self.timestamp)
        return match.group("zone") if match else None

    def moment(self, *, year: int, zones: Mapping[str, timedelta] = DEFAULT_ZONES) -> datetime | None:
        """The instant of the message (IOS omits the year unless `year` is configured: pass the router's).
        None when the time has no zone or an unknown one: without `show-timezone` the zone is not known."""
        match = _LOG_TIMESTAMP.match(self.timestamp)
        if match is None or match.group("zone") is None:
            return None
        zone = _zone(match.group("zone"), zones)
        month = _MONTHS.get(match.group("mon"))
        if zone is None or month is None:
            return None
        shown_year = match.group("year")
        frac = (match.group("frac") or "0").ljust(6, "0")
        try:
            return datetime(int(shown_year) if shown_year else year, month, int(match.group("day")),
                            int(match.group("h")), int(match.group("m")), int(match.group("s")), int(frac),
                            tzinfo=zone)
        except ValueError as exc:
            raise ParseError(SHOW_LOGGING, f"not a valid date ({exc})", line=self.timestamp) from exc

    def __str__(self) -> str:
        head = f"{self.sequence:06d}: " if self.sequence is not None else ""
        if self.timestamp:
            head += f"{self.timestamp}: "
        return f"{head}{self.tag}: {self.message}"


def _ends_message(line: str) -> bool:
    """A line that cannot continue a syslog message: a prompt, a timestamped line without a tag (debug
    output), or another table printed after the log buffer in the same capture (the EEM history header and
    rows)."""
    stripped = line.strip()
    return bool(
        _PROMPT_LINE.match(line) or _UNTAGGED_LINE.match(stripped) or _HISTORY_HEADER.match(stripped)
        or _HISTORY_ROW.match(stripped)
    )


def parse_log_lines(text: str, *, marker: str | None = None) -> list[LogLine]:
    """The `%FACILITY-SEV-MNEMONIC: message` lines of `show logging` output.

    With ``marker``, only the lines after the LAST line containing it; ParseError when it is absent
    (the buffer wrapped, or buffered logging excludes the marker's severity).
    A message continues on the following non-blank lines (`$_cli_result` in a syslog msg, `Reason :`);
    a blank line, a prompt or a table header/row ends it, and nothing after that is glued onto it.
    """
    lines = [_clean(raw) for raw in text.splitlines()]
    if marker is not None:
        index = max((i for i, ln in enumerate(lines) if marker in ln), default=None)
        if index is None:
            raise ParseError(SHOW_LOGGING, f"marker {marker!r} is not in the log buffer")
        lines = lines[index + 1 :]
    out: list[LogLine] = []
    pending: dict[str, str] | None = None
    open_message = False
    for line in lines:
        match = _LOG_LINE.match(line)
        if match:
            if pending is not None:
                out.append(_log_line(pending))
            pending = match.groupdict()
            open_message = True
        elif not line.strip() or _ends_message(line):
            open_message = False
        elif pending is not None and open_message:
            # A multi-line message continues on the following lines, indented or not: `$_cli_result` in
            # a syslog msg (eem_applet_mail_fmpd_smtp_error__gh_iosv), `Reason :` (gh_dnac_switch).
            pending["message"] += "\n" + line.strip()
    if pending is not None:
        out.append(_log_line(pending))
    return out


def _log_line(parts: Mapping[str, str]) -> LogLine:
    prefix = parts["prefix"].strip()
    prefix = re.sub(r"^<\d+>\s*", "", prefix)  # syslog PRI of a forwarded copy
    prefix = prefix.rstrip(": ").strip()
    sequence: int | None = None
    numbered = _LOG_SEQUENCE.match(prefix)
    if prefix.isdigit():  # sequence numbers without timestamps (`000007: %SYS-...`)
        sequence, prefix = int(prefix), ""
    elif numbered and (not numbered.group("rest") or _LOG_TIMESTAMP.match(numbered.group("rest").rstrip(": "))):
        sequence = int(numbered.group("seq"))
        prefix = numbered.group("rest").rstrip(": ").strip()
    return LogLine(
        timestamp=prefix,
        facility=parts["facility"],
        severity=int(parts["severity"]),
        mnemonic=parts["mnemonic"],
        message=parts["message"].rstrip(),
        sequence=sequence,
    )


# --- show event manager history events ---------------------------------------------------------------

SHOW_HISTORY = "show event manager history events"
_HISTORY_HEADER = re.compile(r"^No\.\s+Job Id\s+Proc\s+Status\s+Time of Event\s+Event Type\s+Name$")
# `1    72991  Actv success  Wed Mar10 13:22:46 2021  timer watchdog    applet: rolling-pcap`
# (show_event_manager_history_events__gh_rolling_pcap_iosxe.txt). The day follows the month directly
# when it has two digits; a one-digit day is space-padded (`Tue Dec 1`) or, tolerated, unpadded (`Dec1`).
_HISTORY_ROW = re.compile(
    r"^(?P<number>\d+)\s+(?P<job>\d+)\s+(?P<proc>\S+)\s+(?P<status>\S+)\s+"
    r"(?P<time>[A-Z][a-z]{2} [A-Z][a-z]{2} ?\d{1,2} \d{2}:\d{2}:\d{2} \d{4})\s+"
    r"(?P<event>\S(?:.*?\S)?)\s+(?P<kind>applet|script|callback):\s*(?P<name>\S.*)$"
)
_ROW_START = re.compile(r"^\d+\s")


def _is_echo(line: str, command: str) -> bool:
    """The command echoed without its prompt, possibly abbreviated (`sh ev man hist ev`)."""
    words = line.split("|")[0].split()
    full = command.split()
    return len(words) == len(full) and all(f.startswith(w.lower()) for w, f in zip(words, full, strict=True))


@dataclass(frozen=True)
class HistoryEvent:
    """One row of `show event manager history events`; ``name`` without its `applet: ` prefix."""

    number: int
    job_id: int
    proc: str
    status: str
    time_text: str
    event_type: str
    name: str
    kind: str = "applet"


def parse_event_history(text: str) -> list[HistoryEvent]:
    """The rows of `show event manager history events`, oldest first (as shown).

    Blank lines, the command echo and prompts are skipped; an empty table (or a `No ...` line) gives [].
    A line that looks like a row but does not parse, or any other unexpected line (a refusal such as
    `Command authorization failed.`), is a ParseError: a test-fire must never read "no rows" from it.
    """
    out: list[HistoryEvent] = []
    for raw in text.splitlines():
        line = _clean(raw).strip()
        if not line or _HISTORY_HEADER.match(line) or _PROMPT_LINE.match(line) or _is_echo(line, SHOW_HISTORY):
            continue
        match = _HISTORY_ROW.match(line)
        if match:
            out.append(HistoryEvent(
                number=int(match.group("number")), job_id=int(match.group("job")), proc=match.group("proc"),
                status=match.group("status"), time_text=match.group("time"),
                event_type=match.group("event"), name=match.group("name").strip(), kind=match.group("kind"),
            ))
        elif _ROW_START.match(line):
            raise ParseError(SHOW_HISTORY, "a history row that does not parse", line=line)
        elif re.match(r"^No\b.*\bhistory\b", line, re.IGNORECASE):
            continue  # inferred: an empty history may say so in words
        else:
            raise ParseError(SHOW_HISTORY, "unexpected line (not a history row or header)", line=line)
    return out
