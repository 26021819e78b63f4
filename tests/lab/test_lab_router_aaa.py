"""AAA command authorization in the lab router, over real SSH with a raw asyncssh client.

Refusal wording: `Command authorization failed.` (no `%`) for a refused command, `% Authorization failed.`
for a refused exec session; sources and what is inferred are in docs/lab-router.md ("AAA").
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from eemwatchd_lab.router import READ_ONLY_COMMANDS, DeviceSpec, LabDevice, User
from tests.support.lab_router import PASSWORD, router_spec_for
from tests.support.ssh import RawClient, login

REFUSED = "Command authorization failed.\r\n\r\n"
USERS = (
    User("admin", PASSWORD),
    User("viewer", PASSWORD, allowed_commands=("terminal", "show clock", "show crypto pki")),
    User("ro", PASSWORD, allowed_commands=READ_ONLY_COMMANDS),
    User("eemonly", PASSWORD, allowed_commands=("terminal", "show", "configure terminal", "event manager applet",
                                                 "event none", "action")),
    User("noexec", PASSWORD, exec_authorized=False),
)


@pytest.fixture
def router_spec(tmp_path: Path) -> DeviceSpec:
    return router_spec_for(tmp_path, users=USERS)


def _snapshot(router: LabDevice) -> tuple[object, ...]:
    d = router.state
    return (sorted(d.trustpoints), dict(d.env), sorted(d.applets), d.last_change, list(d.log_lines),
            list(d.history), d.running_jobs, d.hostname)


@pytest.mark.parametrize("line", ["show running-config", "sh run", "show running-config | section crypto",
                                  "configure terminal", "conf t", "event manager run CERTCHECK",
                                  "send log 6 hello", "write memory", "copy running-config startup-config"])
async def test_viewer_is_refused_every_command_outside_its_rules(router: LabDevice, line: str) -> None:
    c = await login(router, username="viewer")
    before = _snapshot(router)
    assert await c.cmd(line) == f"{line}\r\n{REFUSED}R1#"
    assert _snapshot(router) == before
    assert not (router.spec.state_dir / "startup-config").exists()
    assert (await c.cmd("sh clock")).startswith("sh clock\r\n*23:4")  # what it may do still works
    await c.close()


async def test_read_only_user_reads_everything_and_changes_nothing(router: LabDevice) -> None:
    c = await login(router, username="ro")
    await c.cmd("terminal length 0")
    assert "Current configuration" in await c.cmd("show running-config")
    assert "Trustpoint SLA-TrustPoint:" in await c.cmd("show crypto pki trustpoints")
    before = _snapshot(router)
    for line in ("configure terminal", "event manager run X", "write", "send log hi"):
        assert await c.cmd(line) == f"{line}\r\n{REFUSED}R1#"
    assert _snapshot(router) == before
    # a command that does not parse is an invalid-input error, not a refusal (parse first, then authorize)
    assert "% Invalid input detected" in await c.cmd("show nonsense")
    await c.close()


async def test_config_mode_refusals_crypto_pki_and_do(router: LabDevice) -> None:
    c = await login(router, username="eemonly")
    assert (await c.cmd("configure terminal")).endswith("R1(config)#")
    before = _snapshot(router)
    for line in ("crypto pki trustpoint CA-X", "crypto pki authenticate SLA-TrustPoint",
                 "no crypto pki trustpoint SLA-TrustPoint", "hostname PWNED",
                 "event manager environment _email_server x", "do event manager run CERTCHECK",
                 "do write memory"):
        assert await c.cmd(line) == f"{line}\r\n{REFUSED}R1(config)#", line
    assert _snapshot(router) == before
    # allowed configuration still works, and `end` is never refused
    assert await c.cmd("event manager applet CERTCHECK") == "event manager applet CERTCHECK\r\nR1(config-applet)#"
    assert await c.cmd("event none") == "event none\r\nR1(config-applet)#"
    assert await c.cmd("end") == "end\r\nR1#"
    assert "CERTCHECK" in router.state.applets
    await c.close()


async def test_refused_exec_session(router: LabDevice) -> None:
    client = await RawClient.open(router, username="noexec")
    # everything until the router ends the session: the refusal, no prompt
    assert await asyncio.wait_for(client.proc.stdout.read(), 5) == "\r\n% Authorization failed.\r\n"
    assert client.proc.exit_status == 1
    await client.close()


async def test_users_without_rules_are_not_authorized_per_command(router: LabDevice) -> None:
    c = await login(router)
    assert (await c.cmd("conf t")).endswith("R1(config)#")
    assert await c.cmd("crypto pki trustpoint CA-X") == "crypto pki trustpoint CA-X\r\nR1(ca-trustpoint)#"
    await c.close()
    assert "allowed_commands=('show', 'terminal')" in repr(USERS[2])
    assert PASSWORD not in repr(USERS[2])
