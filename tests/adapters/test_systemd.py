"""sd_notify against a real unix datagram socket (a path and an abstract name), and the watchdog settings."""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from eemwatchd.adapters.systemd import SystemdNotifier


@pytest.fixture(params=["path", "abstract"])
def listener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    """A socket bound like systemd's: NOTIFY_SOCKET is the path, or @name for the abstract namespace."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.settimeout(5)
    if request.param == "path":
        path = tmp_path / "notify"
        sock.bind(str(path))
        address = str(path)
    else:
        name = f"eemwatchd-test-{uuid.uuid4().hex}"
        sock.bind(b"\0" + name.encode())
        address = "@" + name
    with sock:
        yield address, sock


def _receive(sock: socket.socket) -> list[str]:
    return sock.recv(4096).decode().split("\n")


FIXED_USEC = 123_456_789

CASES: list[tuple[str, Callable[[SystemdNotifier], bool], list[str]]] = [
    ("ready", lambda n: n.ready(), ["READY=1"]),
    ("ready-status", lambda n: n.ready(status="2 servers, 3 routers"), ["READY=1", "STATUS=2 servers, 3 routers"]),
    ("reloading", lambda n: n.reloading(), ["RELOADING=1", f"MONOTONIC_USEC={FIXED_USEC}"]),
    ("reloading-status", lambda n: n.reloading(status="reloading eemwatchd.yaml"),
     ["RELOADING=1", f"MONOTONIC_USEC={FIXED_USEC}", "STATUS=reloading eemwatchd.yaml"]),
    ("stopping", lambda n: n.stopping(), ["STOPPING=1"]),
    ("watchdog", lambda n: n.watchdog(), ["WATCHDOG=1"]),
    ("status", lambda n: n.status("first pass: 1/3 routers"), ["STATUS=first pass: 1/3 routers"]),
    # a newline in the text must not become a second field
    ("status-one-line", lambda n: n.status("bad\nREADY=1\r\nMAINPID=1"), ["STATUS=bad READY=1 MAINPID=1"]),
]


@pytest.mark.parametrize(("send", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_message_arrives_as_one_datagram(
    listener: tuple[str, socket.socket], send: Callable[[SystemdNotifier], bool], expected: list[str]
) -> None:
    address, sock = listener
    notifier = SystemdNotifier(address, monotonic_usec=lambda: FIXED_USEC)
    assert notifier.enabled
    assert send(notifier) is True
    assert _receive(sock) == expected


def test_from_environment_reaches_the_socket(listener: tuple[str, socket.socket]) -> None:
    address, sock = listener
    notifier = SystemdNotifier.from_environment({"NOTIFY_SOCKET": address})
    assert notifier.ready()
    assert _receive(sock) == ["READY=1"]


def test_reloading_carries_the_real_monotonic_clock(listener: tuple[str, socket.socket]) -> None:
    # systemd >= 253 compares MONOTONIC_USEC with its own CLOCK_MONOTONIC; it must be that clock, in usec
    address, sock = listener
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert SystemdNotifier.from_environment({"NOTIFY_SOCKET": address}).reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    fields = _receive(sock)
    assert fields[0] == "RELOADING=1"
    key, value = fields[1].split("=")
    assert key == "MONOTONIC_USEC"
    assert before <= int(value) <= after


@pytest.mark.parametrize("env", [{}, {"NOTIFY_SOCKET": ""}], ids=["unset", "empty"])
def test_without_notify_socket_nothing_is_sent(env: dict[str, str], caplog: pytest.LogCaptureFixture) -> None:
    notifier = SystemdNotifier.from_environment(env)
    assert not notifier.enabled
    assert [notifier.ready(), notifier.reloading(), notifier.stopping(), notifier.watchdog(),
            notifier.status("x")] == [False] * 5
    assert caplog.records == []


def test_a_missing_socket_is_logged_once_and_never_raised(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="eemwatchd.systemd")
    notifier = SystemdNotifier.from_environment({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    assert notifier.enabled
    assert [notifier.ready(), notifier.watchdog(), notifier.watchdog()] == [False, False, False]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert str(tmp_path / "gone") in warnings[0].getMessage()
    assert "READY" in warnings[0].getMessage()
    assert "No such file or directory" in warnings[0].getMessage()
    assert [r.levelno for r in caplog.records] == [logging.WARNING, logging.DEBUG, logging.DEBUG]


def test_a_socket_that_stops_listening_is_logged_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    notifier = SystemdNotifier(str(path))
    with sock:
        assert notifier.ready()
    assert notifier.watchdog() is False  # the socket file is still there, nobody reads it: connection refused
    assert notifier.watchdog() is False
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1


@pytest.mark.parametrize("address", ["relative/notify", "vsock:2:1234", "@"], ids=["relative", "vsock", "bare-at"])
def test_an_address_we_cannot_use_is_one_warning(address: str, caplog: pytest.LogCaptureFixture) -> None:
    notifier = SystemdNotifier.from_environment({"NOTIFY_SOCKET": address})
    assert not notifier.enabled
    assert notifier.ready() is False
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert address in caplog.records[0].getMessage()


MY_PID = 4242

WATCHDOG_CASES: list[tuple[str, dict[str, str], float | None]] = [
    ("off", {}, None),
    ("60s", {"WATCHDOG_USEC": "60000000"}, 30.0),
    ("60s-our-pid", {"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": str(MY_PID)}, 30.0),
    ("other-pid", {"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "1"}, None),
    ("half-second", {"WATCHDOG_USEC": "1000000"}, 0.5),
    ("zero", {"WATCHDOG_USEC": "0"}, None),
    ("garbage", {"WATCHDOG_USEC": "60s"}, None),
    ("negative", {"WATCHDOG_USEC": "-5"}, None),
    ("bad-pid", {"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "me"}, None),
]


@pytest.mark.parametrize(("env", "interval"), [c[1:] for c in WATCHDOG_CASES], ids=[c[0] for c in WATCHDOG_CASES])
def test_watchdog_interval_is_half_the_timeout_for_our_pid(env: dict[str, str], interval: float | None) -> None:
    notifier = SystemdNotifier.from_environment({"NOTIFY_SOCKET": "/run/systemd/notify", **env}, pid=MY_PID)
    assert notifier.watchdog_interval() == interval


def test_watchdog_pid_defaults_to_this_process() -> None:
    env = {"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": str(os.getpid())}
    assert SystemdNotifier.from_environment(env).watchdog_interval() == 5.0
