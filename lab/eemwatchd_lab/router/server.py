"""Lab routers over real SSH (asyncssh): one LabDevice per router, a Fleet to run many in one process."""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import hmac
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType

import asyncssh

from eemwatchd_lab.router.device import HOST_KEY_FILE, Device, DeviceSpec, User
from eemwatchd_lab.router.grammar import EXEC_AUTHORIZATION_FAILED
from eemwatchd_lab.router.session import Session
from eemwatchd_lab.wan import LinkSession, Wan, WanLink

log = logging.getLogger(__name__)


class _SshServer(asyncssh.SSHServer):
    """Authentication against the device's users; password and public key."""

    def __init__(self, lab: LabDevice) -> None:
        self._lab = lab
        self._conn: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn
        if len(self._lab._connections) >= self._lab.spec.vty_lines:
            # Every vty is taken (`line vty 0 4`: five). IOS takes a vty when the TCP connection arrives,
            # not at login, and a client then gets no SSH banner at all: "Connection refused" for telnet
            # (Cisco Cookbook, VTY lockout), "Unable to connect to port 22" from Ansible on a CSR1000v out of
            # sessions (ansible-modules-core#5181). The lab closes the connection before the version exchange
            # (inferred: the exact TCP behaviour, RST vs FIN, is not captured).
            log.info("lab device %s: all %d vty lines busy, connection closed", self._lab.name,
                     self._lab.spec.vty_lines)
            self._lab.refused_logins += 1
            conn.abort()
            return
        self._lab._connections.add(conn)
        self._lab.peak_connections = max(self._lab.peak_connections, len(self._lab._connections))

    def connection_lost(self, exc: Exception | None) -> None:
        if self._conn is not None:
            self._lab._connections.discard(self._conn)

    def begin_auth(self, username: str) -> bool:
        user = self._lab.user(username)
        if user is not None and user.public_keys and not self._lab.spec.faults.refuse_login and self._conn:
            self._conn.set_authorized_keys(asyncssh.import_authorized_keys("\n".join(user.public_keys) + "\n"))
        return True

    def password_auth_supported(self) -> bool:
        return True

    def validate_password(self, username: str, password: str) -> bool:
        user = self._lab.user(username)
        if self._lab.spec.faults.refuse_login or user is None or user.password is None:
            return False
        return hmac.compare_digest(user.password.encode(), password.encode())

    def public_key_auth_supported(self) -> bool:
        return True


