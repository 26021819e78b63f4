"""The configuration's model: every key, its type, bounds and the checks across keys (pydantic)."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from eemwatchd.core.certificate import Certificate
from eemwatchd.core.ios.tokens import (
    TRUSTPOINT_NAME_MAX,
    check_applet_name,
    check_ios_token,
    check_trustpoint_name,
    check_username,
)
from eemwatchd.core.shard import Shard

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0, None: 1.0}
_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,62}$"
MINUTE, HOUR, DAY = 60.0, 3600.0, 86400.0
# Characters of the SHA-256 a trustpoint name carries after the prefix (core.plan.trustpoint_name uses 8
# and grows to 16 and more when names collide): the prefix leaves room for at least this many.
FINGERPRINT_ROOM = 16


def parse_duration(value: Any) -> float:
    """Seconds from ``90``, ``"90s"``, ``"15m"``, ``"1h"``, ``"7d"``, ``"1w"``; finite and not negative."""
    if isinstance(value, bool):
        raise ValueError("must be a duration like 30s, 15m, 1h or 7d")  # noqa: TRY004 - pydantic wants ValueError
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    else:
        raise ValueError("must be a duration like 30s, 15m, 1h or 7d")
    if not math.isfinite(seconds):
        raise ValueError("must be a finite duration like 30s, 15m, 1h or 7d")
    if seconds < 0:
        raise ValueError("must not be negative")
    return seconds


def human_duration(seconds: float) -> str:
    """``90`` -> ``90s``, ``3600`` -> ``1h``, ``1209600`` -> ``14d``: the largest unit that divides evenly."""
    for unit, size in (("d", DAY), ("h", HOUR), ("m", MINUTE)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:.0f}{unit}"
    if seconds >= 10 * DAY:
        return f"{seconds / DAY:.6g}d"
    return f"{seconds:g}s"


def _bounds(low: float, high: float) -> AfterValidator:
    def check(seconds: float) -> float:
        if not low <= seconds <= high:
            raise ValueError(f"must be between {human_duration(low)} and {human_duration(high)} "
                             f"(got {human_duration(seconds)})")
        return seconds

    return AfterValidator(check)


Duration = Annotated[float, BeforeValidator(parse_duration)]
# Seconds are allowed for the lab and tests (eemwatchd lab rotates within a minute); production uses minutes+.
ServerInterval = Annotated[float, BeforeValidator(parse_duration), _bounds(1.0, 7 * DAY)]
RouterInterval = Annotated[float, BeforeValidator(parse_duration), _bounds(5.0, 7 * DAY)]
Timeout = Annotated[float, BeforeValidator(parse_duration), _bounds(1.0, HOUR)]
# recent may be seconds long in the lab; window_problems() says when it is too short for the intervals.
Window = Annotated[float, BeforeValidator(parse_duration), _bounds(1.0, 365 * DAY)]
Retention = Annotated[float, BeforeValidator(parse_duration), _bounds(0.0, 365 * DAY)]
Reminder = Annotated[float, BeforeValidator(parse_duration), _bounds(MINUTE, 30 * DAY)]
AlertTimeout = Annotated[float, BeforeValidator(parse_duration), _bounds(1.0, 5 * MINUTE)]


class Secret:
    """A secret value. Its repr and str never show the value; ``reveal()`` is the one way to read it."""

    __slots__ = ("_value", "origin")

    def __init__(self, value: str, *, origin: str) -> None:
        self._value = value
        self.origin = origin  # "env:NAME", "file:/path" or "inline" - safe to show

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret(<{self.origin}>)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def _raise_if(problem: str | None) -> None:
    if problem is not None:
        raise ValueError(problem)


def _applet(value: str) -> str:
    _raise_if(check_applet_name(value))
    return value


def _username(value: str) -> str:
    _raise_if(check_username(value))
    return value


def _trustpoint(value: str) -> str:
    _raise_if(check_trustpoint_name(value))
    return value


def _prefix(value: str) -> str:
    _raise_if(check_ios_token(value, what="a trustpoint prefix", max_length=TRUSTPOINT_NAME_MAX, extra="-_"))
    room = TRUSTPOINT_NAME_MAX - FINGERPRINT_ROOM
    if len(value) > room:
        raise ValueError(f"{value!r} is {len(value)} characters; a trustpoint name is the prefix plus at least "
                         f"{FINGERPRINT_ROOM} hex characters of the fingerprint, within the {TRUSTPOINT_NAME_MAX} "
                         f"characters of a trustpoint name, so the prefix has at most {room}")
    if not value[0].isalpha():
        raise ValueError(f"{value!r} must start with a letter (IOS names read better so, and it keeps our "
                         "trustpoints apart from numbered ones)")
    return value

AppletName = Annotated[str, AfterValidator(_applet)]
UserName = Annotated[str, AfterValidator(_username)]
TrustpointName = Annotated[str, AfterValidator(_trustpoint)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


class Timeouts(_Model):
    connect: Timeout = 10.0
    step: Timeout = 30.0
    total: Timeout = 120.0

    @model_validator(mode="after")
    def _check_order(self) -> Timeouts:
        for name in ("connect", "step"):
            value = getattr(self, name)
            if value > self.total:
                raise ValueError(f"{name} ({human_duration(value)}) is longer than total "
                                 f"({human_duration(self.total)}); total bounds the whole session, so make it "
                                 f"at least {human_duration(value)}")
        return self


def _smtp_login(value: str) -> str:
    if "@" in value:
        raise ValueError(f"{value!r} contains '@': EEM splits _email_server at the first '@' (Cisco bug "
                         "CSCwe75439), so the login name cannot hold one; use an account whose login name has "
                         "no '@' (an app-specific or API login)")
    if ":" in value:
        raise ValueError(f"{value!r} contains ':', which separates user and password in _email_server; "
                         "use a login name without ':'")
    _raise_if(check_ios_token(value, what="an SMTP login name"))
    return value


def _mail_address(value: str) -> str:
    _raise_if(check_ios_token(value, what="a mail address", max_length=254))
    if not re.fullmatch(r"[^@]+@[^@]+\.[^@.]+", value):
        raise ValueError(f"{value!r} is not a mail address; give the address the account sends as "
                         "(the provider refuses or rewrites any other)")
    return value


class AccountConfig(_Model):
    """The SMTP account the routers' applets log in with: ``_email_server user:password@host``.

    ``from`` is required: the login name cannot be an address (no '@', see ``_smtp_login``), and the
    provider accepts only the address the account may send as.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True, populate_by_name=True)

    username: Annotated[str, AfterValidator(_smtp_login)]
    password: Secret
    mail_from: Annotated[str, AfterValidator(_mail_address)] = Field(alias="from")

    @field_validator("password")
    @classmethod
    def _check_password(cls, secret: Secret, info: ValidationInfo) -> Secret:
        value = secret.reveal()
        if "@" in value:
            raise ValueError("contains '@': EEM splits _email_server at the first '@'; use a password "
                             "without '@' (value not shown)")
        # The password goes into one CLI token with the login name: user:password@host.
        user = info.data.get("username", "user")
        problem = check_ios_token(f"{user}:{value}", what="user:password in _email_server", max_length=255,
                                  show=False)
        if problem is not None:
            raise ValueError(f"{problem} (value not shown)")
        return secret


