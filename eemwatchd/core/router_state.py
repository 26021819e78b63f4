"""What eemwatchd reads from a router: trustpoints, the certificates they hold, EEM variables and applets."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from eemwatchd.core.certificate import Certificate

HeldKind = Literal["ca", "self-signed", "identity"]

# EEM's default applet maxrun (seconds) when the event statement sets none (docs/field-notes.md sec. 5).
DEFAULT_MAXRUN = 20.0

_VARIABLE = re.compile(r"\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))")


@dataclass(frozen=True)
class HeldCertificate:
    """One certificate of a `crypto pki certificate chain`.

    ``certificate`` is None when the config shows an ``nvram:`` file reference instead of hex
    (startup-config on 17.3, transcript show_startup-config_crypto_pki_nvram_refs__gh_ie_switch_17_3).
    """

    kind: HeldKind
    serial: str
    certificate: Certificate | None
    storage: str | None = None


@dataclass(frozen=True)
class Trustpoint:
    """A `crypto pki trustpoint` with its settings and the certificates of its chain."""

    name: str
    enrollment: str | None = None
    revocation_check: str | None = None
    chain_validation: str | None = None
    fingerprint: str | None = None
    other_lines: tuple[str, ...] = ()
    certificates: tuple[HeldCertificate, ...] = ()

    @property
    def ca_certificates(self) -> tuple[Certificate, ...]:
        """The decoded CA certificates (what `crypto pki authenticate` installs)."""
        return tuple(h.certificate for h in self.certificates if h.kind == "ca" and h.certificate)

    @property
    def certificates_with_kind(self) -> tuple[tuple[HeldKind, Certificate], ...]:
        """Every decoded certificate the trustpoint holds, in config order, with its kind.

        ``ca`` (`certificate ca`), ``identity`` (the router's own, `certificate SERIAL`) and
        ``self-signed`` (`certificate self-signed`): for `plan --json` and expiry reports. Certificates
        shown only as `nvram:` references have no content and are left out (see ``certificates``).
        """
        return tuple((h.kind, h.certificate) for h in self.certificates if h.certificate is not None)


def mask_server(value: str) -> str:
    """``user:password@host`` with the password replaced, for messages and logs.

    EEM splits `_email_server` at the FIRST ``@`` (docs/field-notes.md sec. 1); the mask keeps that view,
    so everything between the first ``:`` and the last ``@`` is hidden.
    """
    if "@" not in value:
        return value
    credentials, _, host = value.rpartition("@")
    user, colon, _password = credentials.partition(":")
    return f"{user}:****@{host}" if colon else f"{user}@{host}"


@dataclass(frozen=True)
class MailServer:
    """`_email_server` (or a mail action's ``server``) as EEM reads it: split at the first ``@``."""

    username: str | None
    password: str | None = field(repr=False)
    host: str
    at_count: int

    @classmethod
    def from_text(cls, value: str) -> MailServer:
        at_count = value.count("@")
        if at_count == 0:
            return cls(username=None, password=None, host=value.strip(), at_count=0)
        credentials, _, host = value.partition("@")
        user, colon, password = credentials.partition(":")
        return cls(username=user, password=password if colon else None, host=host.strip(), at_count=at_count)

    @property
    def intended_username(self) -> str | None:
        """The login name the operator meant: before the ``:`` of everything up to the LAST ``@``."""
        if self.at_count <= 1:
            return self.username
        credentials = f"{self.username}@{self.host}".rpartition("@")[0]
        return credentials.partition(":")[0]

    @property
    def host_as_intended(self) -> str:
        """The host after the LAST ``@``: what the operator meant when the username holds an ``@``."""
        return self.host.rpartition("@")[2] if self.at_count > 1 else self.host


@dataclass(frozen=True)
class MailAction:
    """``action LABEL mail server ... to ... from ... [cc ...] subject ... body ... [secure tls] [port N]``.

    Values are kept as configured, ``$variables`` unexpanded. ``server`` may hold a password: it is
    left out of the repr.
    """

    label: str
    server: str = field(repr=False)
    to: str | None = None
    from_: str | None = None
    cc: str | None = None
    subject: str | None = None
    body: str | None = None
    secure: str | None = None
    port: int | None = None
    extra: tuple[str, ...] = ()


@dataclass(frozen=True)
class AppletAction:
    """Any other ``action LABEL <verb> <arguments>`` line of an applet."""

    label: str
    verb: str
    arguments: str = ""


@dataclass(frozen=True)
class Applet:
    """An `event manager applet`. ``event`` is the event statement without ``event`` and ``maxrun``."""

    name: str
    event: str
    maxrun: float | None = None
    mail_actions: tuple[MailAction, ...] = ()
    other_actions: tuple[AppletAction, ...] = ()
    other_lines: tuple[str, ...] = ()

    @property
    def is_event_none(self) -> bool:
        """Only `event none` applets can be started with `event manager run`."""
        words = self.event.split()
        if len(words) >= 3 and words[0] == "tag":
            words = words[2:]
        return bool(words) and words[0] == "none"

    @property
    def effective_maxrun(self) -> float:
        return self.maxrun if self.maxrun is not None else DEFAULT_MAXRUN

    def syslog_messages_after_mail(self) -> tuple[str, ...]:
        """The ``syslog msg`` texts of actions after the last mail action: the applet's own success line."""
        if not self.mail_actions:
            return ()
        last_mail = self.mail_actions[-1].label
        out: list[str] = []
        for action in self.other_actions:
            if action.verb != "syslog" or not _label_after(action.label, last_mail):
                continue
            match = re.search(r'\bmsg\s+(?:"(?P<q>(?:[^"\\]|\\.)*)"|(?P<w>\S+))', action.arguments)
            if match:
                out.append(match.group("q") if match.group("q") is not None else match.group("w"))
        return tuple(out)


def _label_after(label: str, other: str) -> bool:
    """EEM orders action labels as strings, with decimal labels compared numerically per part."""
    return _label_key(label) > _label_key(other)


def _label_key(label: str) -> tuple[tuple[int, int | str], ...]:
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in label.split("."))


@dataclass(frozen=True)
class ConfigProblem:
    """A block of the running-config that could not be read: it is left out of what was parsed (or, for a
    certificate chain, its trustpoint is marked unreadable), and the rest of the config still counts."""

    block: str  # the block's first line, e.g. `crypto pki certificate chain TP-1`
    reason: str
    line: str
    trustpoint: str | None = None
    applet: str | None = None


@dataclass(frozen=True)
class RouterSnapshot:
    """Everything read from one router in one pass. ``environment`` may hold secrets: not in the repr."""

    hostname: str | None
    trustpoints: tuple[Trustpoint, ...] = ()
    environment: Mapping[str, str] = field(default_factory=dict, repr=False)
    applets: tuple[Applet, ...] = ()
    clock: datetime | None = None
    problems: tuple[ConfigProblem, ...] = ()  # blocks of its running-config that could not be read

    def trustpoint(self, name: str) -> Trustpoint | None:
        return next((tp for tp in self.trustpoints if tp.name == name), None)

    def applet(self, name: str) -> Applet | None:
        return next((a for a in self.applets if a.name == name), None)

    def expand(self, text: str) -> tuple[str, tuple[str, ...]]:
        """``text`` with ``$name``/``${name}`` replaced from the EEM environment, and the names not defined.

        Built-in variables (``$_event_pub_time`` ...) that are not in the environment stay as written.
        """
        missing: list[str] = []

        def replace(match: re.Match[str]) -> str:
            name = match.group("braced") or match.group("bare")
            if name in self.environment:
                return self.environment[name]
            missing.append(name)
            return match.group(0)

        return _VARIABLE.sub(replace, text), tuple(missing)
