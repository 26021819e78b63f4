"""The configuration: one YAML file, validated at load, every problem reported at once with its key path.

pydantic does the type and range checks (and gives each problem a location); we turn its errors into
``routers[3].port: must be 1-65535``-style lines with a fix, then run the cross-field checks ourselves.
Secrets come from ``${ENV_VAR}`` references or ``*_file`` keys; a secret written in clear draws a warning.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from eemwatchd.errors import ConfigError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0, None: 1.0}
_ENV_REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")
_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,62}$"


def parse_duration(value: Any) -> float:
    """Seconds from ``90``, ``"90s"``, ``"15m"``, ``"1h"``, ``"7d"``, ``"1w"``."""
    if isinstance(value, bool):
        raise ValueError("must be a duration like 30s, 15m, 1h or 7d")  # noqa: TRY004 - pydantic wants ValueError
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    else:
        raise ValueError("must be a duration like 30s, 15m, 1h or 7d")
    if seconds < 0:
        raise ValueError("must not be negative")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]


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


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


class Timeouts(_Model):
    connect: Duration = 10.0
    step: Duration = 30.0
    total: Duration = 120.0


class ServerConfig(_Model):
    name: str = Field(pattern=_NAME)
    host: str = Field(min_length=1, max_length=253)
    port: int | None = Field(default=None, ge=1, le=65535)
    mode: Literal["starttls", "implicit"] = "starttls"
    interval: Duration = 3600.0
    servername: str | None = None
    ca_file: Path | None = None
    pins: tuple[str, ...] = ()
    timeouts: Timeouts = Timeouts()

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
    username: str = Field(min_length=1)
    password: Secret | None = None
    key_file: Path | None = None
    enable_secret: Secret | None = None
    known_hosts: Path | None = None
    trust_on_first_use: bool = False
    applet: str = Field(min_length=1)
    servers: tuple[str, ...] = Field(min_length=1)
    adopt: tuple[str, ...] = ()
    timeouts: Timeouts = Timeouts()


class PolicyConfig(_Model):
    install: Literal["path", "anchor_only"] = "path"
    include_leaf: bool = False
    trustpoint_prefix: str = Field(default="EEMW-", pattern=r"^[A-Za-z][A-Za-z0-9_\-]{0,15}$")
    retention: Duration = 7 * 86400.0
    confirmations: int = Field(default=2, ge=1, le=100)
    expiry_warning: Duration = 30 * 86400.0
    recent: Duration = 14 * 86400.0
    max_parallel_routers: int = Field(default=8, ge=1, le=500)
    trust_store: str = "system"
    aia: bool = True
    strict_ios_validation: bool = True


class AlertConfig(_Model):
    kind: Literal["log", "webhook", "email"]
    events: tuple[Literal["chain_changed", "chain_unverified", "router_drift", "refresh_failed",
                          "refresh_succeeded", "expiry"], ...] = (
        "chain_changed", "chain_unverified", "router_drift", "refresh_failed", "expiry")
    url: str | None = None
    smtp_host: str | None = None
    smtp_port: int = Field(default=587, ge=1, le=65535)
    mail_from: str | None = None
    mail_to: tuple[str, ...] = ()
    username: str | None = None
    password: Secret | None = None
    timeout: Duration = 10.0

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


@dataclass
class LoadedConfig:
    config: Config
    warnings: list[str] = field(default_factory=list)


# --- loading ---------------------------------------------------------------------------------------

_SECRET_KEYS = {"password", "enable_secret"}
_FIXES = {
    "greater_than_equal": "must be {ge} or more",
    "less_than_equal": "must be {le} or less",
    "missing": "is required",
    "extra_forbidden": "is not a known key (check the spelling; see config/eemwatchd.example.yaml)",
    "string_pattern_mismatch": "has a character or length that is not allowed",
    "too_short": "must not be empty",
    "literal_error": "must be one of {expected}",
}


def _location(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out or "(top level)"


def _describe(error: Mapping[str, Any]) -> str:
    loc = _location([p for p in error["loc"] if not (isinstance(p, str) and p.startswith("function-"))])
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind in ("greater_than_equal", "less_than_equal") and {"ge", "le"} & set(ctx):
        message = _FIXES[kind].format(**ctx)
        if loc.endswith("port"):
            message = "must be 1-65535"
    elif kind in _FIXES:
        message = _FIXES[kind].format(**{k: str(v) for k, v in ctx.items()})
    elif kind == "value_error":
        message = str(ctx.get("error", error["msg"]))
    else:
        message = str(error["msg"]).lower()
    return f"{loc}: {message}"


def _resolve_secrets(node: Any, path: str, base: Path, problems: list[str], warnings: list[str]) -> Any:
    """Replace ``key`` / ``key_file`` pairs for secret keys by Secret objects; record problems."""
    if isinstance(node, list):
        return [_resolve_secrets(v, f"{path}[{i}]", base, problems, warnings) for i, v in enumerate(node)]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        where = f"{path}.{key}" if path else str(key)
        if isinstance(key, str) and key.endswith("_file") and key[:-5] in _SECRET_KEYS:
            name = key[:-5]
            if name in node:
                problems.append(f"{where}: give either {name} or {key}, not both")
                continue
            file_path = Path(str(value)).expanduser()
            if not file_path.is_absolute():
                file_path = base / file_path
            try:
                secret = file_path.read_text(encoding="utf-8").rstrip("\r\n")
            except OSError as exc:
                problems.append(f"{where}: cannot read {file_path} ({exc.strerror}); create it or fix the path")
                continue
            if not secret:
                problems.append(f"{where}: {file_path} is empty")
                continue
            out[name] = Secret(secret, origin=f"file:{file_path}")
        elif key in _SECRET_KEYS and value is not None:
            text = str(value)
            match = _ENV_REF.match(text)
            if match:
                env = os.environ.get(match.group(1))
                if env is None:
                    problems.append(f"{where}: environment variable {match.group(1)} is not set; export it "
                                    f"or use {key}_file:")
                    continue
                out[key] = Secret(env, origin=f"env:{match.group(1)}")
            else:
                warnings.append(f"{where}: secret written in clear in the config file; use "
                                f"{key}: ${{ENV_VAR}} or {key}_file: instead")
                out[key] = Secret(text, origin="inline")
        else:
            out[key] = _resolve_secrets(value, where, base, problems, warnings)
    return out


def _apply_defaults(raw: dict[str, Any], problems: list[str]) -> None:
    """Merge ``defaults.servers`` / ``defaults.routers`` into every server / router entry."""
    defaults = raw.pop("defaults", None) or {}
    if not isinstance(defaults, dict):
        problems.append("defaults: must be a mapping with servers: and/or routers:")
        return
    for section in ("servers", "routers"):
        shared = defaults.get(section) or {}
        if not isinstance(shared, dict):
            problems.append(f"defaults.{section}: must be a mapping of keys shared by every entry")
            continue
        entries = raw.get(section)
        if not isinstance(entries, list):
            continue
        raw[section] = [{**shared, **e} if isinstance(e, dict) else e for e in entries]
    unknown = set(defaults) - {"servers", "routers"}
    for key in sorted(unknown):
        problems.append(f"defaults.{key}: is not a known key (only servers and routers take defaults)")


def _entries(raw: Mapping[str, Any], section: str) -> list[tuple[int, dict[str, Any]]]:
    value = raw.get(section)
    if not isinstance(value, list):
        return []
    return [(i, e) for i, e in enumerate(value) if isinstance(e, dict)]


def _cross_check(raw: Mapping[str, Any], problems: list[str]) -> None:
    """Checks across keys, on the raw mapping so they run even when some types are wrong."""
    for section in ("servers", "routers"):
        seen: dict[str, int] = {}
        for index, entry in _entries(raw, section):
            name = entry.get("name")
            if not isinstance(name, str):
                continue
            if name in seen:
                problems.append(f"{section}[{index}].name: {name!r} is already used by "
                                f"{section}[{seen[name]}]; names must be unique")
            seen.setdefault(name, index)
    server_names = {e["name"] for _, e in _entries(raw, "servers") if isinstance(e.get("name"), str)}
    for index, router in _entries(raw, "routers"):
        names = router.get("servers")
        for j, name in enumerate(names if isinstance(names, list) else []):
            if isinstance(name, str) and name not in server_names:
                problems.append(f"routers[{index}].servers[{j}]: unknown server {name!r}; "
                                f"known: {', '.join(sorted(server_names)) or '(none)'}")
        if router.get("password") is None and router.get("key_file") is None:
            problems.append(f"routers[{index}]: needs password, password_file or key_file to log in")
        key_file = router.get("key_file")
        if isinstance(key_file, str) and not Path(key_file).is_file():
            problems.append(f"routers[{index}].key_file: {key_file} does not exist")
        if router.get("known_hosts") is None and router.get("trust_on_first_use") is not True:
            problems.append(f"routers[{index}].known_hosts: required to check the router's SSH host key "
                            "(or set trust_on_first_use: true to record it on first login)")
    for index, server in _entries(raw, "servers"):
        ca_file = server.get("ca_file")
        if isinstance(ca_file, str) and not Path(ca_file).is_file():
            problems.append(f"servers[{index}].ca_file: {ca_file} does not exist")
    policy = raw.get("policy")
    store = policy.get("trust_store") if isinstance(policy, dict) else None
    if isinstance(store, str) and store not in ("system", "certifi") and not Path(store).is_file():
        problems.append(f"policy.trust_store: {store!r} is neither system, certifi nor an existing CA file")


def _relative_paths(raw: dict[str, Any], base: Path) -> None:
    """Paths in the file are relative to the file's directory, as a person reading it expects."""
    def fix(entry: dict[str, Any], key: str) -> None:
        value = entry.get(key)
        if isinstance(value, str) and value and not Path(value).expanduser().is_absolute():
            entry[key] = str(base / value)
        elif isinstance(value, str):
            entry[key] = str(Path(value).expanduser())

    fix(raw, "state_path")
    for server in raw.get("servers") or []:
        if isinstance(server, dict):
            fix(server, "ca_file")
    for router in raw.get("routers") or []:
        if isinstance(router, dict):
            fix(router, "key_file")
            fix(router, "known_hosts")
    policy = raw.get("policy")
    if isinstance(policy, dict) and policy.get("trust_store") not in (None, "system", "certifi"):
        fix(policy, "trust_store")


