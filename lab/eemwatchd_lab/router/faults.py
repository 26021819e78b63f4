"""Fault injection for one lab device (drops, delays, refused logins, errors, host key) and a silent peer."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass
class Faults:
    """What goes wrong on a device. Mutable: tests may change it while the device runs.

    ``drop_at_command``: close the connection (no output) when a line starts with this text.
    ``drop_after_commands``: close the connection once this many lines were executed in a session.
    ``output_delay``: seconds to wait before each piece of output (prompts included).
    ``refuse_login``: every authentication fails.
    ``change_host_key``: at the next start the device makes and saves a new host key.
    ``command_errors``: a command line (exact, after whitespace normalisation) -> the error text printed
    instead of running it.
    """

    drop_at_command: str | None = None
    drop_after_commands: int | None = None
    output_delay: float = 0.0
    refuse_login: bool = False
    change_host_key: bool = False
    command_errors: Mapping[str, str] = field(default_factory=dict)

    def error_for(self, line: str) -> str | None:
        return self.command_errors.get(" ".join(line.split()))

    def should_drop(self, line: str, executed: int) -> bool:
        """``executed`` counts the lines run before this one in the session."""
        if self.drop_at_command is not None and " ".join(line.split()).startswith(self.drop_at_command):
            return True
        return self.drop_after_commands is not None and executed >= self.drop_after_commands


class SilentPeer:
    """A TCP listener on 127.0.0.1 that accepts connections and never sends a byte: an SMTP server that
    hangs. Point an applet's `_email_server` at ``port``; the mail action then times out (`timeout error`).

    ``async with SilentPeer() as peer:``; ``peer.accepted`` counts the connections it swallowed.
    """

    def __init__(self) -> None:
        self.port = 0
        self.accepted = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._release = asyncio.Event()

    async def _hold(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self._writers.add(writer)
        await self._release.wait()

    async def __aenter__(self) -> SilentPeer:
        self._server = await asyncio.start_server(self._hold, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._release.set()
        for writer in self._writers:
            writer.transport.abort()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
