"""Global settings of the lab router: `clock timezone/summer-time`, `logging buffered`, `service ...` lines."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from eemwatchd_lab.router.clock import US_SUMMER, Transition, Zone
from eemwatchd_lab.router.logbuffer import MIN_BUFFER_BYTES, LogBuffer, Timestamps, parse_level

if TYPE_CHECKING:
    from eemwatchd_lab.router.device import Device

Words = list[tuple[str, int]]
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")


class SettingError(ValueError):
    """A setting's arguments are invalid; ``column`` as in eem.ActionSyntaxError (-1: incomplete)."""

    def __init__(self, column: int) -> None:
        super().__init__(f"invalid at {column}")
        self.column = column


def _keyword(word: tuple[str, int], choices: tuple[str, ...]) -> str:
    hits = [c for c in choices if c.startswith(word[0].lower())]
    if word[0].lower() in choices:
        return word[0].lower()
    if len(hits) != 1:
        raise SettingError(word[1])
    return hits[0]


def logging_buffered(buf: LogBuffer, args: Words) -> None:
    """`logging buffered [SIZE] [LEVEL]` (SIZE 4096-2147483647; LEVEL a name or 0-7)."""
    size = level = None
    rest = list(args)
    if rest and rest[0][0].isdigit() and int(rest[0][0]) > 7:
        if not MIN_BUFFER_BYTES <= int(rest[0][0]) <= 2147483647:
            raise SettingError(rest[0][1])
        size = int(rest.pop(0)[0])
    if rest:
        level = parse_level(rest[0][0])
        if level is None:
            raise SettingError(rest[0][1])
        rest.pop(0)
    if rest:
        raise SettingError(rest[0][1])
    buf.configure(size=size, level=level)


def service_timestamps(buf: LogBuffer, args: Words) -> None:
    """`service timestamps log datetime [msec] [localtime] [show-timezone] [year]`; `debug` is accepted
    and ignored (the lab has no debug output)."""
    if len(args) < 2:
        raise SettingError(-1)
    kind = _keyword(args[0], ("debug", "log"))
    style = _keyword(args[1], ("datetime", "uptime"))
    if style == "uptime":
        raise SettingError(args[1][1])  # not simulated
    options = {_keyword(w, ("msec", "localtime", "show-timezone", "year")) for w in args[2:]}
    if kind == "log":
        buf.timestamps = Timestamps(msec="msec" in options, localtime="localtime" in options,
                                    show_timezone="show-timezone" in options, year="year" in options)


def clock_timezone(args: Words) -> Zone:
    """`clock timezone NAME HOURS [MINUTES]` (hours -23..23, minutes 0-59)."""
    if len(args) < 2:
        raise SettingError(-1)
    name, (hours_text, hours_col) = args[0][0], args[1]
    try:
        hours = int(hours_text)
    except ValueError:
        raise SettingError(hours_col) from None
    if not -23 <= hours <= 23:
        raise SettingError(hours_col)
    minutes = 0
    if len(args) > 2:
        if not args[2][0].isdigit() or int(args[2][0]) > 59:
            raise SettingError(args[2][1])
        minutes = int(args[2][0])
    if len(args) > 3:
        raise SettingError(args[3][1])
    sign = -1 if hours_text.startswith("-") else 1
    return Zone(name, timedelta(hours=hours, minutes=sign * minutes))


def _transition(words: Words) -> Transition:
    week_word, day_word, month_word, time_word = words
    week_text = week_word[0].lower()
    if week_text in ("first", "last"):
        week = 1 if week_text == "first" else 5
    elif week_text.isdigit() and 1 <= int(week_text) <= 4:
        week = int(week_text)
    else:
        raise SettingError(week_word[1])
    day = _keyword(day_word, _DAYS)
    month = _keyword(month_word, _MONTHS)
    hh, _, mm = time_word[0].partition(":")
    if not (hh.isdigit() and mm.isdigit() and int(hh) < 24 and int(mm) < 60):
        raise SettingError(time_word[1])
    return Transition(week, _DAYS.index(day), _MONTHS.index(month) + 1, int(hh) * 60 + int(mm))


def clock_summer_time(zone: Zone, args: Words) -> tuple[Zone, str]:
    """`clock summer-time NAME recurring [W D M HH:MM W D M HH:MM [OFFSET]]`; without dates the US rule.
    Returns the zone and the argument text after `recurring` (as the running-config shows it)."""
    if len(args) < 2:
        raise SettingError(-1)
    name = args[0][0]
    if _keyword(args[1], ("recurring", "date")) != "recurring":
        raise SettingError(args[1][1])  # `date` (one-off) rules are not simulated
    rest = args[2:]
    start, end = US_SUMMER
    extra = 60
    if rest:
        if len(rest) not in (8, 9):
            raise SettingError(rest[-1][1] if len(rest) > 9 else -1)
        start, end = _transition(rest[:4]), _transition(rest[4:8])
        if len(rest) == 9:
            if not rest[8][0].isdigit() or not 1 <= int(rest[8][0]) <= 1440:
                raise SettingError(rest[8][1])
            extra = int(rest[8][0])
    zone = Zone(zone.name, zone.offset, name, start, end, timedelta(minutes=extra))
    return zone, " ".join(w for w, _ in rest)


def _words(text: str) -> Words:
    out: Words = []
    column = 0
    for word in text.split():
        column = text.index(word, column)
        out.append((word, column))
        column += len(word)
    return out


def replay_setting(device: Device, line: str) -> None:
    """One saved global setting line back into the device (boot from startup-config)."""
    words = _words(line)
    head = " ".join(w for w, _ in words[:2])
    if head == "clock timezone":
        device.zone = clock_timezone(words[2:])
    elif head == "clock summer-time":
        device.zone, device.summer_text = clock_summer_time(device.zone, words[2:])
    elif head == "logging buffered":
        logging_buffered(device.logbuf, words[2:])
    elif head == "no logging":
        device.logbuf.disable()
    elif head == "service timestamps":
        service_timestamps(device.logbuf, words[2:])
    elif head == "service sequence-numbers":
        device.logbuf.sequence_numbers = True
