"""Log output: text and JSON lines, levels per -v, the libraries kept quiet, journald, and no secret values."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from eemwatchd.config import Secret
from eemwatchd.logformat import JsonFormatter, configure_logging, is_journal_stream

log = logging.getLogger("eemwatchd.test")
SECRET_VALUE = "s3cr3t-app-password"


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """configure_logging changes process-wide state; give the next test what it had."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level,
             logging.getLogger("asyncssh").level, logging.getLogger("scrapli").level)
    yield
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    logging.getLogger("asyncssh").setLevel(saved[2])
    logging.getLogger("scrapli").setLevel(saved[3])


def _emit_all_levels() -> None:
    log.debug("our debug")
    log.info("our info")
    log.warning("our warning")
    logging.getLogger("asyncssh").info("ssh chatter")
    logging.getLogger("scrapli").debug("read: event manager environment _email_server u:pw@smtp")
    logging.getLogger("scrapli").warning("scrapli warning")


LEVEL_CASES = [
    ("quiet", 0, ["our warning"]),  # a wrapped library's warning is INFO: we report its failure ourselves
    ("-v", 1, ["our info", "our warning", "scrapli warning"]),
    ("-vv", 2, ["our debug", "our info", "our warning", "ssh chatter", "scrapli warning"]),
    ("-vvv", 3, ["our debug", "our info", "our warning", "ssh chatter", "scrapli warning"]),
]


@pytest.mark.parametrize("fmt", ["text", "json"])
@pytest.mark.parametrize(("verbosity", "shown"), [c[1:] for c in LEVEL_CASES], ids=[c[0] for c in LEVEL_CASES])
def test_levels_follow_verbosity_and_the_libraries_stay_quiet(verbosity: int, shown: list[str], fmt: Any) -> None:
    out = io.StringIO()
    configure_logging(verbosity=verbosity, fmt=fmt, stream=out, env={})
    _emit_all_levels()
    lines = out.getvalue().splitlines()
    messages = [json.loads(ln)["message"] for ln in lines] if fmt == "json" else [ln.split(": ", 1)[1] for ln in lines]
    assert messages == shown


def test_text_is_time_level_logger_message() -> None:
    out = io.StringIO()
    configure_logging(verbosity=0, fmt="text", stream=out, env={})
    log.warning("router %s: trustpoint %s added", "edge-1", "EEMW-1A2B3C4D", extra={"event": "x", "router": "edge-1"})
    line = out.getvalue()
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} WARNING eemwatchd\.test: "
                        r"router edge-1: trustpoint EEMW-1A2B3C4D added\n", line), line


def test_json_carries_the_call_sites_fields_and_one_line_per_record() -> None:
    out = io.StringIO()
    configure_logging(verbosity=1, fmt="json", stream=out, env={})
    log.info("router %s: trustpoint added", "edge-1",
             extra={"event": "trustpoint_added", "router": "edge-1", "trustpoint": "EEMW-1A2B", "ok": True})
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        log.exception("refresh failed", extra={"event": "refresh_failed", "router": "edge-2"})
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(ln) for ln in lines)
    assert list(first) == ["time", "level", "logger", "message", "event", "router", "trustpoint", "ok"]
    assert first["level"] == "INFO"
    assert first["logger"] == "eemwatchd.test"
    assert first["message"] == "router edge-1: trustpoint added"
    assert (first["event"], first["router"], first["trustpoint"], first["ok"]) == (
        "trustpoint_added", "edge-1", "EEMW-1A2B", True)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", first["time"])
    assert second["level"] == "ERROR"
    assert second["event"] == "refresh_failed"
    assert second["exception"].startswith("Traceback (most recent call last):")
    assert second["exception"].endswith("ValueError: boom\nsecond line")


def _record_at(created: float) -> logging.LogRecord:
    record = logging.LogRecord("eemwatchd.test", logging.INFO, __file__, 1, "fixed", (), None)
    record.created = created
    return record


