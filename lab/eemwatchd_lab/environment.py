"""A hostile environment for a daemon under test: a wall clock that steps, a slow webhook, slow HTTP clients, a state
file system that freezes or fills, and a peer that accepts TCP and never speaks. Each is a real fault (libfaketime,
sockets, loop mounts), so the process under test meets it the way it would in production.

Nothing here imports eemwatchd: these are faults of the world around it, usable by tests and the soak alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

# --- the wall clock (libfaketime) ---------------------------------------------------------------------------------

_FAKETIME_LIBRARIES = (
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/faketime/libfaketime.so.1",
    "/usr/local/lib/faketime/libfaketime.so.1",
)


def faketime_library() -> Path | None:
    """Debian's libfaketime (package `libfaketime`, pulled in by `faketime`), or None when it is not installed."""
    return next((Path(p) for p in _FAKETIME_LIBRARIES if Path(p).exists()), None)


class SteppedClock:
    """The wall clock of the processes started with ``env()``, stepped at will by ``step_to(offset)``.

    libfaketime reads the offset from a file at every call (``FAKETIME_NO_CACHE``), so a step is immediate, like an
    operator's `date -s` or an NTP step. The monotonic clock is left alone (``DONT_FAKE_MONOTONIC``), as a real
    step leaves CLOCK_MONOTONIC alone. Offsets are relative to the real time: no test depends on today's date.
    """

    def __init__(self, directory: Path) -> None:
        library = faketime_library()
        if library is None:
            raise FileNotFoundError("libfaketime is not installed (Debian: apt-get install faketime)")
        self.library = library
        self.path = directory / "faketime.rc"
        self.offset = 0.0
        self.step_to(0.0)

    def env(self) -> dict[str, str]:
        return {"LD_PRELOAD": str(self.library), "FAKETIME_TIMESTAMP_FILE": str(self.path),
                "FAKETIME_NO_CACHE": "1", "DONT_FAKE_MONOTONIC": "1"}

    def step_to(self, offset: float) -> None:
        """From now on the wall clock reads real time + ``offset`` seconds (negative: in the past)."""
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(f"{offset:+.0f}\n", encoding="ascii")
        os.replace(tmp, self.path)
        self.offset = offset


# --- a slow webhook -----------------------------------------------------------------------------------------------


@dataclass
class SlowWebhook:
    """An HTTP server on 127.0.0.1 that reads a request and then answers one byte every ``every`` seconds, forever
    (a status line that never ends): a webhook behind a struggling proxy. ``held`` counts connections open now,
    ``requests`` every request read so far. Runs on a thread of its own, so it trickles whatever the caller's
    event loop does."""

    every: float = 5.0
    url: str = ""
    requests: int = 0
    held: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _server: socket.socket | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> SlowWebhook:
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen(128)
        server.settimeout(0.2)
        self._server = server
        self.url = f"http://127.0.0.1:{server.getsockname()[1]}/hook"
        threading.Thread(target=self._accept, name="slow-webhook", daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.close()

    def _accept(self) -> None:
        assert self._server is not None
        while not self._stop.is_set():
            try:
                conn, _addr = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._trickle, args=(conn,), daemon=True).start()

    def _trickle(self, conn: socket.socket) -> None:
        with self._lock:
            self.held += 1
        try:
            conn.settimeout(self.every)
            data = b""
            with contextlib.suppress(OSError):
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    data += chunk
            with self._lock:
                self.requests += 1
            for byte in b"HTTP/1.1 200 OK, eventually" * 1000:
                if self._stop.wait(self.every):
                    return
                conn.sendall(bytes([byte]))
        except OSError:
            return
        finally:
            with self._lock:
                self.held -= 1
            conn.close()


# --- slow HTTP clients --------------------------------------------------------------------------------------------


