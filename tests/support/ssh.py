"""A raw SSH client for the lab router (asyncssh, no PTY): not our adapter, so the two cannot share a mistake."""

from __future__ import annotations

import asyncio
import re

import asyncssh

from eemwatchd_lab.router import LabDevice
from tests.support.lab_router import PASSWORD


class RawClient:
    """A plain asyncssh shell session WITHOUT a PTY, reading bytes as they come."""

    def __init__(self, conn: asyncssh.SSHClientConnection, proc: asyncssh.SSHClientProcess[str]) -> None:
        self.conn = conn
        self.proc = proc
        self.buffer = ""

    @classmethod
    async def open(cls, router: LabDevice, *, username: str = "admin", password: str | None = PASSWORD,
                   **kwargs: object) -> RawClient:
        conn = await asyncssh.connect(
            "127.0.0.1", router.port, username=username, password=password, known_hosts=None,
            client_keys=None, **kwargs,  # type: ignore[arg-type]
        )
        proc = await conn.create_process(encoding="utf-8")
        return cls(conn, proc)

    async def read_until(self, pattern: str, timeout: float = 5.0) -> str:
        """Everything up to and including the first match of ``pattern`` (a regex)."""
        regex = re.compile(pattern)
        async with asyncio.timeout(timeout):
            while not (m := regex.search(self.buffer)):
                try:
                    chunk = await self.proc.stdout.read(65536)
                except asyncssh.ConnectionLost:
                    chunk = ""
                if not chunk:
                    raise EOFError(f"connection closed; got {self.buffer!r}")
                self.buffer += chunk
        out, self.buffer = self.buffer[: m.end()], self.buffer[m.end() :]
        return out

    def send(self, text: str) -> None:
        self.proc.stdin.write(text)

    async def cmd(self, line: str, prompt: str = r"R1(\([a-z-]+\))?[#>]$") -> str:
        self.send(line + "\n")
        return await self.read_until(prompt.replace("$", ""))

    async def close(self) -> None:
        self.conn.close()
        await self.conn.wait_closed()


async def login(router: LabDevice, **kwargs: object) -> RawClient:
    """A RawClient at the R1 prompt (admin with PASSWORD unless ``kwargs`` say otherwise)."""
    client = await RawClient.open(router, **kwargs)  # type: ignore[arg-type]
    first = await client.read_until(r"R1[#>]")
    assert first in ("\r\nR1#", "\r\nR1>")
    return client


def lines_of(output: str) -> list[str]:
    return output.split("\r\n")


async def configure(c: RawClient, lines: list[str]) -> None:
    """Configuration lines through a raw SSH client; none may draw a `%` error."""
    await c.cmd("conf t")
    for line in lines:
        out = await c.cmd(line)
        assert "%" not in out, out
    await c.cmd("end")