class LabDevice:
    """One simulated router listening on 127.0.0.1. ``port`` is the bound port once started: the port clients
    connect to (with a WAN, the relay's; the SSH server itself then listens on ``ssh_port``)."""

    def __init__(self, spec: DeviceSpec) -> None:
        self.spec = spec
        self.port = spec.port
        self.ssh_port = 0 if spec.wan is not None else spec.port
        self.device: Device | None = None
        self._server: asyncssh.SSHAcceptor | None = None
        self._link: WanLink | None = None
        self._connections: set[asyncssh.SSHServerConnection] = set()
        self._vtys: set[int] = set()
        self.refused_logins = 0  # connections closed because every vty line was busy
        self.peak_connections = 0  # the most SSH connections open at once (one writer per router: 1)
        self._link_sessions: list[LinkSession] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.host_key: asyncssh.SSHKey | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def host(self) -> str:
        return self.spec.host

    @property
    def connections(self) -> int:
        """SSH connections open now, logged in or not (a client that died is gone once its socket closed)."""
        return len(self._connections)

    @property
    def sessions(self) -> int:
        """Shell sessions not yet ended (each holds a vty line until its end-of-session checks ran)."""
        return len(self._vtys)

    def user(self, name: str) -> User | None:
        return next((u for u in self.spec.users if u.name == name), None)

    @property
    def state(self) -> Device:
        if self.device is None:
            raise RuntimeError(f"lab device {self.name} is not running")
        return self.device

    # --- host key -------------------------------------------------------------------------------------

    @property
    def host_key_path(self) -> Path:
        return self.spec.state_dir / HOST_KEY_FILE

    def _load_host_key(self) -> asyncssh.SSHKey:
        path = self.host_key_path
        if path.exists() and not self.spec.faults.change_host_key:
            return asyncssh.read_private_key(str(path))
        key = asyncssh.generate_private_key("ssh-ed25519")
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(key.export_private_key())
        os.replace(tmp, path)
        self.spec.faults.change_host_key = False  # the new key persists from now on
        return key

    def known_hosts_line(self) -> str:
        """An OpenSSH known_hosts line pinning this device's host key (`[127.0.0.1]:PORT ssh-ed25519 ...`)."""
        if self.host_key is None:
            raise RuntimeError(f"lab device {self.name} is not running")
        public = self.host_key.export_public_key().decode().strip()
        return f"[{self.host}]:{self.port} {public}"

    # --- lifecycle ------------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._server is not None:
            raise RuntimeError(f"lab device {self.name} already started")
        self.spec.state_dir.mkdir(parents=True, exist_ok=True)
        self.host_key = self._load_host_key()
        self.device = Device(self.spec)
        self._server = await asyncssh.create_server(
            lambda: _SshServer(self),
            self.spec.host,
            self.ssh_port,
            server_host_keys=[self.host_key],
            process_factory=self._serve,
            encoding=None,
            line_editor=False,
            allow_pty=True,
            agent_forwarding=False,
            x11_forwarding=False,
            login_timeout=30,
            reuse_address=True,
            **self.spec.ssh_algorithms,
        )
        sockets = self._server.sockets
        self.ssh_port = sockets[0].getsockname()[1]
        if self.spec.wan is None:
            self.port = self.ssh_port
            return
        self._link = WanLink(self.spec.wan, self.ssh_port, host=self.spec.host, port=self.port)
        self._link.sessions = self._link_sessions  # kept across a restart
        await self._link.start()
        self.port = self._link.port

    @property
    def wan(self) -> Wan | None:
        return self.spec.wan

    def set_wan(self, wan: Wan) -> None:
        """Change the round trip and jitter of this device's WAN link (it must have one); for new connections."""
        if self.spec.wan is None:
            raise RuntimeError(f"lab device {self.name} has no WAN link (start it with DeviceSpec.wan)")
        self.spec.wan = wan
        if self._link is not None:
            self._link.wan = wan

    @property
    def link_sessions(self) -> list[LinkSession]:
        """One entry per connection through the device's WAN link (empty without a WAN)."""
        return self._link_sessions

    async def stop(self) -> None:
        """Close the listener and every session; unsaved config is lost (like a reload)."""
        link, self._link = self._link, None
        if link is not None:
            await link.stop()
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()
        for conn in list(self._connections):
            conn.abort()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.device is not None:
            await self.device.cancel_jobs()

    @property
    def active_sessions(self) -> int:
        """SSH sessions open on the device now (each holds a vty line)."""
        return len(self._vtys)

    async def restart(self) -> None:
        """A reload on the same port: the startup-config (what was saved) becomes the running config."""
        await self.stop()
        await self.start()

    async def change_host_key(self) -> None:
        self.spec.faults.change_host_key = True
        await self.restart()

    # --- sessions -------------------------------------------------------------------------------------

    async def _serve(self, process: asyncssh.SSHServerProcess[bytes]) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        vty = next(i for i in range(len(self._vtys) + 1) if i not in self._vtys)
        self._vtys.add(vty)
        try:
            await self._run_session(process, vty)
        finally:
            self._vtys.discard(vty)
            if task is not None:
                self._tasks.discard(task)

    async def _run_session(self, process: asyncssh.SSHServerProcess[bytes], vty: int) -> None:
        device = self.state
        username = process.get_extra_info("username")
        user = self.user(username) or User(username, privilege=1)
        peer = process.get_extra_info("peername")
        conn = process.channel.get_connection()

        def send(text: str) -> None:
            if not process.is_closing():
                process.stdout.write(text.encode("utf-8"))

        def close(abort: bool) -> None:
            if abort:
                conn.abort()
            else:
                with contextlib.suppress(Exception):
                    process.exit(0)
                conn.close()

        session = Session(
            device, user, vty=vty, peer=peer[0] if peer else "127.0.0.1", send=send, close=close,
            sleep=asyncio.sleep, client_version=str(conn.get_extra_info("client_version") or ""),
        )
        try:
            await self._converse(process, session, user, send, close)
        finally:
            session.ended()

    async def _converse(self, process: asyncssh.SSHServerProcess[bytes], session: Session, user: User,
                        send: Callable[[str], None], close: Callable[[bool], None]) -> None:
        if not user.exec_authorized:
            # `aaa authorization exec` denied: the line, then the session ends (inferred: no prompt first).
            send(f"\r\n{EXEC_AUTHORIZATION_FAILED}\r\n")
            with contextlib.suppress(asyncssh.Error, OSError):
                await process.stdout.drain()
            process.exit(1)
            # let the client read the line before the connection goes
            with contextlib.suppress(asyncssh.Error, OSError, TimeoutError):
                await asyncio.wait_for(process.channel.wait_closed(), 1)
            close(False)
            return
        if process.command:
            # `ssh router "show version"`: run the one command, no prompt (inferred from IOS exec channels).
            session.length = 0
            await session.execute(process.command)
            close(False)
            return
        reader = asyncio.get_running_loop().create_task(self._pump(process, session))
        try:
            await session.run()
        except (asyncssh.Error, OSError, BrokenPipeError):
            pass
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader

    @staticmethod
    async def _pump(process: asyncssh.SSHServerProcess[bytes], session: Session) -> None:
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        try:
            while True:
                data = await process.stdin.read(4096)
                if not data:
                    break
                session.feed(decoder.decode(data))
        except (asyncssh.Error, OSError):
            pass
        finally:
            session.feed_eof()