class SlowClients:
    """``count`` TCP connections to ``host:port``, each sending half a request (the request line and one header,
    never the blank line that ends the headers) and then nothing: slowloris. ``still_open()`` says how many the
    server has not closed yet. Close them with ``close()`` (or use as a context manager)."""

    def __init__(self, host: str, port: int, count: int, *, partial: bytes | None = None) -> None:
        self.host, self.port, self.count = host, port, count
        self.partial = partial if partial is not None else b"GET /metrics HTTP/1.1\r\nHost: eemwatchd\r\n"
        self.sockets: list[socket.socket] = []
        self.refused = 0  # connections the server did not even accept

    def open(self) -> SlowClients:
        for _ in range(self.count):
            sock = socket.socket()
            sock.settimeout(2.0)
            try:
                sock.connect((self.host, self.port))
                sock.sendall(self.partial)
            except OSError:
                self.refused += 1
                sock.close()
                continue
            sock.setblocking(False)
            self.sockets.append(sock)
        return self

    def still_open(self) -> int:
        """Connections the server still holds: no EOF, no reset, nothing read (any answer means it was handled)."""
        open_ = 0
        for sock in self.sockets:
            try:
                data = sock.recv(1, socket.MSG_PEEK)
            except BlockingIOError:
                open_ += 1
                continue
            except OSError:
                continue
            if data == b"":
                continue
        return open_

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()
        self.sockets = []

    def __enter__(self) -> SlowClients:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- a peer that never speaks ---------------------------------------------------------------------------------------


class MutePeer:
    """A TCP listener on 127.0.0.1 (its own thread) that accepts and never sends a byte: an SSH port that never shows
    its banner (a wedged sshd, a tarpit, a middlebox). ``accepted`` counts connections."""

    def __init__(self) -> None:
        self.accepted = 0
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self._sock.settimeout(0.2)
        self.port = int(self._sock.getsockname()[1])
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="mute-peer", daemon=True)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            self._held.append(conn)

    def __enter__(self) -> MutePeer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(2)
        for conn in self._held:
            conn.close()
        self._sock.close()


# --- the state file system ------------------------------------------------------------------------------------------


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(command), capture_output=True, text=True, timeout=30, check=False)  # noqa: S603 - fixed tools, our own paths


