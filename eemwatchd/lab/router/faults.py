"""Fault injection for one lab device: drops, delays, refused logins, errors, a changed host key."""

from __future__ import annotations

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
