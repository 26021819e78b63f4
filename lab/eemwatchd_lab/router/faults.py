"""Fault injection for one lab device (drops, hangs, delays, refusals, noise, mail outages, refused logins, host
key) and a silent peer."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

# What a busy router logs beside eemwatchd's work, for ``Faults.log_noise``: untagged debug output (Cisco doc
# 117337's `debug crypto pki`; the C8000V 17.16.1a buffer's `yang-infra:` and `VXE-CSL-DBG:` lines), another
# applet's mail failure (eem_applet_mail_fmpd_smtp_error__gh_iosv.txt) and its log line, a login and a config
# change by someone else. `{applet}` is a look-alike of the applet under test (its name with a suffix): its
# lines must never be taken for the real applet's. Every line is in the shape a real router prints.
NOISE = (
    "CRYPTO_PKI: (A16A8) Check for identical certs",
    "%HA_EM-3-FMPD_SMTP: Error occurred when sending mail to SMTP server: 192.0.2.25 : "
    "error in connecting to SMTP server",
    "%HA_EM-3-FMPD_ERROR: Error executing applet WATCHDOG statement 0010",
    "yang-infra: self-signed cert inserted(TP-self-signed-2955588305)",
    "%HA_EM-6-LOG: {applet}: {applet} mail sent",
    "%SEC_LOGIN-5-LOGIN_SUCCESS: Login Success [user: netops] [Source: 192.0.2.7] [localport: 22]",
    "CRYPTO_PKI: No trust point for cert issuer, looking up cert chain",
    "%HA_EM-3-FMPD_ERROR: Error executing applet {applet} statement 0010",
    "VXE-CSL-DBG:Unable to open the postFR backup file/file not present",
    "%SYS-5-CONFIG_I: Configured from console by netops on vty4 (192.0.2.7)",
)
# The look-alike applet's name: the noise's applet is the tested applet's name plus this.
NOISE_APPLET_SUFFIX = "2"

MAIL_REFUSED = "refused"  # the SMTP server refuses the connection (TCP reset)
MAIL_SILENT = "silent"  # the SMTP server accepts and never answers (the applet runs into maxrun)


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

    Lines are numbered per session from 1 (blank lines and the answers to a dialogue's questions do not count):
    ``hang_after_commands``: the session stops answering once this many lines were executed: it reads what the
    client sends and never answers again (a stuck vty), until the client goes.
    ``refuse_commands``: these line numbers are refused by AAA command authorization (`Command authorization
    failed.`, nothing runs); `exit`, `logout`, `end` and `disable` never are (docs/lab-router.md "AAA").
    ``log_noise``: this many lines of NOISE are logged before each line runs, and every third one is a job of
    the look-alike applet in `show event manager history events`.
    ``mail``: the router's mail to its SMTP server is MAIL_REFUSED (`error in connecting to SMTP server`) or
    MAIL_SILENT (the applet runs into maxrun: `timeout error`, history `abort`); ``mail_delay``: seconds the
    server takes before it greets (a slow server: the mail still goes when it fits in maxrun).
    ``before_command(number, line)``: called before line ``number`` runs (a test stops or kills the client at
    an exact step); it sees every line, the ones the other faults drop, hang or refuse too.
    """

    drop_at_command: str | None = None
    drop_after_commands: int | None = None
    hang_after_commands: int | None = None
    refuse_commands: frozenset[int] = frozenset()
    output_delay: float = 0.0
    refuse_login: bool = False
    change_host_key: bool = False
    command_errors: Mapping[str, str] = field(default_factory=dict)
    log_noise: int = 0
    mail: str | None = None
    mail_delay: float = 0.0
    before_command: Callable[[int, str], None] | None = None

    def __post_init__(self) -> None:
        if self.mail not in (None, MAIL_REFUSED, MAIL_SILENT):
            raise ValueError(f"Faults.mail: {self.mail!r} is not {MAIL_REFUSED!r}, {MAIL_SILENT!r} or None")

    def error_for(self, line: str) -> str | None:
        return self.command_errors.get(" ".join(line.split()))

    def should_drop(self, line: str, executed: int) -> bool:
        """``executed`` counts the lines run before this one in the session."""
        if self.drop_at_command is not None and " ".join(line.split()).startswith(self.drop_at_command):
            return True
        return self.drop_after_commands is not None and executed >= self.drop_after_commands

    def should_hang(self, executed: int) -> bool:
        return self.hang_after_commands is not None and executed >= self.hang_after_commands

    def is_refused(self, line: str, number: int) -> bool:
        words = line.split()
        return number in self.refuse_commands and bool(words) and words[0].lower() not in (
            "exit", "logout", "end", "disable")


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
