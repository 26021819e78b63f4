"""The lab router's exec commands: show, terminal, enable, configure, write, send log, event manager run."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from eemwatchd.core.certificate import Certificate
from eemwatchd.core.ios.formats import parse_hex_lines
from eemwatchd_lab.router import clock, eem, pki
from eemwatchd_lab.router.device import NVRAM_SIZE
from eemwatchd_lab.router.grammar import Call, CommandError, CommandTable, Handler

if TYPE_CHECKING:
    from eemwatchd_lab.router.session import Session

CONFIG_BANNER = "Enter configuration commands, one per line.  End with CNTL/Z."  # two spaces, IOS
SEVERITY_NAMES = ("EMERG", "ALERT", "CRIT", "ERR", "WARNING", "NOTICE", "INFO", "DEBUG")




async def h_enable(s: Session, c: Call) -> bool:
    if s.priv == 15:
        return True
    secret = s.device.spec.enable_secret
    if secret is None:
        await s.write_lines(["% No password set", ""])  # inferred (IOS without an enable secret)
        return True
    for _ in range(3):
        await s.write("Password: ")
        answer = await s.read_line(echo=False)
        if answer is None:
            return False
        if answer == secret:
            s.priv = 15
            return True
    await s.write_lines(["% Bad secrets", ""])  # inferred (IOS after three wrong secrets)
    return True


async def h_disable(s: Session, c: Call) -> bool:
    s.priv = min(s.priv, 1)
    return True


async def h_exit(s: Session, c: Call) -> bool:
    return False


async def h_terminal(s: Session, c: Call) -> bool:
    words = c.args
    if not words:
        raise CommandError("incomplete")
    value, column = words[0]
    if not value.isdigit() or int(value) > 512:  # IOS: length <0-512>, width <0-512>
        raise CommandError("invalid", column)
    if len(words) > 1:
        raise CommandError("invalid", words[1][1])
    return True


def _terminal_setter(attr: str) -> Handler:
    async def handler(s: Session, c: Call) -> bool:
        await h_terminal(s, c)
        setattr(s, attr, int(c.args[0][0]))
        return True

    return handler


def end_of_args(c: Call) -> None:
    if c.args:
        raise CommandError("invalid", c.args[0][1])


async def h_show_clock(s: Session, c: Call) -> bool:
    end_of_args(c)
    await s.emit([clock.show_clock(s.device.now(), s.device.zone)])
    return True


def _uptime(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    days, minutes = divmod(minutes, 1440)
    hours, minutes = divmod(minutes, 60)
    parts = []
    if days:
        parts.append(f"{days} day{'s' if days != 1 else ''}")
    if hours:
        parts.append(f"{hours} hour{'s' if hours != 1 else ''}")
    parts.append(f"{minutes} minute{'s' if minutes != 1 else ''}")
    return ", ".join(parts)


# The release train IOS XE names in brackets on the second line of `show version`: Everest (16.6,
# show_version__genie_isr4451_16_06_05.txt) and Cupertino (17.7, show_version__genie_c9800cl_17_07.txt) are
# captured; the other names are Cisco's published train names, recalled (inferred).
_TRAINS = (
    ((16, 5), "Everest"), ((16, 8), "Fuji"), ((16, 10), "Gibraltar"), ((16, 13), "Amsterdam"),
    ((17, 1), "Amsterdam"), ((17, 4), "Bengaluru"), ((17, 7), "Cupertino"), ((17, 10), "Dublin"),
    ((17, 13), "IOSXE"),
)


def release_train(major: int, minor: int) -> str:
    name = "Everest"
    for (first_major, first_minor), train in _TRAINS:
        if (major, minor) >= (first_major, first_minor):
            name = train
    return name


async def h_show_version(s: Session, c: Call) -> bool:
    """IOS XE layout of show_version__genie_c9800cl_17_07.txt / isr4451_16_06_05 (release builds): the first
    line keeps the zero-padded version (`17.07.01prd16`), the second drops the padding (`17.7.1prd16`)."""
    end_of_args(c)
    ver = s.device.spec.version
    major, minor, rest = ver.split(".")
    short = f"{int(major)}.{int(minor)}.{rest.lstrip('0') or '0'}"
    train = release_train(int(major), int(minor))
    now = s.device.now()
    uptime = _uptime(now - s.device.started_at)
    lines = [
        f"Cisco IOS XE Software, Version {ver}",
        f"Cisco IOS Software [{train}], Virtual XE Software (X86_64_LINUX_IOSD-UNIVERSALK9-M), "
        f"Version {short}, RELEASE SOFTWARE (fc3)",
        "Technical Support: http://www.cisco.com/techsupport",
        "Copyright (c) 1986-2023 by Cisco Systems, Inc.",
        "Compiled Fri 20-Oct-23 10:44 by mcpre",
        "",
        "",
        "Cisco IOS-XE software, Copyright (c) 2005-2023 by cisco Systems, Inc.",
        "All rights reserved.  Certain components of Cisco IOS-XE software are",
        'licensed under the GNU General Public License ("GPL") Version 2.0.  The',
        "software code licensed under GPL Version 2.0 is free software that comes",
        "with ABSOLUTELY NO WARRANTY.  You can redistribute and/or modify such",
        "GPL code under the terms of GPL Version 2.0.  For more details, see the",
        'documentation or "License Notice" file accompanying the IOS-XE software,',
        "or the applicable URL provided on the flyer accompanying the IOS-XE",
        "software.",
        "",
        "",
        "ROM: IOS-XE ROMMON",
        "",
        f"{s.device.hostname} uptime is {uptime}",
        f"Uptime for this control processor is {uptime}",
        "System returned to ROM by reload",
        "System image file is \"bootflash:packages.conf\"",
        "Last reload reason: reload",
        "",
        "",
        "",
        "This product contains cryptographic features and is subject to United",
        "States and local country laws governing import, export, transfer and",
        "use. Delivery of Cisco cryptographic products does not imply",
        "third-party authority to import, export, distribute or use encryption.",
        "Importers, exporters, distributors and users are responsible for",
        "compliance with U.S. and local country laws. By using this product you",
        "agree to comply with applicable laws and regulations. If you are unable",
        "to comply with U.S. and local laws, return this product immediately.",
        "",
        "A summary of U.S. laws governing Cisco cryptographic products may be found at:",
        "http://www.cisco.com/wwl/export/crypto/tool/stqrg.html",
        "",
        "If you require further assistance please contact us by sending email to",
        "export@cisco.com.",
        "",
        "License Level: ",
        "License Type: Perpetual",
        "Next reload license Level: ",
        "",
        "The current throughput level is 250000 kbps ",
        "",
        "",
        "Smart Licensing Status: Smart Licensing Using Policy",
        "",
        "cisco C8000V (VXE) processor (revision VXE) with 1900130K/3075K bytes of memory.",
        "Processor board ID 9LAB" + f"{abs(hash(s.device.spec.name)) % 10**7:07d}",
        "Router operating mode: Autonomous",
        "3 Gigabit Ethernet interfaces",
        "32768K bytes of non-volatile configuration memory.",
        "8082280K bytes of physical memory.",
        "14589951K bytes of virtual hard disk at bootflash:.",
        "",
        "Configuration register is 0x2102",
        "",
    ]
    await s.emit(lines)
    return True


async def h_show_logging(s: Session, c: Call) -> bool:
    end_of_args(c)
    count = s.device.logbuf.total
    # Header inferred from IOS XE; the `Buffer logging:` and `Log Buffer (N bytes):` lines follow
    # send_log_severity_userlog__gh_rt01_iol.txt.
    lines = [
        "Syslog logging: enabled (0 messages dropped, 0 messages rate-limited, 0 flushes, 0 overruns, "
        "xml disabled, filtering disabled)",
        "",
        "No Active Message Discriminator.",
        "",
        "",
        "",
        "No Inactive Message Discriminator.",
        "",
        "",
        "    Console logging: disabled",
        "    Monitor logging: level debugging, 0 messages logged, xml disabled,",
        "                     filtering disabled",
        *s.device.logbuf.header(),
        "    Exception Logging: size (4096 bytes)",
        "    Count and timestamp logging messages: disabled",
        "    Persistent logging: disabled",
        "",
        "No active filter modules.",
        "",
        f"    Trap logging: level informational, {count} message lines logged",
        "        Logging Source-Interface:       VRF Name:",
        "",
    ]
    # `Log Buffer (N bytes):` is printed with buffered logging off too (6 of 7 IOS XE captures, genieparser
    # show_logging golden 9-14), with nothing under it in 5 of them.
    lines += [f"Log Buffer ({s.device.logbuf.size} bytes):", "", *s.device.log_lines]
    await s.emit(lines)
    return True


async def h_show_running(s: Session, c: Call) -> bool:
    end_of_args(c)
    await s.emit(s.device.running_config())
    return True


def _nvram_refs(lines: list[str]) -> list[str]:
    """17.3 `show config` shows file references instead of hex (gh_ie_switch_17_3): the same file names as the
    `Storage:` lines of `show crypto pki certificates` (pki.storage_file)."""
    out: list[str] = []
    head: str | None = None
    hex_lines: list[str] = []
    seen: dict[bytes, str] = {}
    for line in lines:
        if head is not None:
            if line.strip() != "quit":
                hex_lines.append(line)
                continue
            cert = Certificate.from_der(parse_hex_lines(hex_lines, what="startup-config"), what="startup-config")
            name = seen.setdefault(cert.der, pki.storage_file(cert, seen.values()))
            out.append(f"{head} {name}")
            head = None
            continue
        if line.startswith(" certificate ca "):
            head, hex_lines = line, []
            continue
        out.append(line)
    return out


async def h_show_startup(s: Session, c: Call) -> bool:
    end_of_args(c)
    text = s.device.startup_config()
    if text is None:
        await s.emit(["startup-config is not present"])  # inferred wording
        return True
    body = text.splitlines()
    await s.emit([f"Using {len(text.encode())} out of {NVRAM_SIZE} bytes", *_nvram_refs(body)])
    return True


async def h_show_certificates(s: Session, c: Call) -> bool:
    words = list(c.args)
    if words and len(words[0][0]) >= 2 and "pem".startswith(words[0][0].lower()):
        if len(words) > 2:
            raise CommandError("invalid", words[2][1])
        only_pem = words[1][0] if len(words) > 1 else None
        await s.emit(pki.show_certificates_pem(list(s.device.trustpoints.values()), only=only_pem))
        return True
    verbose = False
    if words and "verbose".startswith(words[0][0].lower()) and len(words[0][0]) >= 1:
        verbose = True
        words = words[1:]
    only = None
    if words:
        only = words[0][0]
        if len(words) > 1:
            raise CommandError("invalid", words[1][1])
    await s.emit(pki.show_certificates(list(s.device.trustpoints.values()), verbose=verbose, only=only,
                                         zone=s.device.zone))
    return True


async def h_show_trustpoints(s: Session, c: Call) -> bool:
    words = list(c.args)
    status = False
    if words and "status".startswith(words[-1][0].lower()):
        status = True
        words = words[:-1]
    only = None
    if words:
        only = words[0][0]
        if len(words) > 1:
            raise CommandError("invalid", words[1][1])
    await s.emit(pki.show_trustpoints(list(s.device.trustpoints.values()), status=status, only=only))
    return True


async def h_show_trustpool(s: Session, c: Call) -> bool:
    end_of_args(c)
    await s.emit(pki.show_trustpool(s.device.trustpool, s.device.zone))
    return True


async def h_show_env(s: Session, c: Call) -> bool:
    if c.args and not "all".startswith(c.args[0][0].lower()):
        name = c.args[0][0]
        if name in s.device.env:
            await s.emit(eem.show_environment({name: s.device.env[name]}))
        else:
            await s.emit(["Environment variable not found"])  # code-only evidence (id=41901568354)
        return True
    await s.emit(eem.show_environment(s.device.env))
    return True


async def h_show_policy(s: Session, c: Call) -> bool:
    end_of_args(c)
    await s.emit(eem.show_policy_registered(list(s.device.applets.values()), s.device.zone))
    return True


async def h_show_history(s: Session, c: Call) -> bool:
    end_of_args(c)
    await s.emit(eem.show_history(s.device.history, s.device.zone))
    return True


async def h_configure(s: Session, c: Call) -> bool:
    if c.args:
        if not "terminal".startswith(c.args[0][0].lower()):
            raise CommandError("invalid", c.args[0][1])
    else:
        answer = await s.ask("Configuring from terminal, memory, or network [terminal]? ")
        if answer is None:
            return False
        if answer.strip() and not "terminal".startswith(answer.strip().lower()):
            await s.write_lines(["?Must be \"terminal\", \"memory\" or \"network\"", ""])  # inferred
            return True
    await s.write_lines([CONFIG_BANNER])
    s.mode = "config"
    s.device.invariants.entered_config(s.watch)
    return True


async def _build_and_save(s: Session) -> None:
    # write_memory / copy: `Building configuration...` then `[OK]` (C9800, cm-s6-h001)
    await s.write_lines(["Building configuration..."])
    s.device.invariants.saved(s.watch)
    s.device.save()
    await s.write_lines(["[OK]"])


async def h_write(s: Session, c: Call) -> bool:
    await _build_and_save(s)
    return True


async def h_copy_run_start(s: Session, c: Call) -> bool:
    answer = await s.ask("Destination filename [startup-config]? ")
    if answer is None:
        return False
    if answer.strip() not in ("", "startup-config"):
        await s.write_lines([f"%Error opening nvram:{answer.strip()} (Permission denied)", ""])  # inferred
        return True
    await _build_and_save(s)
    return True


async def h_send_log(s: Session, c: Call) -> bool:
    words = c.args
    if not words:
        raise CommandError("incomplete")
    text = c.rest
    tag = f"Message from tty{s.vty + 2}(user id: {s.user.name}): "  # inferred: vty0 = tty2 (lambreca 7200)
    first = words[0][0]
    if first.isdigit():
        sev = int(first)
        if sev > 7:
            raise CommandError("invalid", words[0][1])
        if len(words) < 2:
            raise CommandError("incomplete")
        text = c.rest[words[1][1] - c.rest_column :]
        s.device.log(f"%SYS-{sev}-USERLOG_{SEVERITY_NAMES[sev]}: {tag}{text}")
    else:
        # inferred: without a severity (personal note id=27220129955 claims SYS-2-LOGMSG)
        s.device.log(f"%SYS-2-LOGMSG: {tag}{text}")
    return True


async def h_event_run(s: Session, c: Call) -> bool:
    if not c.args:
        raise CommandError("incomplete")
    fire = s.device.invariants.fired(s.watch)

    def done(ok: bool) -> None:
        fire.ok = ok

    refusal = s.device.run_applet(c.args[0][0], on_done=done)
    if refusal is not None:
        fire.ok = False
        await s.write_lines([refusal, ""])  # inferred: printed at the CLI, blank line after
    return True



async def h_ignore(s: Session, c: Call) -> bool:
    return True



def _exec_table() -> CommandTable:
    exec_table = CommandTable()
    exec_table.add("enable", h_enable, priv=0)
    exec_table.add("disable", h_disable, priv=1)
    exec_table.add("exit", h_exit, priv=0)
    exec_table.add("logout", h_exit, priv=0)
    exec_table.add("terminal length", _terminal_setter("length"), priv=0, args=True)
    exec_table.add("terminal width", _terminal_setter("width"), priv=0, args=True)
    exec_table.add("terminal no monitor", h_ignore, priv=1)
    exec_table.add("terminal monitor", h_ignore, priv=1)
    exec_table.add("show clock", h_show_clock, priv=1)
    exec_table.add("show version", h_show_version, priv=1)
    exec_table.add("show logging", h_show_logging)
    exec_table.add("show running-config", h_show_running)
    exec_table.add("show startup-config", h_show_startup)
    exec_table.add("show crypto pki certificates", h_show_certificates, args=True)
    exec_table.add("show crypto pki trustpoints", h_show_trustpoints, args=True)
    exec_table.add("show crypto pki trustpool", h_show_trustpool)
    exec_table.add("show event manager environment", h_show_env, args=True)
    exec_table.add("show event manager policy registered", h_show_policy)
    exec_table.add("show event manager history events", h_show_history)
    exec_table.add("configure", h_configure, args=True)
    exec_table.add("write", h_write)
    exec_table.add("write memory", h_write)
    exec_table.add("copy running-config startup-config", h_copy_run_start)
    exec_table.add("send log", h_send_log, args=True)
    exec_table.add("event manager run", h_event_run, args=True)

    return exec_table


EXEC_TABLE = _exec_table()
