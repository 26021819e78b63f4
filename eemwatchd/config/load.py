"""The configuration: one YAML file, validated at load, every problem reported at once with its key path.

pydantic does the type and range checks (and gives each problem a location); we turn its errors into
``routers[3].port: must be 1-65535``-style lines with a fix, then run the cross-field checks ourselves.
Secrets come from ``${ENV_VAR}`` references or ``*_file`` keys; a secret written in clear draws a warning.
The model lives in ``config.model``, reading the file (size, UTF-8, strict YAML) in ``config.file``.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from eemwatchd.config.file import load_yaml, read_config_file
from eemwatchd.config.model import (
    Config,
    RouterConfig,
    Secret,
    ServerConfig,
    window_problems,
)
from eemwatchd.config.prestage import load_prestage
from eemwatchd.errors import ConfigError

_ENV_REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")

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


# Why a required key is required, where that is not obvious; keyed by the end of its location.
_MISSING_WHY = {
    "account.from": "the login name cannot be an address (no '@'), so say which address the mail comes "
                    "from (the provider refuses or rewrites any other)",
}


def _missing_why(loc: str) -> str | None:
    return next((why for end, why in _MISSING_WHY.items() if loc.endswith(end)), None)


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
    elif kind == "missing" and (why := _missing_why(loc)):
        message = f"is required: {why}"
    elif kind in _FIXES:
        message = _FIXES[kind].format(**{k: str(v) for k, v in ctx.items()})
    elif kind == "value_error":
        message = str(ctx.get("error", error["msg"]))
    else:
        message = str(error["msg"]).lower()
    return f"{loc}: {message}"


# Stands in for a secret that could not be read (its problem is recorded): the checks that follow see the key
# given and do not report it missing a second time. A config with a recorded problem never loads.
_UNREAD = "(unread)"


def _unread(where: str) -> Secret:
    return Secret(_UNREAD, origin=f"unread:{where}")


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
            text = str(value)
            if "${CREDENTIALS_DIRECTORY}" in text:
                # systemd's LoadCredential= directory, which names the unit (and a template's instance): one
                # config serves eemwatchd.service, eemwatchd@K-N.service and the oneshot unit alike
                credentials = os.environ.get("CREDENTIALS_DIRECTORY")
                if not credentials:
                    problems.append(f"{where}: ${{CREDENTIALS_DIRECTORY}} is not set (it is, under systemd with "
                                    "LoadCredential=); run under the unit, or give the file's real path")
                    out[name] = _unread(where)
                    continue
                text = text.replace("${CREDENTIALS_DIRECTORY}", credentials)
            file_path = Path(text).expanduser()
            if not file_path.is_absolute():
                file_path = base / file_path
            try:
                secret = file_path.read_text(encoding="utf-8").rstrip("\r\n")
            except OSError as exc:
                problems.append(f"{where}: cannot read {file_path} ({exc.strerror}); create it or fix the path")
                out[name] = _unread(where)
                continue
            if not secret:
                problems.append(f"{where}: {file_path} is empty")
                out[name] = _unread(where)
                continue
            out[name] = Secret(secret, origin=f"file:{file_path}")
        elif isinstance(value, Secret):
            out[key] = value  # resolved already (a default shared by every entry)
        elif key in _SECRET_KEYS and value is not None:
            text = str(value)
            match = _ENV_REF.match(text)
            if match:
                env = os.environ.get(match.group(1))
                if env is None:
                    problems.append(f"{where}: environment variable {match.group(1)} is not set; export it "
                                    f"or use {key}_file:")
                    out[key] = _unread(where)
                    continue
                out[key] = Secret(env, origin=f"env:{match.group(1)}")
            else:
                warnings.append(f"{where}: secret written in clear in the config file; use "
                                f"{key}: ${{ENV_VAR}} or {key}_file: instead")
                out[key] = Secret(text, origin="inline")
        else:
            out[key] = _resolve_secrets(value, where, base, problems, warnings)
    return out


def _apply_defaults(raw: dict[str, Any], base: Path, problems: list[str], warnings: list[str]) -> None:
    """Merge ``defaults.servers`` / ``defaults.routers`` into every server / router entry.

    A problem of a default is reported once, at ``defaults.<section>.<key>``, never once per entry: its secrets
    are read here, before the merge, and an unknown key is dropped (or, when it is a misspelling of a known
    one, checked under that name, so the entries are not reported as missing it; the config fails anyway).
    """
    defaults = raw.pop("defaults", None) or {}
    if not isinstance(defaults, dict):
        problems.append("defaults: must be a mapping with servers: and/or routers:")
        return
    for section, model in (("servers", ServerConfig), ("routers", RouterConfig)):
        shared = defaults.get(section) or {}
        if not isinstance(shared, dict):
            problems.append(f"defaults.{section}: must be a mapping of keys shared by every entry")
            continue
        shared = _known_defaults(shared, section, _model_keys(model), problems)
        shared = _resolve_secrets(shared, f"defaults.{section}", base, problems, warnings)
        entries = raw.get(section)
        if not isinstance(entries, list):
            continue
        raw[section] = [_merged(shared, e) if isinstance(e, dict) else e for e in entries]
    unknown = set(defaults) - {"servers", "routers"}
    for key in sorted(unknown):
        problems.append(f"defaults.{key}: is not a known key (only servers and routers take defaults)")


def _model_keys(model: type[BaseModel]) -> set[str]:
    keys = set()
    for name, info in model.model_fields.items():
        keys.add(info.alias or name)
        if name in _SECRET_KEYS:
            keys.add(f"{name}_file")
    return keys


def _known_defaults(shared: dict[str, Any], section: str, known: set[str], problems: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in shared.items():
        if key in known:
            out[key] = value
            continue
        close = difflib.get_close_matches(str(key), sorted(known), n=1, cutoff=0.75)
        hint = f"did you mean {close[0]}? " if close else ""
        problems.append(f"defaults.{section}.{key}: is not a known key ({hint}check the spelling; see "
                        "config/eemwatchd.example.yaml)")
        if close and close[0] not in shared:
            out[close[0]] = value  # checked under the name it was meant to have: no follow-on "missing" per entry
    return out


def _merged(shared: dict[str, Any], entry: dict[str, Any]) -> dict[str, Any]:
    """An entry with the defaults it does not set itself; a secret it gives either way (``password`` or
    ``password_file``) replaces the default's."""
    given = {k[:-5] if k.endswith("_file") and k[:-5] in _SECRET_KEYS else k for k in entry}
    return {**{k: v for k, v in shared.items() if k not in given}, **entry}


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
            if isinstance(server.get("prestage"), list):
                server["prestage"] = [_fixed_item(item, base) for item in server["prestage"]]
    for router in raw.get("routers") or []:
        if isinstance(router, dict):
            fix(router, "key_file")
            fix(router, "known_hosts")
    policy = raw.get("policy")
    if isinstance(policy, dict) and policy.get("trust_store") not in (None, "system", "certifi"):
        fix(policy, "trust_store")


