"""State of one lab router: spec, running config, log buffer, EEM jobs, and the startup-config on disk."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from eemwatchd.core.certificate import Certificate
from eemwatchd.core.ios.formats import parse_hex_lines
from eemwatchd.errors import CertificateError, StateError
from eemwatchd_lab.router import eem
from eemwatchd_lab.router.clock import UTC_ZONE, Clock, Zone, config_time, wall_clock
from eemwatchd_lab.router.faults import NOISE, NOISE_APPLET_SUFFIX, Faults
from eemwatchd_lab.router.invariants import Invariants, SessionWatch
from eemwatchd_lab.router.logbuffer import LogBuffer
from eemwatchd_lab.router.mailer import MailOutcome
from eemwatchd_lab.router.pki import (
    SLA_TRUSTPOINT,
    SubcommandError,
    Trustpoint,
    apply_trustpoint_command,
    default_sla_trustpoint,
)
from eemwatchd_lab.router.settings import replay_setting
from eemwatchd_lab.wan import Wan

STARTUP_FILE = "startup-config"
HOST_KEY_FILE = "ssh_host_ed25519_key"
NVRAM_SIZE = 33554432  # show_startup-config_crypto_pki_nvram_refs__gh_ie_switch_17_3.txt
# `event manager history size events` default 10, range 1-50: as recalled from Cisco's EEM command
# reference, not found in the searchable sources (inferred); freeztp's README configures 50.
HISTORY_SIZE = 10


# A user who may look but not change: every `show` and `terminal` command, nothing else.
READ_ONLY_COMMANDS = ("show", "terminal")


@dataclass(frozen=True)
class User:
    """A local user; ``public_keys`` are OpenSSH public key lines (`ssh-ed25519 AAAA... comment`).

    ``allowed_commands``: AAA command authorization (None: off). Each rule is a command or a word-prefix
    of one, with keywords spelled out (`show running-config`, `crypto pki`, `show`); any other command,
    exec or configuration, is refused with `Command authorization failed.` and changes nothing. `exit`,
    `logout`, `end` and `disable` are always allowed. READ_ONLY_COMMANDS makes a read-only user.
    ``exec_authorized=False``: the session is refused right after login with `% Authorization failed.`
    (`aaa authorization exec` denied).
    """

    name: str
    password: str | None = None
    public_keys: tuple[str, ...] = ()
    privilege: int = 15
    allowed_commands: tuple[str, ...] | None = None
    exec_authorized: bool = True

    def __repr__(self) -> str:  # never show the password
        rules = "" if self.allowed_commands is None else f", allowed_commands={self.allowed_commands!r}"
        return f"User({self.name!r}, privilege={self.privilege}, keys={len(self.public_keys)}{rules})"


@dataclass
class DeviceSpec:
    """How to build one lab router. ``port`` 0 lets the OS choose (read the bound port from the device).

    ``clock`` is the time source (default: the wall clock); the device reads ``clock() + clock_offset`` for
    everything it shows or checks (log, `show clock`, EEM, config headers, the mailer's validity check).
    Tests pin it (clock.ticking_clock) so no output depends on today's date.
    ``vty_lines``: concurrent SSH connections (`line vty 0 4` = 5); one more is closed unanswered.
    ``wan``: put a WAN (eemwatchd_lab.wan) in front of the device: clients reach it through a relay on ``port``
    that delays every byte by half the round trip each way.
    """

    name: str
    state_dir: Path
    hostname: str | None = None
    users: tuple[User, ...] = (User("admin", "admin"),)
    enable_secret: str | None = None
    lenient: bool = False
    clock: Clock | None = None
    clock_offset: timedelta = timedelta(0)
    faults: Faults = field(default_factory=Faults)
    host: str = "127.0.0.1"
    port: int = 0
    version: str = "17.09.04a"
    vty_lines: int = 5
    # SSH algorithms the device offers, as asyncssh server options (e.g. {"kex_algs": [...]}): an old IOS image
    # that knows only SHA-1 key exchange, MACs and host-key signatures.
    ssh_algorithms: dict[str, list[str]] = field(default_factory=dict)
    wan: Wan | None = None

    def __post_init__(self) -> None:
        self.state_dir = Path(self.state_dir)
        if self.host not in ("127.0.0.1", "::1", "localhost"):
            raise ValueError(f"lab device {self.name}: listens on loopback only, not {self.host!r}")
        if self.vty_lines < 1:
            raise ValueError(f"lab device {self.name}: vty_lines must be at least 1, not {self.vty_lines}")
        for user in self.users:
            if not 0 <= user.privilege <= 15:
                raise ValueError(f"lab device {self.name}: user {user.name} privilege must be 0-15")

    def __repr__(self) -> str:
        return f"DeviceSpec({self.name!r}, state_dir={str(self.state_dir)!r}, port={self.port})"




class Device:
    """One router's state. Sessions (session.Session) read and change it; server.LabDevice serves it."""

    def __init__(self, spec: DeviceSpec) -> None:
        self.spec = spec
        self.started_at = self.now()
        self.hostname = spec.hostname or spec.name
        self.trustpoints: dict[str, Trustpoint] = {}
        # (certificate, `Built-In` | `Downloaded`). The lab ships no built-in bundle; it lives outside the
        # running-config like IOS's (`nvram:` files), so it survives a restart of the lab device object only.
        self.trustpool: list[tuple[Certificate, str]] = []
        self.env: dict[str, str] = {}
        self.applets: dict[str, eem.Applet] = {}
        # Lines of real captures the simulator does not model (odd chain shapes, other features): shown in the
        # running-config as given, before `line con 0`, and never interpreted. Tests set them.
        self.verbatim: list[str] = []
        # The invariants this router can see of eemwatchd's sessions (router/invariants.py), and what a test
        # fixture wants to hear when a session ends (the audit check needs eemwatchd's store).
        self.invariants = Invariants(spec.name, self.trustpoint_certs, self.now)
        self.session_listeners: list[Callable[[SessionWatch], None]] = []
        self.logbuf = LogBuffer()
        self.summer_text: str | None = None  # `clock summer-time` arguments as configured
        self.history: list[eem.HistoryEntry] = []
        self.history_size = HISTORY_SIZE
        self.mail_outcomes: list[tuple[str, MailOutcome]] = []
        self.last_change: tuple[datetime, str] | None = None
        self.last_saved: datetime | None = None
        self.zone: Zone = UTC_ZONE
        self._jobs: set[asyncio.Task[None]] = set()
        self._next_job = 1
        self._noise = 0
        self._reset_running()
        self.load_startup()

    # --- clock and log ---------------------------------------------------------------------------

    def now(self) -> datetime:
        """The device's current instant (UTC), from the spec's clock plus its offset."""
        moment = (self.spec.clock or wall_clock)()
        if moment.tzinfo is None:
            raise ValueError(f"lab device {self.spec.name}: the clock must return timezone-aware datetimes")
        return moment.astimezone(UTC) + self.spec.clock_offset

    @property
    def log_lines(self) -> list[str]:
        """The lines in the log buffer, oldest first (what `show logging` prints after its header)."""
        return self.logbuf.lines

    def log(self, message: str) -> None:
        self.logbuf.add(self.now(), self.zone, message)

    def log_noise(self, count: int) -> None:
        """``count`` lines of what a busy router logs beside our work (faults.NOISE); every third one is also a job
        of a look-alike applet (the first applet's name plus a suffix) in the EEM history."""
        look_alike = f"{min(self.applets, default='MAILALERT')}{NOISE_APPLET_SUFFIX}"
        for _ in range(count):
            line = NOISE[self._noise % len(NOISE)].format(applet=look_alike)
            self.log(line)
            if self._noise % 3 == 2:
                job_id, self._next_job = self._next_job, self._next_job + 1
                status = "success" if self._noise % 2 else "abort"
                self.add_history(eem.HistoryEntry(job_id, status, self.now(), "none", look_alike))
            self._noise += 1

    # --- config ---------------------------------------------------------------------------------------

    def _reset_running(self) -> None:
        self.trustpoints = {SLA_TRUSTPOINT: default_sla_trustpoint(self.started_at)}
        self.env = {}
        self.applets = {}
        self.history_size = HISTORY_SIZE
        self.zone = UTC_ZONE
        self.summer_text = None

    def mark_changed(self, user: str) -> None:
        self.last_change = (self.now(), user)

    def checks_crl(self, name: str) -> bool:
        """Whether trustpoint ``name`` checks revocation by CRL: `crl` is the IOS default, `none` among the
        methods (`revocation-check none`, `crl none`) lets a failed fetch pass."""
        tp = self.trustpoints.get(name)
        return tp is not None and "none" not in (tp.revocation_check or "crl").split()

    def trustpoint_certs(self) -> Mapping[str, Sequence[Certificate]]:
        return {name: [tp.ca_cert] for name, tp in self.trustpoints.items() if tp.ca_cert is not None}

    def config_lines(self) -> list[str]:
        """The configuration as `show running-config` prints it after the `Current configuration` line."""
        major, minor = self.spec.version.split(".")[:2]
        lines = ["!"]
        if self.last_change is not None:
            at, user = self.last_change
            lines.append(f"! Last configuration change at {config_time(at, self.zone)} by {user}")
        if self.last_saved is not None:
            lines.append(f"! NVRAM config last updated at {config_time(self.last_saved, self.zone)}")
        if len(lines) > 1:
            lines.append("!")
        lines += [
            f"version {int(major)}.{int(minor)}",
            "service timestamps debug datetime msec",
            *self.logbuf.service_lines(),
            "platform qfp utilization monitor load 80",
            "platform punt-keepalive disable-kernel-core",
            "platform console virtual",
            "!",
            f"hostname {self.hostname}",
            "!",
            "boot-start-marker",
            "boot-end-marker",
            "!",
            *self.logbuf.logging_lines(),
            "!",
            "no aaa new-model",
            *self.clock_lines(),
            "!",
        ]
        for tp in self.trustpoints.values():
            lines += [*tp.config_lines(), "!"]
        lines.append("!")
        for tp in self.trustpoints.values():
            lines += tp.chain_lines()
        lines += self.verbatim
        lines += ["!", "!", "line con 0", " stopbits 1", *self.vty_lines(), "!"]
        for name, value in self.env.items():
            lines.append(f"event manager environment {name} {value}")
        if self.history_size != HISTORY_SIZE:
            lines.append(f"event manager history size events {self.history_size}")
        for applet in self.applets.values():
            lines += applet.config_lines()
        lines += ["!", "end"]
        return lines

    def vty_lines(self) -> list[str]:
        # IOS keeps the first five vtys in their own block (`line vty 0 4`, `line vty 5 15`).
        count = self.spec.vty_lines
        ranges = [(0, min(count, 5) - 1)] + ([(5, count - 1)] if count > 5 else [])
        out: list[str] = []
        for first, last in ranges:
            out += [f"line vty {first} {last}" if last > first else f"line vty {first}", " login local",
                    " transport input ssh"]
        return out

    def clock_lines(self) -> list[str]:
        lines = []
        if self.zone.name != "UTC" or self.zone.offset:
            hours, rest = divmod(int(self.zone.offset.total_seconds()) // 60, 60)
            if self.zone.offset.total_seconds() < 0 and rest:
                hours, rest = hours + 1, 60 - rest
            lines.append(f"clock timezone {self.zone.name} {hours} {rest}")
        if self.zone.summer_name is not None:
            lines.append(f"clock summer-time {self.zone.summer_name} recurring"
                         + (f" {self.summer_text}" if self.summer_text else ""))
        return lines

    def running_config(self) -> list[str]:
        body = self.config_lines()
        size = sum(len(line) + 1 for line in body)
        return ["Building configuration...", "", f"Current configuration : {size} bytes", *body]

    # --- persistence ----------------------------------------------------------------------------------

    @property
    def startup_path(self) -> Path:
        return self.spec.state_dir / STARTUP_FILE

    def save(self) -> None:
        """`write memory`: the running config replaces the startup-config file atomically."""
        self.last_saved = self.now()
        text = "\n".join(self.config_lines()) + "\n"
        self.spec.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.startup_path.with_suffix(".tmp")
        try:
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, self.startup_path)
        except OSError as exc:
            raise StateError(f"lab device {self.spec.name}: cannot write {self.startup_path}: {exc}") from exc

    def startup_config(self) -> str | None:
        try:
            return self.startup_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StateError(f"lab device {self.spec.name}: cannot read {self.startup_path}: {exc}") from exc

    def load_startup(self) -> None:
        """Boot: the saved startup-config (if any) becomes the running config."""
        text = self.startup_config()
        if text is None:
            return
        try:
            self.apply_config(text.splitlines())
        except (SubcommandError, eem.ActionSyntaxError, CertificateError, ValueError, IndexError) as exc:
            raise StateError(
                f"lab device {self.spec.name}: {self.startup_path} is not a config this lab wrote ({exc}); "
                "delete it to boot with the default config"
            ) from exc

    def apply_config(self, lines: Sequence[str]) -> None:
        """Replay a config this lab rendered (trustpoints, certificate chains, EEM; the rest is ignored)."""
        i = 0
        while i < len(lines):
            line = lines[i].rstrip("\r")
            children: list[str] = []
            j = i + 1
            while j < len(lines) and lines[j].startswith(" "):
                children.append(lines[j].rstrip("\r"))
                j += 1
            if line.startswith("! NVRAM config last updated at"):
                self.last_saved = self.now()
            elif line.startswith("hostname "):
                self.hostname = line.split()[1]
            elif line.startswith("crypto pki trustpoint "):
                name = line.split()[3]
                tp = self.trustpoints.setdefault(name, Trustpoint(name))
                for child in children:
                    words = eem.tokenize(child)
                    apply_trustpoint_command(tp, words[0][0], words[1:])
            elif line.startswith("crypto pki certificate chain "):
                self._load_chain(line.split()[4], children)
            elif line.startswith("event manager environment "):
                parts = line.split(None, 4)
                self.env[parts[3]] = parts[4] if len(parts) > 4 else ""
            elif line.startswith(("clock ", "logging ", "no logging ", "service ")):
                replay_setting(self, line)
            elif line.startswith("event manager history size events "):
                self.history_size = int(line.split()[5])
            elif line.startswith("event manager applet "):
                self._load_applet(line, children)
            i = j

    def _load_chain(self, name: str, children: list[str]) -> None:
        tp = self.trustpoints.setdefault(name, Trustpoint(name))
        k = 0
        while k < len(children):
            words = children[k].split()
            k += 1
            if words[:1] != ["certificate"]:
                continue
            block: list[str] = []
            while k < len(children) and children[k].strip() != "quit":
                block.append(children[k])
                k += 1
            k += 1
            if words[1:2] == ["self-signed"] and not block:
                tp.self_signed_serial = words[2]  # shown without its hex, as on CSR1000V 16.9
                continue
            cert = Certificate.from_der(parse_hex_lines(block, what=f"chain {name}"), what=f"chain {name}")
            if len(words) > 2 and words[1] == "ca":
                tp.ca_cert = cert
                tp.installed_at = self.now()

    def _load_applet(self, line: str, children: list[str]) -> None:
        words = line.split()
        applet = eem.Applet(words[3], authorization_bypass="bypass" in words[4:], registered_at=self.now())
        for child in children:
            stripped = child.strip()
            if stripped.startswith("event "):
                eem.parse_event(applet, eem.tokenize(stripped[6:]))
            elif stripped.startswith("action "):
                applet.set_action(eem.parse_action(stripped[7:], 7))
        self.applets[applet.name] = applet

    # --- EEM jobs ---------------------------------------------------------------------------------------

    def run_applet(self, name: str, *, on_done: Callable[[bool], None] | None = None) -> str | None:
        """`event manager run NAME`: start it in the background; the refusal text when it cannot run.
        ``on_done(ok)`` hears when the job ended: ok when it ran to its end and every mail it sent was delivered."""
        applet = self.applets.get(name)
        if applet is None or applet.event != "none" or applet.registered_at is None:
            # inferred: an unknown applet gets the same refusal as one without `event none`.
            return eem.not_registered(name)
        job_id = self._next_job
        self._next_job += 1
        started = self.now()
        ctx = eem.RunContext(
            env=dict(self.env), hostname=self.hostname, log=self.log, trustpoints=self.trustpoint_certs,
            now=self.now, lenient=self.spec.lenient, mail_outcomes=self.mail_outcomes,
            crl_check=self.checks_crl, mail_fault=lambda: (self.spec.faults.mail, self.spec.faults.mail_delay),
        )

        async def job() -> None:
            mails = len(self.mail_outcomes)
            status = "failed"
            try:
                status = await eem.run_applet(applet, ctx)
            finally:
                if on_done is not None:
                    sent = self.mail_outcomes[mails:]
                    on_done(status == "success" and bool(sent) and all(o.ok for _name, o in sent))
            # The row appears when the job ENDS (a running job has none), oldest rows beyond the
            # configured size are dropped.
            self.add_history(eem.HistoryEntry(job_id, status, started, "none", name))

        task = asyncio.get_running_loop().create_task(job(), name=f"eem-{self.spec.name}-{name}")
        self._jobs.add(task)
        task.add_done_callback(self._jobs.discard)
        return None

    def add_history(self, entry: eem.HistoryEntry) -> None:
        self.history.append(entry)
        del self.history[: max(0, len(self.history) - self.history_size)]

    def set_history_size(self, size: int) -> None:
        self.history_size = size
        del self.history[: max(0, len(self.history) - size)]

    @property
    def running_jobs(self) -> int:
        return len(self._jobs)

    async def wait_for_jobs(self, timeout: float | None = None) -> None:
        """Wait until every running applet finished (tests, shutdown)."""
        if self._jobs:
            await asyncio.wait(set(self._jobs), timeout=timeout)

    async def cancel_jobs(self) -> None:
        jobs = list(self._jobs)
        for task in jobs:
            task.cancel()
        for task in jobs:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
