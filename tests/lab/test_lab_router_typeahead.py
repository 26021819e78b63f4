"""The lab router takes type-ahead like IOS: lines written at once are taken one at a time, each echoed after
the prompt it is taken at (never before: field notes sec. 6, a fake that echoes type-ahead before the prompt
breaks prompt detection under load), in config modes too, and a refused or invalid line does not stop the
lines after it. Driven by clients that are not our adapter (raw asyncssh, netmiko)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from eemwatchd_lab.router import DeviceSpec, LabDevice, User
from eemwatchd_lab.router.clock import ticking_clock
from tests.support.clock import PINNED
from tests.support.lab_router import PASSWORD
from tests.support.ssh import RawClient, login

BANNER = "Enter configuration commands, one per line.  End with CNTL/Z."
DEFINITION = ["crypto pki trustpoint T1", "enrollment terminal", "revocation-check none", "chain-validation stop"]


@pytest.fixture
def router_spec(tmp_path: Path) -> DeviceSpec:
    return DeviceSpec(
        "r1", tmp_path / "r1", hostname="R1", clock=ticking_clock(PINNED),
        users=(User("admin", PASSWORD),
               User("norevoke", PASSWORD, allowed_commands=("show", "terminal", "configure", "crypto", "enrollment",
                                                            "chain-validation", "end", "exit"))),
    )


async def test_config_lines_typed_ahead_are_echoed_after_each_prompt(router: LabDevice) -> None:
    lab = router
    c = await login(lab)
    c.send("".join(f"{line}\n" for line in ["configure terminal", *DEFINITION, "end"]))
    out = await c.read_until(r"end\r\nR1#")
    assert out == (f"configure terminal\r\n{BANNER}\r\nR1(config)#crypto pki trustpoint T1\r\n"
                   "R1(ca-trustpoint)#enrollment terminal\r\nR1(ca-trustpoint)#revocation-check none\r\n"
                   "R1(ca-trustpoint)#chain-validation stop\r\nR1(ca-trustpoint)#end\r\nR1#")
    tp = lab.state.trustpoints["T1"]
    assert (tp.enrollment, tp.revocation_check, tp.chain_validation) == ("terminal", "none", "stop")
    await c.close()


async def test_a_refused_line_typed_ahead_does_not_stop_the_lines_after_it(router: LabDevice) -> None:
    lab = router
    c = await login(lab, username="norevoke")
    c.send("".join(f"{line}\n" for line in ["configure terminal", *DEFINITION]))
    out = await c.read_until(r"chain-validation stop\r\nR1\(ca-trustpoint\)#")
    assert ("R1(ca-trustpoint)#revocation-check none\r\nCommand authorization failed.\r\n\r\n"
            "R1(ca-trustpoint)#chain-validation stop\r\n") in out
    tp = lab.state.trustpoints["T1"]
    assert (tp.enrollment, tp.revocation_check, tp.chain_validation) == ("terminal", None, "stop")
    await c.close()


async def test_type_ahead_before_the_first_prompt_waits_for_it(router: LabDevice) -> None:
    lab = router
    client = await RawClient.open(lab)
    client.send("terminal length 0\nshow clock\n")  # before anything was read: the session just started
    out = await client.read_until(r"UTC [^\r]*\r\nR1#")
    assert out.startswith("\r\nR1#terminal length 0\r\nR1#show clock\r\n*")
    await client.close()


async def test_netmiko_typed_ahead_definition(router: LabDevice) -> None:
    lab = router
    netmiko = pytest.importorskip("netmiko")

    def flow() -> str:
        conn = netmiko.ConnectHandler(device_type="cisco_ios", host="127.0.0.1", port=lab.port, username="admin",
                                      password=PASSWORD, fast_cli=False, conn_timeout=5)
        try:
            conn.config_mode()
            conn.write_channel("".join(f"{line}\n" for line in DEFINITION))  # one write, no waiting for echoes
            out: str = conn.read_until_pattern(pattern=r"chain-validation stop\r?\nR1\(ca-trustpoint\)#",
                                               read_timeout=10)
            conn.exit_config_mode()
            return out
        finally:
            conn.disconnect()

    out = await asyncio.wait_for(asyncio.to_thread(flow), 30)
    assert "R1(ca-trustpoint)#enrollment terminal" in out
    assert "R1(ca-trustpoint)#revocation-check none" in out
    tp = lab.state.trustpoints["T1"]
    assert (tp.enrollment, tp.revocation_check, tp.chain_validation) == ("terminal", "none", "stop")