class Fleet:
    """Many lab devices in one process, each on its own port and state directory.

    ``async with Fleet(specs) as fleet:`` then ``fleet["r1"].port``; or ``await fleet.start()`` /
    ``await fleet.stop()``.
    """

    def __init__(self, specs: Sequence[DeviceSpec]) -> None:
        names = [s.name for s in specs]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"lab fleet: duplicate device names {duplicates}")
        dirs = [s.state_dir.resolve() for s in specs]
        if len(set(dirs)) != len(dirs):
            raise ValueError("lab fleet: every device needs its own state directory")
        self.devices = {s.name: LabDevice(s) for s in specs}

    @classmethod
    def numbered(
        cls,
        count: int,
        state_dir: Path,
        *,
        base_port: int = 0,
        users: tuple[User, ...] = (User("admin", "admin"),),
        enable_secret: str | None = None,
        lenient: bool = False,
        prefix: str = "lab-rtr",
        wan: Wan | None = None,
    ) -> Fleet:
        """``count`` devices named PREFIX-01.. in STATE_DIR/<name>, ports base_port+i (0: any free port);
        with ``wan``, each behind its own WAN link (base_port+i is then the link's port)."""
        specs = [
            DeviceSpec(
                name=f"{prefix}-{i + 1:02d}",
                state_dir=Path(state_dir) / f"{prefix}-{i + 1:02d}",
                users=users,
                enable_secret=enable_secret,
                lenient=lenient,
                port=base_port + i if base_port else 0,
                wan=wan,
            )
            for i in range(count)
        ]
        return cls(specs)

    def __getitem__(self, name: str) -> LabDevice:
        return self.devices[name]

    def __iter__(self) -> Iterator[LabDevice]:
        return iter(self.devices.values())

    def __len__(self) -> int:
        return len(self.devices)

    def link_sessions(self) -> list[LinkSession]:
        """Every connection through the devices' WAN links so far (see eemwatchd_lab.wan)."""
        return [s for d in self for s in d.link_sessions]

    def clear_link_sessions(self) -> None:
        for device in self:
            device.link_sessions.clear()

    def set_wan(self, wan: Wan) -> None:
        """Change the links' round trip and jitter (devices started with a WAN); new connections use it."""
        for device in self:
            device.set_wan(wan)

    async def start(self) -> None:
        results = await asyncio.gather(*(d.start() for d in self), return_exceptions=True)
        failures = [(d.name, r) for d, r in zip(self, results, strict=True) if isinstance(r, BaseException)]
        if failures:
            await self.stop()
            name, exc = failures[0]
            raise RuntimeError(f"lab device {name} did not start: {exc}") from exc

    async def stop(self) -> None:
        await asyncio.gather(*(d.stop() for d in self), return_exceptions=True)

    async def __aenter__(self) -> Fleet:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