@pytest.mark.parametrize("zone", ["UTC", "Asia/Kolkata", "America/St_Johns"])
def test_json_time_is_utc_whatever_the_hosts_zone(zone: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", zone)
    time.tzset()
    try:
        entry = json.loads(JsonFormatter().format(_record_at(1_772_366_400.25)))  # 2026-03-01 12:00:00.25 UTC
    finally:
        monkeypatch.undo()
        time.tzset()
    assert entry["time"] == "2026-03-01T12:00:00.250+00:00"


def test_json_renders_values_it_has_no_type_for_as_text() -> None:
    record = _record_at(0)
    record.__dict__.update(path=Path("/var/lib/eemwatchd/state.db"), ratio=float("nan"), items=(1, 2))
    entry = json.loads(JsonFormatter().format(record))
    assert entry["path"] == "/var/lib/eemwatchd/state.db"
    assert entry["ratio"] == "nan"
    assert entry["items"] == "(1, 2)"  # the fallback turns every non-string into text


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_a_secret_in_a_log_call_shows_only_its_origin(fmt: Any) -> None:
    secret = Secret(SECRET_VALUE, origin="file:/run/credentials/eemwatchd.service/router-password")
    out = io.StringIO()
    configure_logging(verbosity=2, fmt=fmt, stream=out, env={})
    log.info("logging in with %s (%r)", secret, secret, extra={"event": "login", "password": secret,
                                                              "nested": {"password": secret}})
    text = out.getvalue()
    assert SECRET_VALUE not in text
    assert "Secret(<file:/run/credentials/eemwatchd.service/router-password>)" in text
    if fmt == "json":
        entry = json.loads(text)
        assert entry["password"] == "Secret(<file:/run/credentials/eemwatchd.service/router-password>)"


@pytest.mark.parametrize(("fmt", "pattern"), [
    ("text", r"<4>WARNING eemwatchd\.test: to the journal\n<3>ERROR eemwatchd\.test: failed\n"),
    ("json", r'<4>\{"time": "[^"]+", "level": "WARNING", [^\n]+\}\n<3>\{[^\n]+"level": "ERROR"[^\n]+\}\n'),
])
def test_under_journald_lines_carry_a_priority_and_text_drops_its_time(tmp_path: Path, fmt: Any,
                                                                       pattern: str) -> None:
    with (tmp_path / "journal").open("w+") as stream:
        st = os.fstat(stream.fileno())
        env = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        assert is_journal_stream(stream, env)
        configure_logging(verbosity=0, fmt=fmt, stream=stream, env=env)
        log.warning("to the journal")
        log.error("failed")
        stream.flush()
        stream.seek(0)
        written = stream.read()
    assert re.fullmatch(pattern, written), written


def test_journal_stream_of_another_file_is_not_the_journal(tmp_path: Path) -> None:
    # a child whose stderr was redirected inherits JOURNAL_STREAM; its output is not the journal
    other = tmp_path / "other"
    other.write_text("")
    st = os.stat(other)
    with (tmp_path / "redirected").open("w+") as stream:
        env = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        assert not is_journal_stream(stream, env)
        configure_logging(verbosity=0, fmt="text", stream=stream, env=env)
        log.warning("redirected")
        stream.seek(0)
        assert re.fullmatch(r"\d{4}-\d\d-\d\d [\d:,]+ WARNING eemwatchd\.test: redirected\n", stream.read())
    assert not is_journal_stream(io.StringIO(), env)


def test_configuring_again_replaces_our_handler_only(caplog: pytest.LogCaptureFixture) -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging(verbosity=0, fmt="text", stream=first, env={})
    configure_logging(verbosity=0, fmt="json", stream=second, env={})
    log.warning("once")
    assert first.getvalue() == ""
    assert json.loads(second.getvalue())["message"] == "once"
    assert [r.getMessage() for r in caplog.records] == ["once"]  # pytest's own handler is still there


def test_an_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match=r"log format 'xml': choose one of text, json"):
        configure_logging(verbosity=0, fmt="xml", stream=io.StringIO())  # type: ignore[arg-type]
