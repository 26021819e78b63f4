"""Log output on stderr: text for people, or one JSON object per line for collectors; journald-aware."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, Literal, TextIO, get_args

LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = get_args(LogFormat)

# Attributes every LogRecord has; anything else on a record came from `extra={...}` at the call site.
_RECORD_ATTRIBUTES = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}
# sd-daemon(3): a `<N>` prefix on a line sent to journald sets its syslog priority (journalctl -p).
_JOURNAL_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, ISO 8601), level, logger, message, the call's extra fields.

    Fields are only what the call site passed, each rendered with ``str()`` when JSON has no type for it,
    so a ``Secret`` shows its origin (``Secret(<env:NAME>)``), never its value.
    """

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRIBUTES and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        try:
            return json.dumps(entry, default=str, ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError):
            # a NaN, or keys JSON cannot take: still one valid line, every value as text
            return json.dumps({str(k): v if isinstance(v, str) else str(v) for k, v in entry.items()},
                              ensure_ascii=False)


# Characters that end or fake a line in a text log (C0 controls, DEL, C1 controls, Unicode line separators): a
# certificate's CN or a router's words may hold any of them. JSON lines escape them already.
_LINE_BREAKERS = {i: f"\\x{i:02x}" for i in (*range(0x20), 0x7F, *range(0x80, 0xA0))} | {
    0x0A: "\\n", 0x0D: "\\r", 0x09: "\t", 0x2028: "\\u2028", 0x2029: "\\u2029"}


def one_line(text: str) -> str:
    """``text`` with every character that could start a new log line escaped (a tab stays a tab)."""
    return text.translate(_LINE_BREAKERS)


class OneLineFormatter(logging.Formatter):
    """A text formatter whose message is always one line: a newline in a value (a certificate CN) cannot forge a
    log line of its own. A traceback still follows on its own lines, as it should."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        message = record.message
        record.message = one_line(message)
        try:
            return super().formatMessage(record)
        finally:
            record.message = message


class _JournalPriority(logging.Formatter):
    """Prefixes another formatter's line with journald's `<N>` priority."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self._inner = inner

    def format(self, record: logging.LogRecord) -> str:
        priority = _JOURNAL_PRIORITY.get(record.levelno, 6 if record.levelno < logging.WARNING else 3)
        return f"<{priority}>{self._inner.format(record)}"


# Libraries whose failures the adapters turn into our typed errors, which we report once for the router or server
# they concern: their own records are details of that report, at INFO at most (-v shows them). scrapli logs an
# ordinary failed login at CRITICAL (`scrapli.transport: all authentication methods failed`), which journald
# would store as priority 2 (crit).
WRAPPED_LIBRARIES = ("scrapli", "asyncssh")


def our_level(record: logging.LogRecord) -> int:
    """The level a record is shown at: a wrapped library's WARNING and above become INFO."""
    if record.name.split(".", 1)[0] in WRAPPED_LIBRARIES and record.levelno > logging.INFO:
        return logging.INFO
    return record.levelno


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """Ours, so a second configure_logging() replaces it and leaves other handlers (pytest's) alone. It shows
    records at our level (``our_level``), dropping those that fall below ``threshold`` then."""

    def __init__(self, stream: TextIO, *, threshold: int) -> None:
        super().__init__(stream)
        self.threshold = threshold

    def emit(self, record: logging.LogRecord) -> None:
        level = our_level(record)
        if level != record.levelno:
            if level < self.threshold:
                return
            # a copy: other handlers (pytest's) see the record as the library made it
            record = logging.makeLogRecord({**record.__dict__, "levelno": level,
                                            "levelname": logging.getLevelName(level)})
        super().emit(record)


def is_journal_stream(stream: TextIO, env: Mapping[str, str]) -> bool:
    """True when ``stream`` is the journal systemd connected (JOURNAL_STREAM is its device:inode).

    systemd.exec(5): compare, because a child whose stderr was redirected inherits the variable too.
    """
    expected = env.get("JOURNAL_STREAM")
    if not expected:
        return False
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError):
        return False  # no file descriptor (a StringIO) or a closed one: not the journal
    return expected == f"{st.st_dev}:{st.st_ino}"


def configure_logging(
    *, verbosity: int, fmt: LogFormat, stream: TextIO | None = None, env: Mapping[str, str] | None = None
) -> logging.Handler:
    """Send log records to ``stream`` (stderr): WARNING, INFO with -v, DEBUG with -vv.

    ``text`` is ``time LEVEL logger: message``; under journald the time is left out (the journal adds its
    own) and each line carries its priority. ``json`` is one object per line. Calling it again replaces
    the handler it installed before. Returns that handler.
    """
    if fmt not in LOG_FORMATS:
        raise ValueError(f"log format {fmt!r}: choose one of {', '.join(LOG_FORMATS)}")
    stream = sys.stderr if stream is None else stream
    env = os.environ if env is None else env
    journal = is_journal_stream(stream, env)
    formatter: logging.Formatter
    if fmt == "json":
        formatter = JsonFormatter()
    elif journal:
        formatter = OneLineFormatter("%(levelname)s %(name)s: %(message)s")
    else:
        formatter = OneLineFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    if journal:
        formatter = _JournalPriority(formatter)
    level = {0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG)
    handler = _Handler(stream, threshold=level)
    handler.setFormatter(formatter)

    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # -v is for eemwatchd's own events; the SSH library's connection chatter only with -vv.
    logging.getLogger("asyncssh").setLevel(logging.WARNING if verbosity < 2 else logging.NOTSET)
    # scrapli stays at WARNING even with -vv: at DEBUG it logs every byte read, and `show running-config`
    # holds the mail password in `event manager environment _email_server` (see adapters/router.py).
    logging.getLogger("scrapli").setLevel(logging.WARNING)
    return handler


@contextlib.contextmanager
def log_stream(stream: TextIO) -> Iterator[None]:
    """Our handler writes to ``stream`` inside the block (a live progress display's stderr proxy, which prints
    each line above the display), then to its own stream again."""
    handlers = [h for h in logging.getLogger().handlers if isinstance(h, _Handler)]
    saved = [h.setStream(stream) for h in handlers]
    try:
        yield
    finally:
        for handler, old in zip(handlers, saved, strict=True):
            if old is not None:
                handler.setStream(old)
