"""EEM jobs in the lab router as IOS runs them: job ids, history rows at the end of a job, history size,
maxrun, and an SMTP peer that never answers. Driven by a raw asyncssh client, read back with the product's
parse_event_history.
"""

from __future__ import annotations

import asyncio

from eemwatchd.core.ios.parsers import parse_event_history, parse_log_lines
from eemwatchd_lab.router import LabDevice, SilentPeer
from tests.support.ssh import configure as _configure
from tests.support.ssh import login


async def test_job_ids_increase_and_history_keeps_the_last_n(router: LabDevice) -> None:
    c = await login(router)
    await c.cmd("terminal length 0")
    await _configure(c, ["event manager applet TICK", "event none", 'action 1.0 syslog msg "tick"', "exit",
                         "event manager history size events 2"])
    for _ in range(3):
        await c.cmd("event manager run TICK")
        await asyncio.wait_for(router.state.wait_for_jobs(), 5)
    rows = parse_event_history(await c.cmd("show event manager history events"))
    assert [(r.number, r.job_id, r.status, r.name) for r in rows] == [(1, 2, "success", "TICK"),
                                                                      (2, 3, "success", "TICK")]
    assert "event manager history size events 2" in await c.cmd("show running-config")
    # the default size is 10: eleven jobs leave ten rows, job ids 2..11
    await _configure(c, ["no event manager history size events"])
    for _ in range(8):
        await c.cmd("event manager run TICK")
        await asyncio.wait_for(router.state.wait_for_jobs(), 5)
    rows = parse_event_history(await c.cmd("show event manager history events"))
    assert [r.job_id for r in rows] == list(range(2, 12))
    assert "history size" not in await c.cmd("show running-config")
    assert (await c.cmd("conf t") + await c.cmd("event manager history size events 51")).endswith(
        "% Invalid input detected at '^' marker.\r\n\r\nR1(config)#")
    await c.close()


async def test_silent_smtp_server_times_out_within_maxrun_and_the_row_is_not_success(router: LabDevice) -> None:
    c = await login(router)
    await c.cmd("terminal length 0")
    async with SilentPeer() as peer:
        await _configure(c, [
            "event manager environment _email_server 127.0.0.1",
            "event manager applet MAIL",
            "event none maxrun 2",
            f'action 0010 mail server "$_email_server" to "a@lab.example" from "r@lab.example" subject "s" '
            f'body "b" port {peer.port}',
        ])
        await c.cmd("send log 6 MARK-SILENT")
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await c.cmd("event manager run MAIL") == "event manager run MAIL\r\nR1#"
        # while the job runs there is no row at all: the row appears when the job ends
        await asyncio.sleep(0.3)
        assert router.state.running_jobs == 1
        assert parse_event_history(await c.cmd("show event manager history events")) == []
        await asyncio.wait_for(router.state.wait_for_jobs(), 5)
        elapsed = loop.time() - started
        assert peer.accepted == 1
    assert 1.5 < elapsed < 3.5, elapsed  # maxrun 2 ended it, not a longer mail timeout
    (row,) = parse_event_history(await c.cmd("show event manager history events"))
    assert (row.job_id, row.name) == (1, "MAIL")
    assert row.status != "success"
    log = parse_log_lines(await c.cmd("show logging"), marker="MARK-SILENT")
    # eem_mail_action_debug_fmpd_smtp_timeout__gh_networklessons_ios.txt: `<server> : timeout error`
    assert [(x.tag, x.message) for x in log] == [
        ("%HA_EM-3-FMPD_SMTP", "Error occurred when sending mail to SMTP server: 127.0.0.1 : timeout error"),
        ("%HA_EM-3-FMPD_ERROR", "Error executing applet MAIL statement 0010"),
    ]
    await c.close()
