"""Reading the configuration file: a size limit, strict UTF-8, YAML without aliases or duplicate keys."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from eemwatchd.errors import ConfigError

MAX_CONFIG_BYTES = 1024 * 1024
# Deeper than any real configuration (servers[].timeouts.connect is 3 levels); stops a file of
# nested brackets before the YAML composer's recursion does.
MAX_DEPTH = 32


def _too_big(size: int) -> str:
    return (f"the file is {size} bytes; a configuration is at most 1 MiB ({MAX_CONFIG_BYTES} bytes): "
            "is this the right file?")


def read_config_file(path: Path) -> str:
    """The file's text. Reads at most 1 MiB + 1 byte, so a huge file or a device costs nothing."""
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError([f"cannot read the file ({exc.strerror})"], source=str(path)) from exc
    if len(data) > MAX_CONFIG_BYTES:
        try:
            size = path.stat().st_size
        except OSError:
            size = len(data)
        raise ConfigError([_too_big(max(size, len(data)))], source=str(path))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(
            [f"not valid UTF-8 at byte offset {exc.start} (line {line}); save the file as UTF-8"], source=str(path)
        ) from None


class _Refused(Exception):
    """A construct we do not accept; aborts loading at once."""


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses aliases and deep nesting, and records duplicate mapping keys.

    Aliases are refused where they appear, before anything is expanded: a "billion laughs" file fails in
    microseconds instead of building gigabytes. Anchors alone expand nothing and are left alone.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.duplicates: list[tuple[int, str]] = []  # (line of the repeat, problem)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        line = event.start_mark.line + 1
        if isinstance(event, yaml.AliasEvent):
            raise _Refused(f"YAML aliases are not allowed (line {line}): write the value out, or put keys "
                           "shared by every server or router under defaults:")
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _Refused(f"nested more than {MAX_DEPTH} levels deep (line {line})")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node)
            line = key_node.start_mark.line + 1
            if key in seen:
                self.duplicates.append(
                    (line, f"key {key!r} appears twice (line {seen[key]} and line {line}); keep one"))
            else:
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str, *, source: str) -> Any:
    """The YAML document in ``text``; ConfigError for a syntax error, alias, deep nesting or duplicate keys."""
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError([_too_big(len(text.encode("utf-8", "surrogatepass")))], source=source)
    loader: _StrictLoader | None = None
    try:
        loader = _StrictLoader(text)  # the reader checks every character here
        data = loader.get_single_data()
    except _Refused as exc:
        raise ConfigError([str(exc)], source=source) from None
    except yaml.reader.ReaderError as exc:
        line = text[: exc.position].count("\n") + 1
        raise ConfigError([f"not valid YAML: character #x{exc.character:04x} is not allowed (line {line}); "
                           "remove it"], source=source) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([f"not valid YAML{where}: {problem}"], source=source) from None
    finally:
        if loader is not None:
            loader.dispose()
    if loader.duplicates:
        raise ConfigError([problem for _, problem in sorted(loader.duplicates)], source=source)
    return data