_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


def _prestage_item(value: Any) -> Any:
    """A bare path is a file without a pin."""
    return {"file": value} if isinstance(value, str | Path) else value


class PrestageFile(_Model):
    """One entry of ``servers[].prestage``: a PEM file of CA certificates the provider announced, optionally pinned
    (``sha256``: the one certificate it holds; then it need not chain to the trust store).

    ``certificates`` are read and judged by the loader (config/prestage.py) when the config is loaded; the file
    names only ``file`` and ``sha256``. What was checked is what is installed: a changed file is read again at the
    next load (SIGHUP), never behind the checks' back.
    """

    file: Path
    sha256: str | None = None
    certificates: tuple[Certificate, ...] = ()

    @field_validator("sha256", mode="before")
    @classmethod
    def _check_sha256(cls, value: Any) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str):
            raise ValueError(f"YAML read {value!r} as a {type(value).__name__}: write the SHA-256 fingerprint "  # noqa: TRY004 - pydantic wants ValueError
                             "in quotes")
        compact = value.replace(":", "").strip().lower()
        if not _SHA256.fullmatch(compact):
            raise ValueError(f"{value!r} must be a SHA-256 fingerprint (64 hex characters, colons allowed)")
        return compact


class ServerConfig(_Model):
    name: str = Field(pattern=_NAME)
    host: str = Field(min_length=1, max_length=253)
    port: int | None = Field(default=None, ge=1, le=65535)
    mode: Literal["starttls", "implicit"] = "starttls"
    interval: ServerInterval = HOUR
    servername: str | None = None
    ca_file: Path | None = None
    pins: tuple[str, ...] = ()
    # CA certificates the provider announced: installed on the routers before its chains move to them.
    prestage: tuple[Annotated[PrestageFile, BeforeValidator(_prestage_item)], ...] = ()
    timeouts: Timeouts = Timeouts()
    account: AccountConfig | None = None

    @property
    def prestaged_certificates(self) -> tuple[Certificate, ...]:
        """Every certificate of ``prestage``, in file order, each once."""
        seen: dict[str, Certificate] = {}
        for entry in self.prestage:
            for cert in entry.certificates:
                seen.setdefault(cert.sha256, cert)
        return tuple(seen.values())

    @property
    def effective_port(self) -> int:
        return self.port if self.port is not None else (587 if self.mode == "starttls" else 465)

    @model_validator(mode="after")
    def _check_pins(self) -> ServerConfig:
        for pin in self.pins:
            if not re.fullmatch(r"[0-9a-fA-F]{64}", pin.replace(":", "")):
                raise ValueError(f"pin {pin!r} must be a SHA-256 fingerprint (64 hex characters)")
        return self


