"""The lab router's configuration commands: global config, `crypto pki trustpoint` and `event manager applet`
sub-modes, `crypto pki authenticate` and trustpool import dialogues, logging and clock settings."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING

from eemwatchd_lab.router import eem, pki, settings
from eemwatchd_lab.router.clock import Zone
from eemwatchd_lab.router.device import HISTORY_SIZE
from eemwatchd_lab.router.exec_commands import EXEC_TABLE, end_of_args, h_configure, h_exit, h_ignore
from eemwatchd_lab.router.grammar import Call, CommandError, CommandTable, Handler, words_of

if TYPE_CHECKING:
    from eemwatchd_lab.router.session import Session


async def h_trustpool_import(s: Session, c: Call) -> bool:
    end_of_args(c)
    await pki.import_trustpool(s, s.device.trustpool)
    return True





async def h_end(s: Session, c: Call) -> bool:
    s.leave_config()
    return True


async def h_exit_config(s: Session, c: Call) -> bool:
    if s.mode in ("ca-trustpoint", "config-applet"):
        s.close_submode()
        s.mode = "config"
    else:
        s.leave_config()
    return True


async def h_do(s: Session, c: Call) -> bool | None:
    if not c.args:
        raise CommandError("incomplete")
    mode = s.mode
    s.mode = "exec"
    try:
        handler, call = EXEC_TABLE.match(c.rest, c.rest_column, s.priv)
        if handler in (h_configure, h_exit):
            raise CommandError("invalid", c.rest_column)
        if not await s.authorize(call):  # `do X` is authorized as X
            return True
        return await handler(s, call)
    finally:
        if s.mode == "exec":
            s.mode = mode


async def h_hostname(s: Session, c: Call) -> bool:
    if len(c.args) != 1:
        raise CommandError("incomplete" if not c.args else "invalid", c.args[-1][1] if c.args else 0)
    s.device.hostname = c.args[0][0]
    s.changed()
    return True


async def h_trustpoint(s: Session, c: Call) -> bool:
    if not c.args:
        raise CommandError("incomplete")
    name = c.args[0][0]
    tp = s.device.trustpoints.get(name)
    if tp is None:
        tp = pki.Trustpoint(name)
        s.device.trustpoints[name] = tp
    s.trustpoint = tp
    s.mode = "ca-trustpoint"
    s.changed()
    return True


async def h_no_trustpoint(s: Session, c: Call) -> bool:
    if not c.args:
        raise CommandError("incomplete")
    name = c.args[0][0]
    tp = s.device.trustpoints.get(name)
    if tp is None:
        await s.write_lines([pki.cannot_find_policy(name), ""])
        return True
    if tp.ca_cert is not None:
        # no_crypto_pki_trustpoint__genielibs_wsim_c9800.txt; without certificates no question (id=60910671649)
        await s.write_lines(pki.REMOVE_WARNING)
        answer = await s.ask(pki.REMOVE_QUESTION)
        if answer is None:
            return False
        if not pki.is_yes(answer):
            return True  # inferred: "no" keeps the trustpoint silently
        await s.write_lines(pki.REMOVE_DONE)
    del s.device.trustpoints[name]
    s.changed()
    return True


async def h_authenticate(s: Session, c: Call) -> bool:
    if not c.args:
        raise CommandError("incomplete")
    name = c.args[0][0]
    if await pki.authenticate(s, s.device.trustpoints.get(name), name, s.device.now()):
        s.changed()
    return True


async def h_environment(s: Session, c: Call) -> bool:
    if len(c.args) < 2:
        raise CommandError("incomplete")
    name = c.args[0][0]
    value = c.rest[c.args[1][1] - c.rest_column :].strip()
    s.device.env[name] = value
    s.changed()
    return True


async def h_no_environment(s: Session, c: Call) -> bool:
    if not c.args:
        raise CommandError("incomplete")
    s.device.env.pop(c.args[0][0], None)
    s.changed()
    return True


async def h_history_size(s: Session, c: Call) -> bool:
    """`event manager history size events <1-50>` (traps are accepted and ignored)."""
    words = words_of(c)
    if len(words) < 2:
        raise CommandError("incomplete")
    kind = [k for k in ("events", "traps") if k.startswith(words[0].lower())]
    if len(kind) != 1:
        raise CommandError("invalid", c.args[0][1])
    if not words[1].isdigit() or not 1 <= int(words[1]) <= 50:
        raise CommandError("invalid", c.args[1][1])
    if len(words) > 2:
        raise CommandError("invalid", c.args[2][1])
    if kind[0] == "events":
        s.device.set_history_size(int(words[1]))
    s.changed()
    return True


async def h_no_history_size(s: Session, c: Call) -> bool:
    if c.args and "events".startswith(c.args[0][0].lower()):
        s.device.history_size = HISTORY_SIZE
    s.changed()
    return True


async def h_applet(s: Session, c: Call) -> bool:
    if not c.args:
        raise CommandError("incomplete")
    name = c.args[0][0]
    extra = [w.lower() for w, _ in c.args[1:]]
    bypass = False
    if extra:
        if len(extra) != 2 or not "authorization".startswith(extra[0]) or not "bypass".startswith(extra[1]):
            raise CommandError("invalid", c.args[1][1])
        bypass = True
    applet = s.device.applets.get(name)
    if applet is None:
        applet = eem.Applet(name)
        s.device.applets[name] = applet
    applet.authorization_bypass = bypass or applet.authorization_bypass
    s.applet = applet
    s.mode = "config-applet"
    s.changed()
    return True


async def h_no_applet(s: Session, c: Call) -> bool:
    if not c.args:
        raise CommandError("incomplete")
    s.device.applets.pop(c.args[0][0], None)
    s.changed()
    return True


def _trustpoint_setter(keyword: str) -> Handler:
    async def handler(s: Session, c: Call) -> bool:
        assert s.trustpoint is not None
        try:
            pki.apply_trustpoint_command(s.trustpoint, keyword, c.args)
        except pki.SubcommandError as exc:
            raise CommandError("incomplete" if exc.column < 0 else "invalid", exc.column) from None
        s.changed()
        return True

    return handler


def _trustpoint_unsetter(keyword: str) -> Handler:
    async def handler(s: Session, c: Call) -> bool:
        assert s.trustpoint is not None
        pki.remove_trustpoint_setting(s.trustpoint, keyword)
        s.changed()
        return True

    return handler


async def h_applet_event(s: Session, c: Call) -> bool:
    assert s.applet is not None
    try:
        eem.parse_event(s.applet, c.args)
    except eem.ActionSyntaxError as exc:
        raise CommandError("incomplete" if exc.column < 0 else "invalid", exc.column) from None
    s.changed()
    return True


async def h_applet_action(s: Session, c: Call) -> bool:
    assert s.applet is not None
    try:
        action = eem.parse_action(c.rest, c.rest_column)
    except eem.ActionSyntaxError as exc:
        raise CommandError("incomplete" if exc.column < 0 else "invalid", exc.column) from None
    s.applet.set_action(action)
    s.changed()
    return True


async def h_applet_no_action(s: Session, c: Call) -> bool:
    assert s.applet is not None
    if not c.args:
        raise CommandError("incomplete")
    label = c.args[0][0]
    s.applet.actions = [a for a in s.applet.actions if a.label != label]
    s.changed()
    return True


async def h_applet_maxrun(s: Session, c: Call) -> bool:
    # inferred: IOS sets maxrun on the `event` line; a bare `maxrun N` is accepted here as a shortcut.
    assert s.applet is not None
    if not c.args:
        raise CommandError("incomplete")
    try:
        s.applet.maxrun = eem.parse_maxrun(c.args[0])
    except eem.ActionSyntaxError as exc:
        raise CommandError("invalid", exc.column) from None
    s.changed()
    return True


def _setting(apply: Callable[[Session, list[tuple[str, int]]], None]) -> Handler:
    async def handler(s: Session, c: Call) -> bool:
        try:
            apply(s, c.args)
        except settings.SettingError as exc:
            raise CommandError("incomplete" if exc.column < 0 else "invalid", exc.column) from None
        s.changed()
        return True

    return handler


def _set_timezone(s: Session, args: list[tuple[str, int]]) -> None:
    zone = settings.clock_timezone(args)
    old = s.device.zone
    s.device.zone = Zone(zone.name, zone.offset, old.summer_name, old.summer_start, old.summer_end, old.summer_extra)


def _set_summer(s: Session, args: list[tuple[str, int]]) -> None:
    s.device.zone, s.device.summer_text = settings.clock_summer_time(s.device.zone, args)


def _no_timezone(s: Session, args: list[tuple[str, int]]) -> None:
    old = s.device.zone
    s.device.zone = Zone("UTC", timedelta(0), old.summer_name, old.summer_start, old.summer_end, old.summer_extra)


def _no_summer(s: Session, args: list[tuple[str, int]]) -> None:
    s.device.zone = Zone(s.device.zone.name, s.device.zone.offset)
    s.device.summer_text = None


def _set_sequence_numbers(on: bool) -> Callable[[Session, list[tuple[str, int]]], None]:
    def apply(s: Session, args: list[tuple[str, int]]) -> None:
        if args:
            raise settings.SettingError(args[0][1])
        s.device.logbuf.sequence_numbers = on

    return apply



def _config_tables() -> dict[str, CommandTable]:
    config = CommandTable()
    config.add("end", h_end)
    config.add("exit", h_exit_config)
    config.add("do", h_do, args=True)
    config.add("hostname", h_hostname, args=True)
    config.add("crypto pki trustpoint", h_trustpoint, args=True)
    config.add("crypto pki authenticate", h_authenticate, args=True)
    # with `trustpool` beside `trustpoint`, `crypto pki trust` is ambiguous, as on a real router
    config.add("crypto pki trustpool import terminal", h_trustpool_import)
    config.add("no crypto pki trustpoint", h_no_trustpoint, args=True)
    config.add("event manager environment", h_environment, args=True)
    config.add("event manager applet", h_applet, args=True)
    config.add("no event manager environment", h_no_environment, args=True)
    config.add("no event manager applet", h_no_applet, args=True)
    config.add("event manager history size", h_history_size, args=True)
    config.add("logging buffered", _setting(lambda s, a: settings.logging_buffered(s.device.logbuf, a)), args=True)
    config.add("no logging buffered", _setting(lambda s, a: s.device.logbuf.disable()), args=True)
    config.add("service timestamps", _setting(lambda s, a: settings.service_timestamps(s.device.logbuf, a)),
               args=True)
    config.add("service sequence-numbers", _setting(_set_sequence_numbers(True)), args=True)
    config.add("no service sequence-numbers", _setting(_set_sequence_numbers(False)), args=True)
    config.add("clock timezone", _setting(_set_timezone), args=True)
    config.add("clock summer-time", _setting(_set_summer), args=True)
    config.add("no clock timezone", _setting(_no_timezone), args=True)
    config.add("no clock summer-time", _setting(_no_summer), args=True)
    config.add("no event manager history size", h_no_history_size, args=True)

    trustpoint = CommandTable()
    trustpoint.add("end", h_end)
    trustpoint.add("exit", h_exit_config)
    trustpoint.add("do", h_do, args=True)
    for keyword in pki.TRUSTPOINT_KEYWORDS:
        if keyword in ("exit", "no"):
            continue
        trustpoint.add(keyword, _trustpoint_setter(keyword), args=True)
        trustpoint.add(f"no {keyword}", _trustpoint_unsetter(keyword), args=True)

    applet = CommandTable()
    applet.add("end", h_end)
    applet.add("exit", h_exit_config)
    applet.add("do", h_do, args=True)
    applet.add("event", h_applet_event, args=True)
    applet.add("action", h_applet_action, args=True)
    applet.add("no action", h_applet_no_action, args=True)
    applet.add("maxrun", h_applet_maxrun, args=True)
    applet.add("description", h_ignore, args=True)
    return {"config": config, "ca-trustpoint": trustpoint, "config-applet": applet}


CONFIG_TABLES = _config_tables()
