"""systemd's notify protocol (sd_notify(3)) and watchdog settings, spoken directly: one datagram per message."""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

log = logging.getLogger("eemwatchd.systemd")

# A datagram to PID 1 normally leaves at once; the bound only matters if systemd's queue is full, and then
# a lost WATCHDOG=1 is better than an event loop stuck behind it.
_SEND_TIMEOUT = 1.0


def _monotonic_usec() -> int:
    # systemd >= 253 wants RELOADING=1 paired with CLOCK_MONOTONIC in microseconds (sd_notify(3)).
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


class SystemdNotifier:
    """Tells systemd about the daemon's life (READY, RELOADING, STOPPING, WATCHDOG, STATUS).

    Built from the environment: without ``NOTIFY_SOCKET`` it does nothing and every call returns False.
    A failed send is logged once (a warning) and never raised into the daemon: systemd's view of us must not
    stop the work. Every method returns whether the message left.
    """

    def __init__(
        self,
        address: str | None,
        *,
        watchdog_usec: int | None = None,
        monotonic_usec: Callable[[], int] = _monotonic_usec,
    ) -> None:
        self._address = address
        self._target = _socket_address(address) if address else None
        self._watchdog_usec = watchdog_usec
        self._monotonic_usec = monotonic_usec
        self._warned = False
        if address and self._target is None:
            self._warn(f"NOTIFY_SOCKET={address!r} is neither a path nor an abstract @name; not notifying systemd")

    @classmethod
    def from_environment(cls, env: Mapping[str, str] | None = None, *, pid: int | None = None) -> SystemdNotifier:
        """``NOTIFY_SOCKET``, ``WATCHDOG_USEC`` and ``WATCHDOG_PID`` as systemd sets them for the main process."""
        env = os.environ if env is None else env
        watchdog_usec = _watchdog_usec(env, os.getpid() if pid is None else pid)
        return cls(env.get("NOTIFY_SOCKET") or None, watchdog_usec=watchdog_usec)

    @property
    def enabled(self) -> bool:
        """True when systemd listens (the messages have somewhere to go)."""
        return self._target is not None

    def watchdog_interval(self) -> float | None:
        """Seconds between WATCHDOG=1 pings: half the unit's WatchdogSec (sd_watchdog_enabled(3)); None if off."""
        if self._watchdog_usec is None:
            return None
        return self._watchdog_usec / 2 / 1_000_000

    def ready(self, status: str | None = None) -> bool:
        """Start-up finished (Type=notify): systemd starts units ordered after us and reports us active."""
        return self.notify("READY=1", *_status(status))

    def reloading(self, status: str | None = None) -> bool:
        """A reload began; send ``ready()`` when it ended, whether or not the new configuration was taken."""
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={self._monotonic_usec()}", *_status(status))

    def stopping(self, status: str | None = None) -> bool:
        """Shutdown began (SIGTERM): systemd reports us deactivating while in-flight work ends."""
        return self.notify("STOPPING=1", *_status(status))

    def watchdog(self) -> bool:
        """The event loop is alive; call every ``watchdog_interval()`` seconds."""
        return self.notify("WATCHDOG=1")

    def status(self, text: str) -> bool:
        """A one-line status that `systemctl status eemwatchd` shows."""
        return self.notify(*_status(text))

    def notify(self, *fields: str) -> bool:
        """Send ``KEY=VALUE`` fields as one datagram. False when systemd does not listen or the send failed."""
        if self._target is None or not fields:
            return False
        message = "\n".join(fields).encode("utf-8")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.settimeout(_SEND_TIMEOUT)
                sock.connect(self._target)
                sock.sendall(message)
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            first = fields[0].split("=", 1)[0]
            self._warn(f"cannot notify systemd at {self._address} ({first}): {reason}")
            return False
        return True

    def _warn(self, message: str) -> None:
        # Once: a missing socket would otherwise log on every watchdog ping.
        if self._warned:
            log.debug("%s", message)
            return
        self._warned = True
        log.warning(
            "%s (further failures are logged at debug level)", message, extra={"event": "systemd_notify_failed"}
        )


def _socket_address(address: str) -> str | bytes | None:
    if address.startswith("/"):
        return address
    if address.startswith("@") and len(address) > 1:
        # Linux abstract namespace: a leading NUL byte instead of the "@" systemd writes.
        return b"\0" + address[1:].encode("utf-8")
    return None  # "vsock:..." (systemd >= 254 in VMs) and relative paths are not for a service on the host


def _watchdog_usec(env: Mapping[str, str], pid: int) -> int | None:
    """WATCHDOG_USEC when it is meant for this process (WATCHDOG_PID absent or ours), as sd_watchdog_enabled(3)."""
    raw = env.get("WATCHDOG_USEC")
    if not raw:
        return None
    watchdog_pid = env.get("WATCHDOG_PID")
    if watchdog_pid:
        if not watchdog_pid.isdigit():
            log.warning("WATCHDOG_PID=%r is not a process id; watchdog off", watchdog_pid)
            return None
        if int(watchdog_pid) != pid:
            return None  # meant for another process (we were started by it, not by systemd)
    if not raw.isdigit() or int(raw) == 0:
        log.warning("WATCHDOG_USEC=%r is not a positive number of microseconds; watchdog off", raw)
        return None
    return int(raw)


def _status(text: str | None) -> tuple[str, ...]:
    if text is None:
        return ()
    # One line: a newline would end the field and let the text inject another one (READY=1, MAINPID=...).
    return ("STATUS=" + " ".join(text.split()),)
