"""The lab router's log: `logging buffered SIZE LEVEL`, `service timestamps log ...`, `service sequence-numbers`."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

from eemwatchd_lab.router.clock import UTC_ZONE, Zone, log_timestamp

LEVELS = ("emergencies", "alerts", "critical", "errors", "warnings", "notifications", "informational",
          "debugging")
DEFAULT_BUFFER_BYTES = 102400  # inferred: the IOS XE default `logging buffered` size
MIN_BUFFER_BYTES = 4096  # the IOL capture shows a 4096-byte buffer (send_log_severity_userlog__gh_rt01_iol)
_SEVERITY = re.compile(r"%[A-Z][A-Z0-9_]*(?:-[A-Z0-9_]+)*?-([0-7])-[A-Z]")


def severity_of(message: str) -> int | None:
    match = _SEVERITY.search(message)
    return int(match.group(1)) if match else None


def parse_level(word: str) -> int | None:
    """`warnings`, an abbreviation of a level name, or 0-7."""
    if word.isdigit():
        return int(word) if int(word) <= 7 else None
    hits = [i for i, name in enumerate(LEVELS) if name.startswith(word.lower())]
    return hits[0] if len(hits) == 1 else None


@dataclass
class Timestamps:
    """`service timestamps log datetime [msec] [localtime] [show-timezone] [year]` (or `uptime`)."""

    msec: bool = True
    localtime: bool = False
    show_timezone: bool = False
    year: bool = False

    def config_line(self) -> str:
        words = ["service timestamps log datetime"]
        words += [w for w, on in (("msec", self.msec), ("localtime", self.localtime),
                                  ("show-timezone", self.show_timezone), ("year", self.year)) if on]
        return " ".join(words)


@dataclass
class LogBuffer:
    """What `show logging` shows. Messages above ``level`` are not kept; the oldest go when ``size`` bytes
    are exceeded; with buffered logging off nothing is kept."""

    enabled: bool = True
    size: int = DEFAULT_BUFFER_BYTES
    level: int = 7
    sequence_numbers: bool = False
    timestamps: Timestamps = field(default_factory=Timestamps)
    lines: list[str] = field(default_factory=list)
    logged: int = 0  # messages that went into the buffer
    total: int = 0  # every message (the sequence number counts these)

    def add(self, moment: datetime, zone: Zone, message: str) -> None:
        self.total += 1
        severity = severity_of(message)
        if not self.enabled or (severity is not None and severity > self.level):
            return
        self.logged += 1
        # a multi-line message (%PKI-3-CRL_FETCH_FAIL's `Reason :` line) keeps its continuation lines
        self.lines.extend(self.render(moment, zone, message).split("\n"))
        self._trim()

    def render(self, moment: datetime, zone: Zone, message: str) -> str:
        ts = self.timestamps
        # without `localtime` IOS stamps in UTC whatever `clock timezone` says
        stamp = log_timestamp(moment, zone if ts.localtime else UTC_ZONE, msec=ts.msec,
                              show_zone=ts.show_timezone)
        if ts.year:  # `*Oct 11 2018 17:02:22.999 PDT` (event_manager_run_syslog_msg__gh_freeztp_c3850.txt)
            month_day, rest = stamp[:7], stamp[7:]
            stamp = f"{month_day} {(zone.local(moment)[0] if ts.localtime else moment).year}{rest}"
        prefix = f"{self.total:06d}: " if self.sequence_numbers else ""
        return f"{prefix}{stamp}: {message}"

    def _trim(self) -> None:
        total = sum(len(x) + 1 for x in self.lines)
        while self.lines and total > self.size:
            total -= len(self.lines.pop(0)) + 1

    def configure(self, *, size: int | None, level: int | None) -> None:
        """`logging buffered [SIZE] [LEVEL]`: on, with what was given; a smaller buffer drops the oldest."""
        self.enabled = True
        if size is not None:
            self.size = size
        if level is not None:
            self.level = level
        self._trim()

    def disable(self) -> None:
        """`no logging buffered`: off, and the buffer is emptied."""
        self.enabled = False
        self.lines.clear()

    def service_lines(self) -> list[str]:
        return [self.timestamps.config_line(), *(["service sequence-numbers"] if self.sequence_numbers else [])]

    def logging_lines(self) -> list[str]:
        lines = []
        if not self.enabled:
            lines.append("no logging buffered")  # inferred rendering
        elif self.size != DEFAULT_BUFFER_BYTES or self.level != 7:
            line = "logging buffered"
            if self.size != DEFAULT_BUFFER_BYTES:
                line += f" {self.size}"
            if self.level != 7:
                line += f" {LEVELS[self.level]}"
            lines.append(line)
        return lines

    def header(self) -> list[str]:
        """The `Buffer logging:` line (send_log_severity_userlog__gh_rt01_iol.txt); `disabled` inferred."""
        if not self.enabled:
            return ["    Buffer logging:  disabled, xml disabled,", "                    filtering disabled"]
        return [f"    Buffer logging:  level {LEVELS[self.level]}, {self.logged} messages logged, xml disabled,",
                "                    filtering disabled"]
