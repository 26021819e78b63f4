"""The router adapter: read, install, retire, save and test-fire over SSH (scrapli classic + asyncssh)."""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime

from eemwatchd.adapters.router_access import (  # re-exported: callers reach a router through this module
    RouterTarget,
    RouterTimeouts,
    read_known_hosts,
    record_first_host_key,
)
from eemwatchd.adapters.router_channel import (
    CONFIG_PROMPT,
    MIN_POLL_GAP,
    RouterChannel,
    check_refused,
    device_text,
)
from eemwatchd.core.certificate import Certificate
from eemwatchd.core.ios.parsers import (
    HistoryEvent,
    LogLine,
    parse_clock_zones,
    parse_event_history,
    parse_log_lines,
    parse_running_config,
    parse_show_clock,
)
from eemwatchd.core.ios.typeahead import Reply
from eemwatchd.core.router_state import RouterSnapshot, Trustpoint
from eemwatchd.core.secrets import mail_passwords, scrub_text
from eemwatchd.core.testfire import SHOW_HISTORY, FireResult, job_after, judge, message_pattern
from eemwatchd.errors import CommandFailed, ParseError

__all__ = ["FireResult", "RouterSession", "RouterTarget", "RouterTimeouts", "read_known_hosts",
           "record_first_host_key"]

logger = logging.getLogger("eemwatchd.router")

# `crypto pki authenticate` with `enrollment terminal`
# (crypto_pki_authenticate_terminal_paste__gh_qytang_c8kv).
_PASTE_BANNER = re.compile(r'End with a blank line or the word "quit" on a line by itself')
_ACCEPT_QUESTION = re.compile(r"Do you accept this certificate\? \[yes/no\]:\s*$", re.M)
_SHA1_SHOWN = re.compile(r"Fingerprint SHA1:\s*(?P<fp>(?:[0-9A-Fa-f]{8}\s*){5})")
_IMPORTED = ("Certificate successfully imported", "Trustpoint CA certificate accepted")
# `no crypto pki trustpoint` (no_crypto_pki_trustpoint__genielibs_wsim_c9800).
_REMOVE_QUESTION = re.compile(r"Are you sure you want to do this\? \[yes/no\]:\s*$", re.M)
_SNAPSHOT_COMMANDS = ("show running-config", "show clock", "show startup-config | section crypto pki")
# How a trustpoint is defined before `crypto pki authenticate`, and how its running-config shows it.
_DEFINITION = (("enrollment", "terminal"), ("revocation-check", "none"), ("chain-validation", "stop"))


