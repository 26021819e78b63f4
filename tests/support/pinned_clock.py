"""eemwatchd as a process whose wall clock is pinned: `python -m tests.support.pinned_clock INSTANT ARGS...` runs
`eemwatchd ARGS` with its clock starting at INSTANT (ISO 8601 with an offset) and running on at the real pace.

The fault-schedule harness runs `eemwatchd apply` and `eemwatchd run` as real processes (so it can SIGTERM and
kill -9 them) against lab routers whose clocks are pinned; the product process must read the same time, never
today's date. libfaketime cannot do it here (Python 3.11's `time.sleep` fails under it with EINVAL), so the
`datetime.datetime` class is swapped before eemwatchd is imported: every `datetime.now()` the product makes reads
the pinned clock. Nothing else changes: the same `eemwatchd.cli.main`, signals, locks and exit codes.

`python -m tests.support.pinned_clock --fork-server` imports eemwatchd once and then forks one child per request
(Zygote below): each child is a real process running `eemwatchd.cli.main(ARGS)` with its own pid, signals and exit
status, without paying the ~0.5 s of imports every time.
"""

from __future__ import annotations

import contextlib
import datetime as _datetime
import json
import os
import select
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

_real = _datetime.datetime
_clock = {"start": _real(2000, 1, 1, tzinfo=_datetime.UTC), "origin": time.monotonic()}


class _Meta(type):
    def __instancecheck__(cls, obj: object) -> bool:
        return isinstance(obj, _real)

    def __subclasscheck__(cls, sub: type) -> bool:
        return issubclass(sub, _real)


class PinnedDatetime(_real, metaclass=_Meta):
    """`datetime.datetime` whose now() reads the pinned clock (isinstance works both ways)."""

    @classmethod
    def now(cls, tz: _datetime.tzinfo | None = None) -> Any:
        moment = _clock["start"] + _datetime.timedelta(seconds=time.monotonic() - _clock["origin"])
        return moment.astimezone(tz) if tz is not None else moment.astimezone().replace(tzinfo=None)

    @classmethod
    def utcnow(cls) -> Any:
        return cls.now(_datetime.UTC).replace(tzinfo=None)


def set_clock(start: str) -> None:
    """From now on the pinned clock reads ``start`` plus the time since this call."""
    first = PinnedDatetime.fromisoformat(start)
    if first.tzinfo is None:
        raise SystemExit(f"pinned_clock: {start!r} needs an offset (+00:00)")
    _clock["start"], _clock["origin"] = first, time.monotonic()


def pin(start: str) -> None:
    """Swap `datetime.datetime` (for every module imported after this call) and set the clock."""
    set_clock(start)
    _datetime.datetime = PinnedDatetime  # type: ignore[misc]


def main() -> int:
    if sys.argv[1:2] == ["--fork-server"]:
        pin(_real.now(_datetime.UTC).isoformat())
        return _serve()
    if len(sys.argv) < 3:
        print("usage: python -m tests.support.pinned_clock INSTANT EEMWATCHD-ARGS... | --fork-server", file=sys.stderr)
        return 2
    pin(sys.argv[1])
    from eemwatchd.cli import main as eemwatchd_main

    return eemwatchd_main(sys.argv[2:])


# --- the fork server ---------------------------------------------------------------------------------------------


def _serve() -> int:
    """Read requests (JSON lines: instant, args, out, err) on stdin; answer `{"pid": N}` at once and
    `{"exited": N, "code": C}` when child N ends (C as subprocess reports it: -9 after kill -9)."""
    from eemwatchd.cli import main as eemwatchd_main

    # what `apply` and `run` import lazily: paid once here, not in every child
    from eemwatchd.commands import apply, run  # noqa: F401
    from eemwatchd.daemon import service  # noqa: F401
    from eemwatchd.reconcile import service as reconcile  # noqa: F401

    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)

    def on_child(_sig: int, _frame: FrameType | None) -> None:
        with contextlib.suppress(OSError):
            os.write(wake_w, b"x")

    signal.signal(signal.SIGCHLD, on_child)
    stdin = sys.stdin.buffer
    pending = b""
    while True:
        ready, _, _ = select.select([stdin, wake_r], [], [])
        if wake_r in ready:
            os.read(wake_r, 4096)
            _reap()
        if stdin in ready:
            chunk = os.read(stdin.fileno(), 65536)
            if not chunk:
                return 0
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                request = json.loads(line)
                pid = os.fork()
                if pid == 0:
                    os.close(wake_r)
                    os.close(wake_w)
                    _child(request, eemwatchd_main)
                _say({"pid": pid})


def _reap() -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _say({"exited": pid, "code": os.waitstatus_to_exitcode(status)})


def _say(message: dict[str, int]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def _child(request: dict[str, Any], eemwatchd_main: Any) -> None:
    """In the forked child: its clock, its files, `eemwatchd ARGS`, its exit code; never returns."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    code = 1
    try:
        set_clock(request["instant"])
        null = os.open(os.devnull, os.O_RDONLY)
        out = os.open(request["out"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        err = os.open(request["err"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        for fd, target in ((null, 0), (out, 1), (err, 2)):
            os.dup2(fd, target)
            os.close(fd)
        try:
            code = int(eemwatchd_main(request["args"]))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            traceback.print_exc()
            code = 1
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
    finally:
        os._exit(code)


class Zygote:
    """The harness's side of the fork server: ``spawn`` starts `eemwatchd ARGS` as a child process of the server and
    returns its pid (signal it with os.kill); ``wait(pid)`` its exit code."""

    def __init__(self, cwd: Path) -> None:
        self._proc = subprocess.Popen([sys.executable, "-m", "tests.support.pinned_clock", "--fork-server"],
                                      cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self._exited: dict[int, int] = {}
        self._buffer = b""

    def spawn(self, instant: str, args: Sequence[str], *, out: Path, err: Path) -> int:
        assert self._proc.stdin is not None
        request = {"instant": instant, "args": list(args), "out": str(out), "err": str(err)}
        self._proc.stdin.write(json.dumps(request).encode() + b"\n")
        self._proc.stdin.flush()
        while True:
            message = self._read(30.0)
            if "pid" in message:
                return int(message["pid"])

    def poll(self, pid: int) -> int | None:
        while pid not in self._exited:
            message = self._read(0.0)
            if not message:
                return None
        return self._exited[pid]

    def wait(self, pid: int, timeout: float) -> int | None:
        """The exit code of child ``pid``, or None when it is still running after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while pid not in self._exited:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self._read(left)
        return self._exited.pop(pid)

    def _read(self, timeout: float) -> dict[str, int]:
        """One message from the server (recording exits), or {} when none came within ``timeout``."""
        assert self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        while b"\n" not in self._buffer:
            ready, _, _ = select.select([fd], [], [], timeout)
            if not ready:
                return {}
            chunk = os.read(fd, 65536)
            if not chunk:
                raise RuntimeError(f"the fork server ended (exit {self._proc.wait()})")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        message: dict[str, int] = json.loads(line)
        if "exited" in message:
            self._exited[message["exited"]] = message["code"]
        return message

    def close(self) -> None:
        if self._proc.stdin is not None:
            with contextlib.suppress(OSError):
                self._proc.stdin.close()
        try:
            self._proc.wait(10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(10)
        if self._proc.stdout is not None:
            self._proc.stdout.close()


if __name__ == "__main__":
    raise SystemExit(main())