def parse_config(text: str, *, source: str = "config", base: Path | None = None) -> LoadedConfig:
    """Validate YAML text. Raises ConfigError listing every problem."""
    base = base or Path.cwd()
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([f"not valid YAML{where}: {problem}"], source=source) from exc
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(["(top level): must be a mapping with servers:, routers:, policy: ..."], source=source)
    problems: list[str] = []
    warnings: list[str] = []
    _apply_defaults(raw, problems)
    _relative_paths(raw, base)
    resolved = _resolve_secrets(raw, "", base, problems, warnings)
    _cross_check(resolved, problems)
    try:
        config = Config.model_validate(resolved)
    except ValidationError as exc:
        errors = exc.errors()
        # pydantic adds "must not be empty" for a list whose items failed; keep only the item errors
        failed = {tuple(e["loc"][:1]) for e in errors if len(e["loc"]) > 1}
        problems[:0] = [_describe(e) for e in errors if not (e["type"] == "too_short" and tuple(e["loc"]) in failed)]
        raise ConfigError(problems, source=source) from None
    if problems:
        raise ConfigError(problems, source=source)
    return LoadedConfig(config, warnings)


def load_config(path: str | Path) -> LoadedConfig:
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"cannot read the file ({exc.strerror})"], source=str(file)) from exc
    return parse_config(text, source=str(file), base=file.resolve().parent)