def _fixed_item(item: Any, base: Path) -> Any:
    """A ``prestage`` entry (a path, or a mapping with ``file``) with its path made absolute (a new object: the
    list may be shared by every server that takes it from ``defaults``)."""
    def absolute(value: str) -> str:
        path = Path(value).expanduser()
        return str(path if path.is_absolute() else base / path)

    if isinstance(item, str):
        return absolute(item)
    if isinstance(item, dict) and isinstance(item.get("file"), str) and item["file"]:
        return {**item, "file": absolute(item["file"])}
    return item


def _inherits_prestage(raw: Mapping[str, Any]) -> set[int]:
    """Indices of the servers that take ``prestage`` from ``defaults.servers`` (call before merging defaults)."""
    defaults = raw.get("defaults")
    shared = defaults.get("servers") if isinstance(defaults, dict) else None
    if not isinstance(shared, dict) or "prestage" not in shared:
        return set()
    return {i for i, entry in _entries(raw, "servers") if "prestage" not in entry}


def _router_warnings(config: Config) -> list[str]:
    return [f"routers[{i}].legacy_algorithms: SHA-1 key exchange, MACs and host-key signatures are allowed "
            f"for {r.name}; keep this only for an IOS image that offers nothing newer"
            for i, r in enumerate(config.routers) if r.legacy_algorithms]


def parse_config(
    text: str, *, source: str = "config", base: Path | None = None, strict_windows: bool = True,
    now: datetime | None = None,
) -> LoadedConfig:
    """Validate YAML text. Raises ConfigError listing every problem.

    ``strict_windows``: windows that cannot work together (``window_problems``) are problems, not
    warnings. ``check-config`` (and a scheduler, which fetches at ``servers[].interval``) use it; one-shot
    runs, where the caller decides when servers are fetched, get them as warnings.
    ``now``: the moment pre-staged certificates must be valid at (default: the wall clock).
    """
    base = base or Path.cwd()
    raw = load_yaml(text, source=source)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(["(top level): must be a mapping with servers:, routers:, policy: ..."], source=source)
    problems: list[str] = []
    warnings: list[str] = []
    inherited = _inherits_prestage(raw)
    _apply_defaults(raw, base, problems, warnings)
    _relative_paths(raw, base)
    resolved = _resolve_secrets(raw, "", base, problems, warnings)
    _cross_check(resolved, problems)
    load_prestage(resolved, problems=problems, now=now or datetime.now(UTC), inherited=inherited)
    try:
        config = Config.model_validate(resolved)
    except ValidationError as exc:
        errors = exc.errors()
        # pydantic adds "must not be empty" for a list whose items failed; keep only the item errors
        failed = {tuple(e["loc"][:1]) for e in errors if len(e["loc"]) > 1}
        problems[:0] = [_describe(e) for e in errors if not (e["type"] == "too_short" and tuple(e["loc"]) in failed)]
        raise ConfigError(problems, source=source) from None
    windows = window_problems(config)
    if strict_windows:
        problems += windows
    if problems:
        raise ConfigError(problems, source=source)
    warnings += _router_warnings(config)
    if not strict_windows:
        warnings += windows
    return LoadedConfig(config, warnings)


def load_config(path: str | Path, *, strict_windows: bool = True, now: datetime | None = None) -> LoadedConfig:
    """Read and validate a configuration file (at most 1 MiB of UTF-8 YAML) and the files it names."""
    file = Path(path)
    text = read_config_file(file)
    return parse_config(text, source=str(file), base=file.resolve().parent, strict_windows=strict_windows,
                        now=now)