class RouterSession(RouterChannel):
    """One SSH session to one router: read its state, install and retire trustpoints, configure, save,
    test-fire. Every answer is checked before it is believed (read-backs, the router's own words)."""

    def __init__(self, target: RouterTarget, *, clock: Callable[[], datetime] | None = None) -> None:
        super().__init__(target, clock=clock)
        self.changes = 0  # configuration changes made in this session (a read before one is stale after it)
        self._saved: tuple[int, Reply] | None = None  # the startup-config's PKI section read with a snapshot

    # --- reading ---------------------------------------------------------------------------------

    async def read_running_config(self) -> str:
        return await self._command("show running-config", timeout=self.target.timeouts.running_config)

    async def read_snapshot(self) -> RouterSnapshot:
        """Trustpoints (with DER), EEM environment and applets, hostname and clock.

        One write of three commands: `show running-config`, `show clock` and the startup-config's PKI
        section, which read_saved_trustpoints then answers from (a reconcile job asks for both at once).
        """
        timeouts = self.target.timeouts
        replies = await self._exec(_SNAPSHOT_COMMANDS, timeout=2 * timeouts.running_config + timeouts.command)
        running, clock_reply, startup = replies
        self._check(running)
        self._check(clock_reply)
        config, clock_text = running.output, clock_reply.output
        self._saved = (self.changes, startup)
        parsed = parse_running_config(config)
        clock: datetime | None
        try:
            clock = parse_show_clock(clock_text, zones=parse_clock_zones(config))
        except ParseError as exc:
            logger.warning("router %s: clock not read: %s", self.name, exc)
            clock = None
        snapshot = RouterSnapshot(
            hostname=parsed.hostname, trustpoints=parsed.trustpoints, environment=parsed.environment,
            applets=parsed.applets, clock=clock, problems=parsed.problems,
        )
        self._secrets |= mail_passwords(snapshot)
        return snapshot

    async def read_saved_trustpoints(self) -> dict[str, tuple[str, ...]]:
        """Trustpoint name -> the serials of its certificates, as the startup-config holds them.

        Serials, because a startup-config may list `nvram:` file references instead of the certificates
        (show_startup-config_crypto_pki_nvram_refs__gh_ie_switch_17_3). No startup-config: {}.
        """
        read_with_snapshot, self._saved = self._saved, None
        if read_with_snapshot is not None and read_with_snapshot[0] == self.changes:
            reply = read_with_snapshot[1]
            self._check(reply)
            text = reply.output
        else:
            text = await self._command(_SNAPSHOT_COMMANDS[2], timeout=self.target.timeouts.running_config)
        parsed = parse_running_config(text)
        return {tp.name: tuple(h.serial for h in tp.certificates if h.kind == "ca") for tp in parsed.trustpoints}

    async def _read_trustpoint(self, name: str) -> Trustpoint | None:
        """Trustpoint ``name`` as the running-config holds it (definition and certificates, DER included),
        read from its own sections only; None when it is not configured.

        The whole `show running-config` grew with every install and was read twice per install: 6 full reads
        and parses per fresh router (BENCHMARKS.md). "Not configured" needs the filter's `hostname` line
        too, so an empty or truncated answer is never taken for an absent trustpoint. After a change, `end`
        goes out in the same write (see _commands).
        """
        command = _trustpoint_sections_command(name)
        text = await self._command(command, timeout=self.target.timeouts.running_config)
        parsed = parse_running_config(text)
        if parsed.hostname is None:
            raise CommandFailed(self.name, command,
                                f"% the filtered running-config has no `hostname` line, so it cannot show whether "
                                f"trustpoint {name} is configured:\n{device_text(text, command)}")
        problem = next((p for p in parsed.problems if p.trustpoint == name), None)
        if problem is not None:
            raise ParseError(f"{command} (trustpoint {name})", problem.reason, line=problem.line)
        return next((tp for tp in parsed.trustpoints if tp.name == name), None)

    # --- changing --------------------------------------------------------------------------------

    async def install_certificate(self, trustpoint: str, cert: Certificate) -> None:
        """Create trustpoint ``trustpoint`` holding CA certificate ``cert``; verified by reading it back.

        The trustpoint must not exist: certificates rotate by new trustpoint, never in place (a
        trustpoint holding a CA refuses a second one, docs/field-notes.md sec. 5).
        """
        command = f"crypto pki authenticate {trustpoint}"
        self._require_token(trustpoint, what="trustpoint name")
        existing = await self._read_trustpoint(trustpoint)
        if existing is not None:
            raise CommandFailed(
                self.name,
                f"crypto pki trustpoint {trustpoint}",
                f"% trustpoint {trustpoint} already exists; certificates are installed into a new trustpoint",
            )
        await self._define_trustpoint(trustpoint, cert)
        logger.info(
            "router %s: created trustpoint %s for %s",
            self.name,
            trustpoint,
            cert.describe(),
            extra={
                "event": "trustpoint_created",
                "router": self.name,
                "trustpoint": trustpoint,
                "fingerprint": cert.sha256,
            },
        )
        try:
            await self._authenticate(trustpoint, cert)
        except CommandFailed:
            # The device refused cleanly: take the empty trustpoint away again, then report.
            if self._conn is not None:
                await self._remove_trustpoint(trustpoint)
                await self._leave_config()
            raise

        held = await self._read_trustpoint(trustpoint)
        on_device = held.ca_certificates if held is not None else ()
        if tuple(c.der for c in on_device) != (cert.der,):
            shown = ", ".join(c.describe() for c in on_device) or "no CA certificate"
            raise CommandFailed(
                self.name,
                command,
                f"% after the import trustpoint {trustpoint} holds {shown}, not {cert.describe()}",
            )
        assert held is not None
        wrong = [f"{keyword} {getattr(held, keyword.replace('-', '_')) or '(not set)'}"
                 for keyword, value in _DEFINITION if getattr(held, keyword.replace("-", "_")) != value]
        if wrong:
            raise CommandFailed(self.name, f"crypto pki trustpoint {trustpoint}",
                                f"% trustpoint {trustpoint} holds the certificate but shows {', '.join(wrong)}, not "
                                + ", ".join(f"{k} {v}" for k, v in _DEFINITION))
        logger.info(
            "router %s: installed %s into trustpoint %s (sha256 %s)",
            self.name,
            cert.describe(),
            trustpoint,
            cert.sha256,
            extra={
                "event": "certificate_installed",
                "router": self.name,
                "trustpoint": trustpoint,
                "fingerprint": cert.sha256,
            },
        )

    async def _define_trustpoint(self, trustpoint: str, cert: Certificate) -> None:
        """`crypto pki trustpoint NAME` and its settings in one write (IOS takes type-ahead), in config mode.

        Every line's answer is checked, in order, for every refusal and error form (AAA, `% Invalid input`,
        ...), and every prompt must show the trustpoint's own mode: a line the router did not take stops the
        install here, before `crypto pki authenticate` trusts anything. `exit` is not typed ahead: should
        `configure terminal` itself be refused, every line after it is an invalid exec command, and `exit`
        would log out. `fingerprint` makes IOS check the paste itself (and skip the accept question).
        """
        self.changes += 1
        lines = [f"crypto pki trustpoint {trustpoint}", *(f"{k} {v}" for k, v in _DEFINITION),
                 f"fingerprint {cert.sha1_hex}"]
        commands = (["configure terminal"] if self._mode != "config" else []) + lines
        replies = await self._exchange(commands, step=commands[0], timeout=self.target.timeouts.command * 2)
        for reply in replies:
            self._check(reply)
            in_trustpoint = reply.command != "configure terminal"
            if in_trustpoint and not reply.prompt.endswith("(ca-trustpoint)#"):
                raise CommandFailed(self.name, reply.command,
                                    f"% the router answered with the prompt {reply.prompt!r}, not the trustpoint's "
                                    f"(ca-trustpoint)#: {device_text(reply.output, reply.command)}")
            if not in_trustpoint and reply.mode != "config":
                raise CommandFailed(self.name, reply.command, reply.output or "(no output)")

    async def _authenticate(self, trustpoint: str, cert: Certificate) -> None:
        """The `crypto pki authenticate` dialogue, from (config)# back to (config)#."""
        command = f"crypto pki authenticate {trustpoint}"
        step = command
        wait = self.target.timeouts.change
        await self._enter_config()
        self._write(command + "\n")
        key, output = await self._expect(
            [("paste", _PASTE_BANNER), ("question", _ACCEPT_QUESTION), ("prompt", CONFIG_PROMPT)],
            step=step,
            timeout=wait,
        )
        if key == "prompt":
            # Refusals: "% Please delete your existing CA certificate first.", "% Certificate Authority
            # (trustpoint) X is unknown", "% Invalid input" (pki_prompt_and_error_strings__genielibs_code).
            raise CommandFailed(self.name, command, device_text(output, command))
        transcript = output
        if key == "paste":
            # The PEM and `quit` in one write; the device answers with the fingerprints and either the
            # question or, when the configured fingerprint matched, the result directly.
            self._write(cert.pem.rstrip("\n") + "\nquit\n")
            key, output = await self._expect(
                [("question", _ACCEPT_QUESTION), ("prompt", CONFIG_PROMPT)], step=step, timeout=wait
            )
            transcript += output
        if key == "question":
            shown = _SHA1_SHOWN.search(output)
            if shown is None or " ".join(shown.group("fp").split()).upper() != cert.sha1_ios:
                self._write("no\n")
                _key, tail = await self._expect([("prompt", CONFIG_PROMPT)], step=step, timeout=wait)
                raise CommandFailed(
                    self.name,
                    command,
                    f"% device showed SHA1 {shown.group('fp').strip() if shown else '(none)'}, "
                    f"expected {cert.sha1_ios}; answered no\n{device_text(output + tail, command)}",
                )
            self._write("yes\n")
            _key, output = await self._expect([("prompt", CONFIG_PROMPT)], step=step, timeout=wait)
            transcript += output
        if not any(marker in transcript for marker in _IMPORTED) or "% Error" in transcript:
            raise CommandFailed(self.name, command, device_text(transcript, command))

    async def _remove_trustpoint(self, name: str) -> str:
        """`no crypto pki trustpoint NAME` in config mode (`configure terminal` typed ahead when needed: refused,
        the removal after it is an invalid exec command), answering its confirmation; the device text."""
        command = f"no crypto pki trustpoint {name}"
        self.changes += 1
        commands = (["configure terminal"] if self._mode != "config" else []) + [command]
        replies = await self._exchange(commands, step=commands[0], timeout=self.target.timeouts.change,
                                       question=_REMOVE_QUESTION)
        if len(replies) == 2:
            entered = replies[0]
            check_refused(self.name, entered.command, entered.output)
            if entered.mode != "config":
                raise CommandFailed(self.name, entered.command, entered.output or "(no output)")
        output = replies[-1].output
        if not replies[-1].prompt:  # the confirmation question
            self._write("yes\n")
            _key, tail = await self._expect(
                [("prompt", CONFIG_PROMPT)], step=command, timeout=self.target.timeouts.change
            )
            output += tail
        check_refused(self.name, command, output)
        if "Can't find policy" in output or "% Invalid" in output or "not known" in output:
            raise CommandFailed(self.name, command, device_text(output, command))
        return output

    async def retire_trustpoint(self, name: str) -> None:
        """Remove trustpoint ``name`` and its certificates; verified by reading the config back."""
        self._require_token(name, what="trustpoint name")
        await self._remove_trustpoint(name)
        if await self._read_trustpoint(name) is not None:
            raise CommandFailed(
                self.name, f"no crypto pki trustpoint {name}", f"% trustpoint {name} is still configured"
            )
        logger.info(
            "router %s: retired trustpoint %s",
            self.name,
            name,
            extra={"event": "trustpoint_retired", "router": self.name, "trustpoint": name},
        )

    async def configure(self, lines: Sequence[str]) -> None:
        """Send configuration lines (config mode, then back to privileged EXEC). Each line must be one line;
        a refusal (AAA) or a rejected line stops at that line with the router's words (CommandRefused /
        CommandFailed)."""
        for line in lines:
            if "\n" in line or "\r" in line or not line.strip():
                raise CommandFailed(self.name, "(not sent) configuration line",
                                    f"% {line!r} is not one configuration line; nothing was sent to the router")
        self.changes += 1
        await self._configure(list(lines))
        await self._leave_config()

    async def save_config(self) -> None:
        """`write memory`; the device must answer `[OK]`."""
        self.changes += 1
        output = await self._command("write memory", timeout=self.target.timeouts.change)
        if "[OK]" not in output:
            raise CommandFailed(self.name, "write memory", output)
        logger.info(
            "router %s: configuration saved", self.name, extra={"event": "config_saved", "router": self.name}
        )

    # --- test-fire -------------------------------------------------------------------------------

    async def fire_applet(
        self, applet: str, *, maxrun: float, success_messages: Sequence[str] = ()
    ) -> FireResult:
        """Run ``applet`` and judge it on positive evidence only.

        Success: this run's row in `show event manager history events` with status `success` (the applet
        ran to its end, so its mail action completed), or one of ``success_messages`` (a `syslog msg` the
        applet logs after its mail action) after our log marker. Failure: any output from `event manager
        run` (IOS prints nothing when it starts the job: the output is a refusal, given in the router's
        words), a row with another status, an `FMPD_*` error after the marker, or no evidence within
        ``maxrun`` plus a grace period ("could not prove mail works"). The verdict comes as soon as the
        router shows the job ended, not after maxrun.
        """
        self._require_token(applet, what="EEM applet name")
        marker = f"eemwatchd-test-fire-{secrets.token_hex(6)}"
        command = f"event manager run {applet}"
        # One write: the history before the run (its newest job is the baseline), the log marker, the run.
        # IOS runs them in this order; a refused history or marker is an error as before, the run's own
        # answer (IOS prints nothing when it starts the job) is judged below.
        loop = asyncio.get_running_loop()
        history, logged, run = await self._exec([SHOW_HISTORY, f"send log 6 {marker}", command],
                                                timeout=3 * self.target.timeouts.command)
        started = loop.time()
        baseline = max((e.job_id for e in self._parse_history(history)), default=0)
        self._check(logged)
        words = device_text(run.output, command, empty="")
        if words:  # refused (AAA) or rejected (% Invalid input, not event none): the router's words
            lines = tuple(words.splitlines())
            return self._fired(applet, FireResult(False, marker, lines, reason=f"the router refused to run the "
                                                  f"applet: {' / '.join(lines)}", evidence=" / ".join(lines)))
        success = [message_pattern(applet, text) for text in success_messages]
        deadline = started + maxrun + self.target.timeouts.fire_grace
        # Looks at the history grow apart from the round trip up (or 20 ms on a LAN) to poll_interval; a look
        # itself takes a round trip, so over a WAN the first one goes out as soon as the run was answered
        # (by then the router has run the job for a round trip).
        gap = max(self.round_trip or 0.0, MIN_POLL_GAP)
        longest = max(self.target.timeouts.poll_interval, gap)
        while True:
            await asyncio.sleep(self.poll_pause(gap))
            gap = min(gap * 2, longest)
            look = [SHOW_HISTORY, "show logging"] if success else [SHOW_HISTORY]
            replies = await self._exec(look, timeout=len(look) * self.target.timeouts.command)
            job = job_after(self._parse_history(replies[0]), applet, baseline)
            timed_out = loop.time() >= deadline
            if job is None and not success and not timed_out:
                continue
            entries = self._parse_log(replies[1], marker) if success else await self._log_after(marker)
            result = judge(applet, marker, job, entries, success, timed_out=timed_out,
                            waited=loop.time() - started)
            if result is not None:
                return self._fired(applet, result)

    def _fired(self, applet: str, result: FireResult) -> FireResult:
        """Log the verdict; the router may log its `_email_server` (with the password): scrub it everywhere."""
        result = replace(result, lines=tuple(scrub_text(ln, self._secrets) for ln in result.lines),
                         reason=scrub_text(result.reason, self._secrets),
                         evidence=scrub_text(result.evidence, self._secrets))
        logger.info(
            "router %s: test-fire of %s %s",
            self.name,
            applet,
            f"proved mail works ({result.evidence})" if result.ok else f"failed: {result.reason}",
            extra={"event": "applet_fired", "router": self.name, "applet": applet, "ok": result.ok},
        )
        return result

    def _parse_history(self, reply: Reply) -> list[HistoryEvent]:
        self._check(reply)
        try:
            return parse_event_history(reply.output)
        except ParseError as exc:
            raise CommandFailed(self.name, SHOW_HISTORY, f"% {exc.reason}") from exc

    def _parse_log(self, reply: Reply, marker: str) -> list[LogLine] | None:
        """The log lines after ``marker``; None when the buffer does not hold the marker."""
        self._check(reply)
        try:
            return parse_log_lines(reply.output, marker=marker)
        except ParseError:
            return None

    async def _log_after(self, marker: str) -> list[LogLine] | None:
        (reply,) = await self._exec(["show logging"], timeout=self.target.timeouts.command)
        return self._parse_log(reply, marker)


def _trustpoint_sections_command(name: str) -> str:
    """`show running-config` filtered to the `hostname` line and trustpoint ``name``'s two sections.

    `| section REGEX` prints every top-level block (a line at column 0 with its indented children) in which a
    line matches REGEX (the lab router does the same). IOS XE's CLI string search takes a regex with `^`,
    alternation and parentheses, but `_` matches a delimiter (space, comma, brace, parenthesis, start, end),
    not an underscore (Cisco, "Regular Expressions", IOS XE 17 security guide): an underscore in the name
    becomes `.`. No `$`: a name that is a prefix of another brings that one's sections too. Both only ever
    add sections, never lose one; the parser picks the trustpoint by its exact name. Every running-config
    has a `hostname` line (show_running-config_head__gh_ansible_facts_csr1000v_17_3): seeing it proves the
    filter ran over the running-config.
    """
    pattern = name.replace("_", ".")
    return f"show running-config | section ^hostname |^crypto pki (trustpoint|certificate chain) {pattern}"