class RouterConfig(_Model):
    name: str = Field(pattern=_NAME)
    host: str = Field(min_length=1, max_length=253)
    port: int = Field(default=22, ge=1, le=65535)
    username: UserName
    password: Secret | None = None
    key_file: Path | None = None
    enable_secret: Secret | None = None
    known_hosts: Path | None = None
    trust_on_first_use: bool = False
    # SHA-1 key exchange, MACs and host-key signatures are off unless this is set (old IOS images).
    legacy_algorithms: bool = False
    applet: AppletName
    servers: tuple[str, ...] = Field(min_length=1)
    adopt: tuple[TrustpointName, ...] = ()
    interval: RouterInterval = HOUR
    timeouts: Timeouts = Timeouts()


class PolicyConfig(_Model):
    install: Literal["path", "anchor_only"] = "path"
    include_leaf: bool = False
    trustpoint_prefix: Annotated[str, AfterValidator(_prefix)] = "EEMW-"
    retention: Retention = 7 * DAY
    confirmations: int = Field(default=2, ge=1, le=100)
    expiry_warning: Retention = 30 * DAY
    recent: Window = 14 * DAY
    alert_reminder: Reminder = 24 * HOUR
    # Sessions spend their time waiting for round trips (BENCHMARKS.md, "Sessions in parallel"): 64 at once
    # cost ~15 MiB and 64 file descriptors more than 8 and cover a 1000-router rotation at 100 ms RTT in a
    # minute; session pacing (core/pacing.py) lowers it while routers refuse sessions.
    max_parallel_routers: int = Field(default=64, ge=1, le=500)
    trust_store: str = "system"
    aia: bool = True
    strict_ios_validation: bool = True


