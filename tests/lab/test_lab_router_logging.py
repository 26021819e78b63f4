"""The lab router's log settings over SSH: `logging buffered SIZE LEVEL`, `service timestamps log ...
localtime show-timezone`, `service sequence-numbers`, `clock timezone` / `clock summer-time`; read back with
the product's parse_log_lines / parse_show_clock / parse_clock_zones.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from eemwatchd.core.ios.parsers import parse_clock_zones, parse_event_history, parse_log_lines, parse_show_clock
from eemwatchd.errors import ParseError
from eemwatchd_lab.router import DeviceSpec, LabDevice
from eemwatchd_lab.router.clock import ticking_clock
from tests.support.lab_router import router_spec_for
from tests.support.ssh import RawClient, login
from tests.support.ssh import configure as _configure
from tests.support.transcripts import transcript, transcript_lines

SUMMER = datetime(2026, 7, 4, 10, 0, 0, tzinfo=UTC)
APPLET = ["event manager applet FIRE", "event none", 'action 1.0 syslog msg "fired"', "exit"]


@pytest.fixture
def router_spec(tmp_path: Path) -> DeviceSpec:
    """A summer date: `clock summer-time` has something to show."""
    return router_spec_for(tmp_path, clock=ticking_clock(SUMMER))


async def _fire(c: RawClient, router: LabDevice, marker: str) -> str:
    await c.cmd(f"send log 6 {marker}")
    await c.cmd("event manager run FIRE")
    await asyncio.wait_for(router.state.wait_for_jobs(), 5)
    return await c.cmd("show logging")


async def test_buffer_level_drops_the_test_fire_evidence(router: LabDevice) -> None:
    c = await login(router)
    await c.cmd("terminal length 0")
    await _configure(c, [*APPLET, "logging buffered 8192 warnings"])
    out = await _fire(c, router, "MARK-1")
    assert "    Buffer logging:  level warnings, " in out
    assert "Log Buffer (8192 bytes):" in out
    assert "MARK-1" not in out and "HA_EM-6-LOG" not in out  # informational: not kept
    with pytest.raises(ParseError, match="not in the log buffer"):
        parse_log_lines(out, marker="MARK-1")
    # the job itself succeeded: the history still shows it
    (row,) = parse_event_history(await c.cmd("show event manager history events"))
    assert row.status == "success"
    # a warning still goes in; `send log 4` is WARNING
    await c.cmd("send log 4 WARN-1")
    assert [x.tag for x in parse_log_lines(await c.cmd("show logging"))][-1] == "%SYS-4-USERLOG_WARNING"
    assert "logging buffered 8192 warnings" in await c.cmd("show running-config")
    await c.close()


async def test_buffer_size_drops_the_oldest_and_no_logging_buffered_drops_all(router: LabDevice) -> None:
    c = await login(router)
    await c.cmd("terminal length 0")
    await _configure(c, ["logging buffered 4096"])
    for i in range(80):
        await c.cmd(f"send log 6 FILL-{i:03d}-" + "x" * 40)
    kept = router.state.log_lines
    assert sum(len(x) + 1 for x in kept) <= 4096
    assert "FILL-079" in kept[-1] and not any("FILL-000" in x for x in kept)
    assert "    Buffer logging:  level debugging, " in await c.cmd("show logging")
    await _configure(c, ["no logging buffered"])
    out = await c.cmd("show logging")
    assert "    Buffer logging:  disabled, xml disabled," in out
    # the `Log Buffer` line stays, with nothing under it (show_logging_buffer_disabled_log_buffer_empty__genie_iosxe_10)
    assert "Log Buffer (4096 bytes):" in out and "FILL-" not in out
    real = transcript("show_logging_buffer_disabled_log_buffer_empty__genie_iosxe_10.txt")
    assert "    Buffer logging:  disabled, xml disabled," in real and "Log Buffer (" in real
    await c.cmd("send log 6 AFTER")
    assert router.state.log_lines == []
    assert "no logging buffered" in await c.cmd("show running-config")
    # the real header line (IOL capture) has the same shape as ours
    real = next(x for x in transcript_lines("send_log_severity_userlog__gh_rt01_iol.txt") if "Buffer logging:" in x)
    assert real.startswith("    Buffer logging:  level debugging, ")
    await c.close()


async def test_sequence_numbers_localtime_and_a_summer_time_zone(router: LabDevice) -> None:
    c = await login(router)
    await c.cmd("terminal length 0")
    await _configure(c, [
        *APPLET,
        "clock timezone CET 1 0",
        "clock summer-time CEST recurring last Sun Mar 2:00 last Sun Oct 3:00",
        "service timestamps log datetime msec localtime show-timezone",
        "service sequence-numbers",
    ])
    clock_text = await c.cmd("show clock")
    running = await c.cmd("show running-config")
    zones = parse_clock_zones(running)
    assert zones["CET"].total_seconds() == 3600 and zones["CEST"].total_seconds() == 7200
    shown = parse_show_clock(clock_text, zones=zones)
    assert " CEST Sat Jul 4 2026" in clock_text
    assert abs((shown - SUMMER).total_seconds()) < 30  # the same instant, shown in CEST
    out = await _fire(c, router, "MARK-Z")
    entries = parse_log_lines(out, marker="MARK-Z")
    assert [(e.tag, e.message, e.zone) for e in entries] == [("%HA_EM-6-LOG", "FIRE: fired", "CEST")]
    assert entries[0].sequence is not None and entries[0].sequence > 1
    moment = entries[0].moment(year=2026, zones=zones)
    assert moment is not None and abs((moment - SUMMER).total_seconds()) < 30
    assert "service sequence-numbers" in running
    assert "clock timezone CET 1 0" in running
    assert "clock summer-time CEST recurring last Sun Mar 2:00 last Sun Oct 3:00" in running
    # the settings survive a reload
    await c.cmd("write memory")
    await c.close()
    await router.restart()
    c = await login(router)
    await c.cmd("terminal length 0")
    assert " CEST " in await c.cmd("show clock")
    await c.cmd("send log 6 AFTER-RELOAD")
    (line,) = [x for x in router.state.log_lines if "AFTER-RELOAD" in x]
    assert line.startswith("000001: *Jul  4 12:0") and " CEST: %SYS-6-USERLOG_INFO" in line
    await c.close()


async def test_without_localtime_the_log_stays_in_utc(router: LabDevice) -> None:
    c = await login(router)
    await _configure(c, ["clock timezone IST 5 30", "service timestamps log datetime msec show-timezone"])
    await c.cmd("send log 6 UTC-STAMP")
    (entry,) = parse_log_lines("\n".join(router.state.log_lines), marker="CONFIG_I")
    assert entry.tag == "%SYS-6-USERLOG_INFO" and entry.zone == "UTC"
    assert "IST" in await c.cmd("show clock")
    assert (await c.cmd("conf t") + await c.cmd("clock timezone X 24")).endswith(
        "% Invalid input detected at '^' marker.\r\n\r\nR1(config)#")
    await c.close()
