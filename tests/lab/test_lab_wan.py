"""The lab's WAN (eemwatchd_lab.wan): every byte delayed by half a round trip each way, order kept, a connect
costing a round trip, ends and resets carried through, turns counted. Measured with clients that are not our
adapter (a raw TCP socket, a raw asyncssh client). Lower bounds only are timing facts of the model; the
upper bounds are loose sanity limits for a shared machine."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncssh
import pytest

from eemwatchd_lab.router import DeviceSpec, Fleet, LabDevice, User
from eemwatchd_lab.router.clock import ticking_clock
from eemwatchd_lab.wan import Wan, WanLink
from tests.support.clock import PINNED
from tests.support.lab_router import PASSWORD
from tests.support.ssh import RawClient

RTT = 0.040
SLACK = 0.002  # timer granularity of the event loop


@pytest.fixture
async def wan_lab(tmp_path: Path) -> AsyncIterator[LabDevice]:
    spec = DeviceSpec("w1", tmp_path / "w1", hostname="R1", users=(User("admin", PASSWORD),),
                      clock=ticking_clock(PINNED), wan=Wan(RTT))
    async with Fleet([spec]) as fleet:
        yield fleet["w1"]


async def _echo_server() -> tuple[asyncio.Server, int]:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def test_connect_costs_a_round_trip_and_the_banner_arrives_after_two(wan_lab: LabDevice) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    reader, writer = await asyncio.open_connection("127.0.0.1", wan_lab.port)
    banner = await asyncio.wait_for(reader.readline(), 5)
    elapsed = loop.time() - started
    writer.close()
    assert banner.startswith(b"SSH-2.0-")
    # SYN, SYN-ACK, ACK (1.5 RTT) until the router accepts, then half a round trip for its banner
    assert elapsed >= 2 * RTT - SLACK
    assert elapsed < 2 * RTT + 1.0


async def test_a_command_round_trip_costs_at_least_the_rtt_with_a_raw_asyncssh_client(wan_lab: LabDevice) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    client = await RawClient.open(wan_lab)
    connected = loop.time() - started
    await client.read_until("R1#")
    timings = []
    for _ in range(3):
        before = loop.time()
        out = await client.cmd("show clock")
        timings.append(loop.time() - before)
        assert " UTC " in out
    await client.close()
    # connect: the TCP handshake, key exchange and authentication are several round trips
    assert connected >= 3 * RTT
    assert all(RTT - SLACK <= t < RTT + 1.0 for t in timings), timings
    session = wan_lab.link_sessions[-1]
    async with asyncio.timeout(2):
        while session.closed is None:  # the relay sees the client's close on its next loop turn
            await asyncio.sleep(0.005)
    assert session.bytes_up > 0
    assert session.bytes_down > 0


async def test_turns_count_the_client_speaking_after_the_router_answered(wan_lab: LabDevice) -> None:
    async def one_session(batched: bool) -> int:
        client = await RawClient.open(wan_lab)
        await client.read_until("R1#")
        before = wan_lab.link_sessions[-1].turns
        commands = ["show clock", "terminal length 0", "show clock", "terminal width 200"]
        if batched:
            client.send("".join(c + "\n" for c in commands))
            await client.read_until(r"terminal width 200\r\nR1#")
        else:
            for command in commands:
                await client.cmd(command)
        turns = wan_lab.link_sessions[-1].turns - before
        await client.close()
        return turns

    assert await one_session(batched=False) == 4
    assert await one_session(batched=True) == 1


async def test_bytes_keep_their_order_under_jitter() -> None:
    server, port = await _echo_server()
    async with server, WanLink(Wan(0.010, jitter=0.020, seed=7), port) as link:
        reader, writer = await asyncio.open_connection("127.0.0.1", link.port)
        sent = b""
        for i in range(200):
            chunk = f"{i:04d};".encode()
            writer.write(chunk)
            sent += chunk
            await writer.drain()
            if i % 20 == 0:
                await asyncio.sleep(0.001)
        got = b""
        async with asyncio.timeout(5):
            while len(got) < len(sent):
                got += await reader.read(65536)
        assert got == sent
        writer.write_eof()
        assert await asyncio.wait_for(reader.read(), 5) == b""  # the end travels like a byte
        writer.close()


async def test_a_router_refusing_the_connection_is_seen_through_the_link(tmp_path: Path) -> None:
    spec = DeviceSpec("w2", tmp_path / "w2", hostname="R1", users=(User("admin", PASSWORD),), vty_lines=1,
                      clock=ticking_clock(PINNED), wan=Wan(RTT))
    async with Fleet([spec]) as fleet:
        lab = fleet["w2"]
        first = await RawClient.open(lab)
        await first.read_until("R1#")
        with pytest.raises((asyncssh.Error, ConnectionError, OSError)):
            await asyncio.wait_for(RawClient.open(lab), 5)
        assert lab.refused_logins == 1
        await first.close()


async def test_a_restart_keeps_the_link_port_and_drops_its_sessions(wan_lab: LabDevice) -> None:
    port = wan_lab.port
    client = await RawClient.open(wan_lab)
    await client.read_until("R1#")
    await wan_lab.restart()
    assert wan_lab.port == port
    with pytest.raises((EOFError, asyncssh.Error, OSError)):
        await client.cmd("show clock", prompt="R1#")
    again = await RawClient.open(wan_lab)
    assert (await again.cmd("show clock")).endswith("R1#")
    await again.close()
    assert len(wan_lab.link_sessions) == 2  # kept across the restart


def test_wan_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="round-trip"):
        Wan(-0.1)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from eemwatchd.cli import main; sys.exit(main())", "lab-router",
         "--state-dir", "/nonexistent-never-used", "--jitter", "5"],
        capture_output=True, text=True, timeout=30, env=env, check=False)
    assert proc.returncode == 2
    assert "--jitter needs --rtt" in proc.stderr


async def test_lab_router_command_serves_routers_behind_the_wan(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]), "EEMWATCHD_LAB_PASSWORD": PASSWORD}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import sys; from eemwatchd.cli import main; sys.exit(main())", "lab-router",
        "--state-dir", str(tmp_path / "routers"), "--rtt", "40", "--username", "admin",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env)
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(20):
            first = (await proc.stdout.readline()).decode()
            note = (await proc.stdout.readline()).decode()
        port = int(first.split("\t")[1].rsplit(":", 1)[1])
        assert "round trip 40 ms" in note
        loop = asyncio.get_running_loop()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        started = loop.time()
        banner = await asyncio.wait_for(reader.readline(), 10)
        assert banner.startswith(b"SSH-2.0-")
        assert loop.time() - started >= 2 * RTT - 0.01  # measured after connect() returned: still the banner's delay
        writer.close()
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 20)