class AlertConfig(_Model):
    kind: Literal["log", "webhook", "email"]
    events: tuple[Literal["chain_changed", "chain_unverified", "router_drift", "refresh_failed",
                          "refresh_succeeded", "expiry", "state_store"], ...] = (
        "chain_changed", "chain_unverified", "router_drift", "refresh_failed", "expiry", "state_store")
    url: str | None = None
    smtp_host: str | None = None
    smtp_port: int = Field(default=587, ge=1, le=65535)
    mail_from: str | None = None
    mail_to: tuple[str, ...] = ()
    username: str | None = None
    password: Secret | None = None
    timeout: AlertTimeout = 10.0

    @model_validator(mode="after")
    def _check_kind(self) -> AlertConfig:
        if self.kind == "webhook" and not self.url:
            raise ValueError("a webhook alert needs url: (http:// or https://)")
        if self.kind == "webhook" and self.url and not re.match(r"^https?://", self.url):
            raise ValueError("url must start with http:// or https://")
        if self.kind == "email" and not (self.smtp_host and self.mail_from and self.mail_to):
            raise ValueError("an email alert needs smtp_host, mail_from and mail_to")
        return self


class MetricsConfig(_Model):
    listen: str = Field(default="127.0.0.1:9810", pattern=r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-]+):\d{1,5}$")


class Config(_Model):
    state_path: Path = Path("/var/lib/eemwatchd/state.db")
    servers: tuple[ServerConfig, ...] = Field(min_length=1)
    routers: tuple[RouterConfig, ...] = ()
    policy: PolicyConfig = PolicyConfig()
    alerts: tuple[AlertConfig, ...] = (AlertConfig(kind="log"),)
    metrics: MetricsConfig = MetricsConfig()
    # This instance's share of the routers, "K/N" (docs/deploy.md: several instances); None: all of them.
    shard: str | None = None

    @model_validator(mode="after")
    def _check_shard(self) -> Config:
        if self.shard is not None:
            Shard.parse(self.shard)  # ValueError with the fix
        return self

    def sharded(self, shard: Shard | None) -> Config:
        """The part of this config one instance runs: its routers (rendezvous hashing of their names), the
        servers they mail through, its own state file (``state.db`` -> ``state.0-of-3.db``)."""
        if shard is None or shard.count == 1:
            return self
        routers = tuple(r for r in self.routers if shard.owns(r.name))
        needed = {name for r in routers for name in r.servers}
        servers = tuple(s for s in self.servers if s.name in needed)  # none when it owns no router
        state = self.state_path.with_name(f"{self.state_path.stem}.{shard.suffix}{self.state_path.suffix}")
        return self.model_copy(update={"routers": routers, "servers": servers, "state_path": state,
                                       "shard": str(shard)})

    def server(self, name: str) -> ServerConfig:
        for server in self.servers:
            if server.name == name:
                return server
        raise KeyError(name)

    def router(self, name: str) -> RouterConfig:
        for router in self.routers:
            if router.name == name:
                return router
        raise KeyError(name)

    def secrets(self) -> list[str]:
        """Every secret value the config holds, so whatever writes text can scrub them."""
        found: list[Secret | None] = []
        for router in self.routers:
            found += [router.password, router.enable_secret]
        found += [alert.password for alert in self.alerts]
        found += [server.account.password for server in self.servers if server.account is not None]
        return list(dict.fromkeys(s.reveal() for s in found if s is not None))


def window_problems(config: Config) -> list[str]:
    """Windows that cannot work together, each with its fix.

    A chain counts once it was seen ``policy.confirmations`` times and only while its last sighting is
    within ``policy.recent``; a server is fetched every ``servers[].interval``. So ``recent`` must be longer
    than ``confirmations`` x the longest interval, or a chain may never count while it is still recent (and
    ``recent: 0s`` would leave nothing to trust). ``retention`` needs no such rule: it starts when a
    certificate stops being desired, that is after ``recent`` ran out, so a trustpoint outlives the last
    sighting of its chain by ``recent + retention``.
    """
    policy = config.policy
    index, server = max(enumerate(config.servers), key=lambda pair: pair[1].interval)
    needed = policy.confirmations * server.interval
    if policy.recent > needed:
        return []
    return [f"policy.recent: {human_duration(policy.recent)} is too short: a chain counts after "
            f"{policy.confirmations} sightings (policy.confirmations) and servers[{index}] ({server.name}) is "
            f"fetched every {human_duration(server.interval)}, so a chain cannot be confirmed while it is "
            f"still recent; make recent longer than {human_duration(needed)} (the default is 14d) or fetch "
            "more often"]
