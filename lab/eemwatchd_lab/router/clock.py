"""The lab router's clock: an injectable time source, `clock timezone`/`summer-time`, and how IOS prints time."""

from __future__ import annotations

import calendar
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

Clock = Callable[[], datetime]
"""Returns the current instant, timezone-aware (any zone; the device converts to UTC)."""

_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def wall_clock() -> datetime:
    return datetime.now(UTC)


def ticking_clock(start: datetime) -> Clock:
    """A clock that reads ``start`` now and advances with the monotonic clock: tests pin the date with it
    and still see time pass (maxrun, log order)."""
    if start.tzinfo is None:
        raise ValueError("ticking_clock: start must be timezone-aware")
    origin = time.monotonic()

    def now() -> datetime:
        return start + timedelta(seconds=time.monotonic() - origin)

    return now


def fixed_clock(moment: datetime) -> Clock:
    """A clock that always reads ``moment`` (a table-driven test of one rendering)."""
    if moment.tzinfo is None:
        raise ValueError("fixed_clock: moment must be timezone-aware")
    return lambda: moment


@dataclass(frozen=True)
class Transition:
    """One end of a `clock summer-time ... recurring` rule: week (1-4 or 5 = last), weekday, month, time."""

    week: int
    weekday: int  # 0 = Monday
    month: int
    minutes: int  # local time of day

    def on(self, year: int) -> datetime:
        """The local (naive) moment of this transition in ``year``."""
        days = [d for d, wd in calendar.Calendar().itermonthdays2(year, self.month) if d and wd == self.weekday]
        day = days[-1] if self.week >= 5 else days[self.week - 1]
        return datetime(year, self.month, day) + timedelta(minutes=self.minutes)


# `clock summer-time NAME recurring` with no dates uses the US rule (2nd Sunday in March 02:00 to 1st Sunday
# in November 02:00), as recalled from Cisco's `clock summer-time` reference (inferred: not in the corpus).
US_SUMMER = (Transition(2, 6, 3, 120), Transition(1, 6, 11, 120))


@dataclass(frozen=True)
class Zone:
    """`clock timezone NAME HOURS [MINUTES]` plus an optional recurring summer time."""

    name: str = "UTC"
    offset: timedelta = timedelta(0)
    summer_name: str | None = None
    summer_start: Transition | None = None
    summer_end: Transition | None = None
    summer_extra: timedelta = timedelta(hours=1)

    def local(self, moment: datetime) -> tuple[datetime, str]:
        """The wall-clock time (naive) and zone name a router in this zone shows for ``moment``."""
        standard = moment.astimezone(UTC).replace(tzinfo=None) + self.offset
        if self.summer_name and self.summer_start and self.summer_end:
            start = self.summer_start.on(standard.year)
            # the end is given in summer (local) time; compare in standard time
            end = self.summer_end.on(standard.year) - self.summer_extra
            inside = start <= standard < end if start < end else not end <= standard < start
            if inside:
                return standard + self.summer_extra, self.summer_name
        return standard, self.name


UTC_ZONE = Zone()


def _day_month(moment: datetime) -> tuple[str, str]:
    return _WEEKDAYS[moment.weekday()], _MONTHS[moment.month - 1]


def log_timestamp(
    moment: datetime, zone: Zone = UTC_ZONE, *, msec: bool = True, show_zone: bool = False, synced: bool = False
) -> str:
    """`*Dec  6 20:17:37.657` (service timestamps log datetime msec; `*` = clock not synchronised).

    With `show-timezone`: `May 17 18:06:42.919 UTC` (the CML IOL capture in
    show_logging_sequence_numbers_timezone__gh_cml_iol.txt); `.` would mean "was synced, now is not",
    which the lab never is. The day is right-aligned in two columns like C's `%e` (send_log transcripts).
    """
    local, name = zone.local(moment)
    _, month = _day_month(local)
    text = f"{'' if synced else '*'}{month} {local.day:>2} {local:%H:%M:%S}"
    if msec:
        text += f".{local.microsecond // 1000:03d}"
    if show_zone:
        text += f" {name}"
    return text


def show_clock(moment: datetime, zone: Zone = UTC_ZONE, *, synced: bool = False) -> str:
    """`*12:17:34.123 UTC Thu Oct 19 2023`: day unpadded (parse_show_clock accepts both)."""
    local, name = zone.local(moment)
    weekday, month = _day_month(local)
    return (f"{'' if synced else '*'}{local:%H:%M:%S}.{local.microsecond // 1000:03d} {name} "
            f"{weekday} {month} {local.day} {local.year}")


def config_time(moment: datetime, zone: Zone = UTC_ZONE) -> str:
    """`12:17:34 UTC Thu Oct 19 2023` (show_running-config_head__gh_ansible_facts_csr1000v_17_3.txt)."""
    local, name = zone.local(moment)
    weekday, month = _day_month(local)
    return f"{local:%H:%M:%S} {name} {weekday} {month} {local.day} {local.year}"


def registered_time(moment: datetime, zone: Zone = UTC_ZONE) -> str:
    """`Fri Jun 14 16:50:53 2024` with an unpadded day (`Sun Jan 1 16:09:34 2006`): INDEX.md notes three
    spaces before the name for a one-digit day in the 26-wide column (policy_registered transcripts)."""
    local, _ = zone.local(moment)
    weekday, month = _day_month(local)
    return f"{weekday} {month} {local.day} {local:%H:%M:%S} {local.year}"


def history_time(moment: datetime, zone: Zone = UTC_ZONE) -> str:
    """`Wed Mar10 13:22:46 2021` (show_event_manager_history_events__gh_rolling_pcap_iosxe.txt).

    The real samples all have two-digit days and no space between month and day. The column is fixed
    width, so a one-digit day is taken to be space-padded like C's `%e` (`Tue Dec 1 23:49:35 2026`):
    `%a %b%e %H:%M:%S %Y`, always 23 characters. Inferred; docs/lab-router.md says so.
    """
    local, _ = zone.local(moment)
    weekday, month = _day_month(local)
    return f"{weekday} {month}{local.day:>2} {local:%H:%M:%S} {local.year}"


def pki_date(moment: datetime, zone: Zone = UTC_ZONE) -> str:
    """`15:49:05 UTC Oct 30 2023`: PKI dates in the router's zone, day unpadded (INDEX.md, show crypto pki)."""
    local, name = zone.local(moment)
    _, month = _day_month(local)
    return f"{local:%H:%M:%S} {name} {month} {local.day} {local.year}"
