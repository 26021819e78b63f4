"""The lab router's clock: every time it shows comes from DeviceSpec.clock, rendered as IOS does.

Formats: show clock / config headers (show_running-config_head__gh_ansible_facts_csr1000v_17_3.txt), log
timestamps (send_log_* transcripts), policy registered (show_event_manager_policy_registered_applets_cron),
history (show_event_manager_history_events__gh_rolling_pcap_iosxe.txt; one-digit day inferred, padded).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncssh
import pytest

from eemwatchd.core.ios.parsers import parse_event_history, parse_show_clock
from eemwatchd_lab.router import DeviceSpec, Fleet, LabDevice, User
from eemwatchd_lab.router.clock import (
    Transition,
    Zone,
    config_time,
    fixed_clock,
    history_time,
    log_timestamp,
    registered_time,
    show_clock,
)
from eemwatchd_lab.router.eem import HISTORY_HEADER

PASSWORD = "clock-pw-1"
# clock summer-time CEST recurring last Sun Mar 2:00 last Sun Oct 3:00 (the EU rule)
CET = Zone("CET", timedelta(hours=1), "CEST", Transition(5, 6, 3, 120), Transition(5, 6, 10, 180))
IST = Zone("IST", timedelta(hours=5, minutes=30))


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


# id, instant (UTC), zone, show clock, log timestamp, history Time of Event, policy Time Registered
CASES = [
    ("one-digit-day", at(2026, 12, 1, 23, 49, 35, 120000), Zone(),
     "*23:49:35.120 UTC Tue Dec 1 2026", "*Dec  1 23:49:35.120", "Tue Dec 1 23:49:35 2026",
     "Tue Dec 1 23:49:35 2026"),
    ("two-digit-day", at(2021, 3, 10, 13, 22, 46), Zone(),
     "*13:22:46.000 UTC Wed Mar 10 2021", "*Mar 10 13:22:46.000", "Wed Mar10 13:22:46 2021",
     "Wed Mar 10 13:22:46 2021"),
    ("month-end", at(2026, 4, 30, 23, 59, 59, 999000), Zone(),
     "*23:59:59.999 UTC Thu Apr 30 2026", "*Apr 30 23:59:59.999", "Thu Apr30 23:59:59 2026",
     "Thu Apr 30 23:59:59 2026"),
    ("leap-day", at(2028, 2, 29, 6, 0, 1), Zone(),
     "*06:00:01.000 UTC Tue Feb 29 2028", "*Feb 29 06:00:01.000", "Tue Feb29 06:00:01 2028",
     "Tue Feb 29 06:00:01 2028"),
    ("new-year", at(2027, 1, 1, 0, 0, 0), Zone(),
     "*00:00:00.000 UTC Fri Jan 1 2027", "*Jan  1 00:00:00.000", "Fri Jan 1 00:00:00 2027",
     "Fri Jan 1 00:00:00 2027"),
    ("dst-before", at(2026, 3, 29, 0, 59, 59), CET,
     "*01:59:59.000 CET Sun Mar 29 2026", "*Mar 29 01:59:59.000", "Sun Mar29 01:59:59 2026",
     "Sun Mar 29 01:59:59 2026"),
    ("dst-after", at(2026, 3, 29, 1, 0, 0), CET,
     "*03:00:00.000 CEST Sun Mar 29 2026", "*Mar 29 03:00:00.000", "Sun Mar29 03:00:00 2026",
     "Sun Mar 29 03:00:00 2026"),
    ("dst-end", at(2026, 10, 25, 1, 0, 0), CET,
     "*02:00:00.000 CET Sun Oct 25 2026", "*Oct 25 02:00:00.000", "Sun Oct25 02:00:00 2026",
     "Sun Oct 25 02:00:00 2026"),
    ("half-hour-zone-crosses-midnight", at(2026, 12, 31, 19, 0, 0), IST,
     "*00:30:00.000 IST Fri Jan 1 2027", "*Jan  1 00:30:00.000", "Fri Jan 1 00:30:00 2027",
     "Fri Jan 1 00:30:00 2027"),
]


@pytest.mark.parametrize(("moment", "zone", "clock", "log", "history", "registered"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_every_rendering_of_an_instant(
    moment: datetime, zone: Zone, clock: str, log: str, history: str, registered: str
) -> None:
    assert show_clock(moment, zone) == clock
    assert log_timestamp(moment, zone) == log
    assert history_time(moment, zone) == history
    assert len(history) == len("Wed Mar10 13:22:46 2021")  # the column stays aligned
    assert registered_time(moment, zone) == registered
    # the product's parser reads back the instant the simulator rendered
    zones = {zone.name: zone.offset, **({zone.summer_name: zone.offset + zone.summer_extra}
                                         if zone.summer_name else {})}
    assert parse_show_clock(clock, zones=zones) == moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def test_log_timestamp_with_zone_and_config_time() -> None:
    moment = at(2026, 5, 17, 18, 6, 42, 919000)
    assert log_timestamp(moment, show_zone=True) == "*May 17 18:06:42.919 UTC"
    assert log_timestamp(moment, CET, show_zone=True, synced=True) == "May 17 20:06:42.919 CEST"
    assert log_timestamp(moment, msec=False) == "*May 17 18:06:42"
    assert config_time(moment, CET) == "20:06:42 CEST Sun May 17 2026"


def test_naive_clock_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        fixed_clock(datetime(2026, 1, 1))


# --- over SSH: the device shows its clock, not the host's ------------------------------------------------


class _Clock:
    """A clock a test moves by hand."""

    def __init__(self, moment: datetime) -> None:
        self.moment = moment

    def __call__(self) -> datetime:
        return self.moment


async def _shell(router: LabDevice) -> tuple[asyncssh.SSHClientConnection, Callable[[str], object]]:
    conn = await asyncssh.connect("127.0.0.1", router.port, username="admin", password=PASSWORD,
                                  known_hosts=None, client_keys=None)
    proc = await conn.create_process(encoding="utf-8")
    buffer = [""]

    async def cmd(line: str) -> str:
        proc.stdin.write(line + "\n")
        async with asyncio.timeout(10):
            while not re.search(r"R1(\([a-z-]+\))?#$", buffer[0]) or not buffer[0].startswith(line):
                buffer[0] += await proc.stdout.read(65536)
        out, buffer[0] = buffer[0], ""
        return out

    async with asyncio.timeout(10):
        while not buffer[0].endswith("R1#"):
            buffer[0] += await proc.stdout.read(65536)
    buffer[0] = ""
    return conn, cmd


SYSLOG_APPLET = ["conf t", "event manager applet TICK", "event none", 'action 1.0 syslog msg "tick"', "end"]


@pytest.mark.parametrize(("moment", "row_time"), [
    (at(2026, 12, 1, 23, 49, 35), "Tue Dec 1 23:49:35 2026"),
    (at(2026, 12, 10, 8, 5, 0), "Thu Dec10 08:05:00 2026"),
], ids=["one-digit-day", "two-digit-day"])
async def test_history_row_over_ssh(tmp_path: Path, moment: datetime, row_time: str) -> None:
    clock = _Clock(moment)
    spec = DeviceSpec("c1", tmp_path / "c1", hostname="R1", users=(User("admin", PASSWORD),), clock=clock)
    async with Fleet([spec]) as fleet:
        router = fleet["c1"]
        conn, cmd = await _shell(router)
        await cmd("terminal length 0")
        for line in SYSLOG_APPLET:
            await cmd(line)
        await cmd("event manager run TICK")
        await asyncio.wait_for(router.state.wait_for_jobs(), 5)
        out = str(await cmd("show event manager history events"))
        lines = out.split("\r\n")
        assert lines[1:3] == [
            HISTORY_HEADER,
            f"1    1      Actv success  {row_time}  none              applet: TICK",
        ]
        (event,) = parse_event_history(out)
        assert (event.job_id, event.status, event.time_text, event.name) == (1, "success", row_time, "TICK")
        conn.close()


async def test_clock_crosses_new_year_and_offset_applies(tmp_path: Path) -> None:
    clock = _Clock(at(2026, 12, 31, 23, 59, 59, 500000))
    spec = DeviceSpec("c2", tmp_path / "c2", hostname="R1", users=(User("admin", PASSWORD),), clock=clock,
                      clock_offset=timedelta(minutes=-3))
    async with Fleet([spec]) as fleet:
        router = fleet["c2"]
        conn, cmd = await _shell(router)
        await cmd("terminal length 0")
        assert "*23:56:59.500 UTC Thu Dec 31 2026" in str(await cmd("show clock"))
        clock.moment = at(2027, 1, 1, 0, 3, 0, 250000)
        assert "*00:00:00.250 UTC Fri Jan 1 2027" in str(await cmd("show clock"))
        await cmd("send log 6 NEW-YEAR")
        assert "*Jan  1 00:00:00.250: %SYS-6-USERLOG_INFO: Message from tty2(user id: admin): NEW-YEAR" in str(
            await cmd("show logging | include NEW-YEAR"))
        await cmd("conf t")
        await cmd("hostname R1")
        await cmd("end")
        running = str(await cmd("show running-config"))
        assert "! Last configuration change at 00:00:00 UTC Fri Jan 1 2027 by admin" in running
        conn.close()