class StateDisk:
    """A small file system mounted at ``mountpoint`` for a daemon's state: ext4 on a loop device (``kind="loop"``:
    it can be frozen with `fsfreeze`, filled and freed) or a tmpfs with a size limit (``kind="tmpfs"``: filled and
    freed only; for machines without loop devices). Root only; ``unavailable(kind)`` says why it cannot work here
    (then skip, saying so).

    Always leave it with ``close()`` (or the context manager): it thaws, unmounts and removes the image.
    """

    def __init__(self, directory: Path, *, size_mb: int = 16, kind: str = "loop") -> None:
        if kind not in ("loop", "tmpfs"):
            raise ValueError(f"kind must be loop or tmpfs, not {kind!r}")
        self.directory = directory
        self.kind = kind
        self.image = directory / "state.img"
        self.mountpoint = directory / "state"
        self.size_mb = size_mb
        self.frozen = False
        self._mounted = False
        self._filler: Path | None = None

    @staticmethod
    def unavailable(kind: str = "loop") -> str | None:
        if os.geteuid() != 0:
            return "needs root (mount" + (", fsfreeze)" if kind == "loop" else ")")
        tools = ("mount", "umount", "mkfs.ext4", "fsfreeze") if kind == "loop" else ("mount", "umount")
        for tool in tools:
            if shutil.which(tool) is None:
                return f"`{tool}` is not installed"
        with tempfile.TemporaryDirectory(prefix="eemwatchd-disk-probe-") as tmp:
            probe = StateDisk(Path(tmp), size_mb=4, kind=kind)
            try:
                probe.open()
                if kind == "loop":
                    probe.freeze()
                    probe.thaw()
            except OSError as exc:
                what = "a loop-mounted ext4 that fsfreeze can freeze" if kind == "loop" else "a tmpfs mount"
                return f"{what} is not available here: {exc}"
            finally:
                probe.close()
        return None

    def open(self) -> StateDisk:
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        if self.kind == "tmpfs":
            mounted = _run("mount", "-t", "tmpfs", "-o", f"size={self.size_mb}m,mode=0700", "tmpfs",
                           str(self.mountpoint))
            if mounted.returncode != 0:
                raise OSError(errno.EIO, f"mount -t tmpfs: {mounted.stderr.strip()}")
            self._mounted = True
            return self
        with self.image.open("wb") as fh:
            fh.truncate(self.size_mb * 1024 * 1024)
        made = _run("mkfs.ext4", "-q", "-F", "-m", "0", str(self.image))
        if made.returncode != 0:
            raise OSError(errno.EIO, f"mkfs.ext4: {made.stderr.strip()}")
        mounted = _run("mount", "-o", "loop", str(self.image), str(self.mountpoint))
        if mounted.returncode != 0:
            raise OSError(errno.EIO, f"mount -o loop: {mounted.stderr.strip()}")
        self._mounted = True
        return self

    def freeze(self) -> None:
        if self.kind != "loop":
            raise OSError(errno.EOPNOTSUPP, "a tmpfs cannot be frozen")
        done = _run("fsfreeze", "--freeze", str(self.mountpoint))
        if done.returncode != 0:
            raise OSError(errno.EIO, f"fsfreeze --freeze: {done.stderr.strip()}")
        self.frozen = True

    def thaw(self) -> None:
        if self.frozen:
            _run("fsfreeze", "--unfreeze", str(self.mountpoint))
            self.frozen = False

    def fill(self) -> None:
        """Write a file until the file system has no block left (ENOSPC)."""
        self._filler = self.mountpoint / "filler"
        chunk = b"\0" * (1 << 16)
        with contextlib.suppress(OSError), self._filler.open("wb", buffering=0) as fh:
            while True:
                fh.write(chunk)
        with contextlib.suppress(OSError), self._filler.open("ab", buffering=0) as fh:
            while True:
                fh.write(b"\0" * 512)

    def free(self) -> None:
        if self._filler is not None:
            self._filler.unlink(missing_ok=True)
            self._filler = None

    def close(self) -> None:
        self.thaw()
        if self._mounted:
            for _ in range(20):
                if _run("umount", str(self.mountpoint)).returncode == 0:
                    break
                time.sleep(0.25)
            else:
                _run("umount", "-l", str(self.mountpoint))
            self._mounted = False
        self.image.unlink(missing_ok=True)

    def __enter__(self) -> StateDisk:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- what a process holds -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProcessSample:
    at: float  # time.monotonic()
    rss_mib: float
    fds: int
    threads: int


def sample_process(pid: int) -> ProcessSample | None:
    """RSS, open file descriptors and threads of ``pid`` from /proc (None once it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    rss = int(fields.get("VmRSS", "0 kB").split()[0]) / 1024
    threads = int(fields.get("Threads", "0").strip())
    return ProcessSample(time.monotonic(), rss, fds, threads)


@contextlib.contextmanager
def sampling(pid: int, every: float = 1.0) -> Iterator[list[ProcessSample]]:
    """Samples of ``pid`` every ``every`` seconds on a thread, for as long as the block runs."""
    samples: list[ProcessSample] = []
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            sample = sample_process(pid)
            if sample is not None:
                samples.append(sample)
            stop.wait(every)

    thread = threading.Thread(target=run, name="sampler", daemon=True)
    thread.start()
    try:
        yield samples
    finally:
        stop.set()
        thread.join(every + 1)


async def wait_closed(clients: SlowClients, *, timeout: float) -> int:
    """Wait until the server closed every slow client (or ``timeout``); how many it still holds."""
    deadline = time.monotonic() + timeout
    left = clients.still_open()
    while left and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        left = clients.still_open()
    return left
