"""Reading the configuration file: size limit, strict UTF-8, no YAML aliases, no duplicate keys, bounded depth."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from eemwatchd.config import MAX_CONFIG_BYTES, load_config, parse_config
from eemwatchd.errors import ConfigError

GOOD = "servers: [{name: s, host: h}]\n"

# The classic "billion laughs": nine levels of nine aliases each, 9**9 strings when expanded.
BILLION_LAUGHS = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{','.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(9)
)


def problems_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    return info.value.problems


def test_a_file_over_one_mebibyte_is_refused_without_reading_it_all(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text(GOOD + "#" * (MAX_CONFIG_BYTES * 4) + "\n")
    with pytest.raises(ConfigError) as info:
        load_config(big)
    assert info.value.problems == [
        f"the file is {big.stat().st_size} bytes; a configuration is at most 1 MiB (1048576 bytes): "
        "is this the right file?"
    ]


def test_a_file_just_under_the_limit_loads(tmp_path: Path) -> None:
    file = tmp_path / "ok.yaml"
    file.write_text(GOOD + "#" * (MAX_CONFIG_BYTES - len(GOOD) - 1) + "\n")
    assert file.stat().st_size == MAX_CONFIG_BYTES
    assert load_config(file).config.servers[0].name == "s"


def test_text_over_the_limit_is_refused() -> None:
    assert problems_of(GOOD + "#" * MAX_CONFIG_BYTES)[0].startswith("the file is ")


def test_invalid_utf8_is_one_line_with_the_byte_offset(tmp_path: Path) -> None:
    file = tmp_path / "latin1.yaml"
    file.write_bytes(b"servers:\n  - {name: s, host: h\xe9}\n")
    with pytest.raises(ConfigError) as info:
        load_config(file)
    assert info.value.problems == ["not valid UTF-8 at byte offset 30 (line 2); save the file as UTF-8"]


def test_an_alias_is_refused_with_its_line() -> None:
    text = "defaults:\n  routers: &shared {port: 22}\nservers: [{name: s, host: h}]\nextra: *shared\n"
    assert problems_of(text) == [
        "YAML aliases are not allowed (line 4): write the value out, or put keys shared by every server or "
        "router under defaults:"
    ]


def test_a_merge_key_alias_is_refused_too() -> None:
    text = "base: &b {port: 22}\nservers: [{name: s, host: h, <<: *b}]\n"
    assert problems_of(text)[0].startswith("YAML aliases are not allowed (line 2)")


@pytest.mark.timeout(5)
def test_billion_laughs_fails_in_milliseconds() -> None:
    started = time.perf_counter()
    problems = problems_of(BILLION_LAUGHS)
    elapsed = time.perf_counter() - started
    assert problems[0].startswith("YAML aliases are not allowed (line 2)")
    assert elapsed < 0.1, elapsed


def test_duplicate_keys_name_both_lines_and_all_are_reported() -> None:
    text = "servers: [{name: s, host: h}]\npolicy:\n  recent: 1d\n  aia: false\n  recent: 2d\nservers: []\n"
    assert problems_of(text) == [
        "key 'recent' appears twice (line 3 and line 5); keep one",
        "key 'servers' appears twice (line 1 and line 6); keep one",
    ]


def test_duplicate_keys_in_a_flow_mapping() -> None:
    assert problems_of("servers: [{name: s, host: h, host: i}]") == [
        "key 'host' appears twice (line 1 and line 1); keep one"
    ]


@pytest.mark.timeout(5)
def test_deep_nesting_is_refused_not_a_recursion_error() -> None:
    depth = 50_000
    problems = problems_of("servers: " + "[" * depth + "]" * depth)
    assert problems == ["nested more than 32 levels deep (line 1)"]


def test_a_control_character_is_one_line_with_its_line() -> None:
    assert problems_of("servers:\n  - {name: s, host: h\x00}") == [
        "not valid YAML: character #x0000 is not allowed (line 2); remove it"
    ]


def test_yaml_syntax_error_keeps_its_position() -> None:
    assert problems_of("servers: [")[0].startswith("not valid YAML at line 1")
