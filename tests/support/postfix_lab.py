"""A private, throw-away Postfix instance on 127.0.0.1 for the tests: never the system one.

Everything (main.cf, master.cf, queue, data, log, the served chain) lives in one directory of its own;
the master runs in the foreground (``master -c DIR/etc -d``, own session) as our child and is killed by its PID.
Only ``smtpd`` services are configured (plus ``anvil``, ``tlsmgr``, ``postlog``), so nothing is ever
queued or delivered. Raises PostfixUnavailable for anything that means "cannot run Postfix here".
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from eemwatchd.core.certificate import Certificate

MASTER_CANDIDATES = ("/usr/lib/postfix/sbin/master", "/usr/libexec/postfix/master")
START_DEADLINE = 10.0  # seconds for the master to bind both ports
STOP_GRACE = 5.0  # seconds between SIGTERM and SIGKILL
START_ATTEMPTS = 3  # the free ports we pick may be taken before the master binds them


class PostfixUnavailable(Exception):
    """Postfix is not installed, or cannot run here; the reason is the message."""


@dataclass(frozen=True)
class PostfixLab:
    starttls_port: int
    implicit_port: int
    directory: Path
    master_pid: int

    def log(self) -> str:
        try:
            return (self.directory / "maillog").read_text(errors="replace")
        except OSError:
            return ""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int, deadline: float, proc: subprocess.Popen[bytes]) -> None:
    while True:
        if proc.poll() is not None:
            raise PostfixUnavailable(f"the Postfix master exited with status {proc.returncode} at start")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        if time.monotonic() > deadline:
            raise PostfixUnavailable(f"Postfix did not listen on 127.0.0.1:{port} within {START_DEADLINE:g} s")
        time.sleep(0.05)


def _find_master() -> str:
    for candidate in MASTER_CANDIDATES:
        if os.access(candidate, os.X_OK):
            return candidate
    raise PostfixUnavailable("Postfix is not installed (no master daemon in /usr/lib/postfix/sbin)")


def _main_cf(directory: Path, chain_file: Path) -> str:
    return f"""\
compatibility_level = 3.6
config_directory = {directory}/etc
queue_directory = {directory}/spool
data_directory = {directory}/data
maillog_file = {directory}/maillog
maillog_file_prefixes = {directory}
mail_owner = postfix
setgid_group = postdrop
myhostname = smtp.lab.example
mydomain = lab.example
myorigin = $myhostname
mydestination =
relay_domains =
mynetworks = 127.0.0.0/8
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
alias_maps =
alias_database =
local_recipient_maps =
biff = no
smtpd_banner = $myhostname ESMTP eemwatchd test Postfix
smtpd_tls_chain_files = {chain_file}
smtpd_tls_security_level = may
smtpd_tls_loglevel = 1
smtpd_tls_session_cache_database =
smtpd_client_connection_rate_limit = 0
smtpd_client_connection_count_limit = 0
"""


def _master_cf(starttls_port: int, implicit_port: int) -> str:
    # chroot "n" everywhere: a private instance must not need a copy of /etc in its queue directory.
    return f"""\
127.0.0.1:{starttls_port} inet n - n - - smtpd
127.0.0.1:{implicit_port} inet n - n - - smtpd -o smtpd_tls_wrappermode=yes -o smtpd_tls_security_level=encrypt
anvil     unix  -       -       n       -       1       anvil
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def _prepare(directory: Path, certs: Sequence[Certificate], key_pem: bytes, ports: tuple[int, int]) -> Path:
    try:
        owner = pwd.getpwnam("postfix")
        postdrop = grp.getgrnam("postdrop").gr_gid
    except KeyError as exc:
        raise PostfixUnavailable(f"the postfix user or postdrop group is missing ({exc})") from None
    etc, spool, data = directory / "etc", directory / "spool", directory / "data"
    for path, uid, gid, mode in (
        (directory, 0, 0, 0o755),
        (etc, 0, 0, 0o755),
        (spool, 0, 0, 0o755),
        (spool / "pid", 0, 0, 0o755),
        (spool / "private", owner.pw_uid, 0, 0o700),
        (spool / "public", owner.pw_uid, postdrop, 0o710),
        (data, owner.pw_uid, 0, 0o700),
    ):
        path.mkdir(exist_ok=True)
        os.chown(path, uid, gid)
        path.chmod(mode)
    # Postfix 3.4+: one file, the key first, then the chain in the order it is to be sent.
    chain_file = etc / "chain.pem"
    fd = os.open(chain_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key_pem)
        fh.write("".join(c.pem for c in certs).encode("ascii"))
    (etc / "main.cf").write_text(_main_cf(directory, chain_file))
    (etc / "master.cf").write_text(_master_cf(*ports))
    # Postfix re-reads a table file, 300 ms apart, until its mtime is in the past (a guard against
    # reading a half-written main.cf): backdating saves ~2 s per start.
    past = time.time() - 10
    for name in ("main.cf", "master.cf", "chain.pem"):
        os.utime(etc / name, (past, past))
    return etc


def _live_members(pgid: int) -> list[int]:
    """PIDs in process group ``pgid`` that are still running (zombies left for init to reap do not count)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # state, ppid, pgrp, ...
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the master by PID (it stops its children), SIGKILL it if it lingers; then make sure that
    nothing of its process group (which is its own: start_new_session) is left running.
    """
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(STOP_GRACE)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(STOP_GRACE)
    deadline = time.monotonic() + STOP_GRACE
    while _live_members(proc.pid):
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.02)


@contextlib.contextmanager
def running_postfix(certs: Sequence[Certificate], key_pem: bytes) -> Iterator[PostfixLab]:
    """A private Postfix serving ``certs`` (leaf first) with STARTTLS on one port and implicit TLS on another.

    The instance gets a fresh directory in the system temp dir, removed afterwards: pytest's tmp_path
    sits under a 0700 directory of root's, which the postfix user cannot search (the master opens
    data_directory/master.lock as postfix and dies with EACCES).
    """
    master = _find_master()
    if os.geteuid() != 0:
        raise PostfixUnavailable("the Postfix master must start as root (run the tests as root)")
    for attempt in range(1, START_ATTEMPTS + 1):
        directory = Path(tempfile.mkdtemp(prefix="eemwatchd-postfix-"))
        try:
            ports = (_free_port(), _free_port())
            while ports[1] == ports[0]:
                ports = (ports[0], _free_port())
            try:
                etc = _prepare(directory, certs, key_pem, ports)
            except OSError as exc:
                raise PostfixUnavailable(f"cannot prepare the instance directory {directory}: {exc}") from exc
            with _master(master, etc, directory) as proc:
                lab = PostfixLab(ports[0], ports[1], directory, proc.pid)
                deadline = time.monotonic() + START_DEADLINE
                try:
                    for port in ports:
                        _wait_for_port(port, deadline, proc)
                except PostfixUnavailable as exc:
                    log = lab.log()
                    if "already in use" in log and attempt < START_ATTEMPTS:
                        continue  # someone took a port we picked: pick again
                    tail = " / ".join(log.strip().splitlines()[-3:]) or "nothing logged"
                    raise PostfixUnavailable(f"{exc}; log: {tail}") from None
                yield lab
                return
        finally:
            shutil.rmtree(directory, ignore_errors=True)


@contextlib.contextmanager
def _master(master: str, etc: Path, directory: Path) -> Iterator[subprocess.Popen[bytes]]:
    # Own session: on SIGTERM the master signals its whole process group, which must be only its own.
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "MAIL_CONFIG": str(etc), "LANG": "C"}
    try:
        proc = subprocess.Popen(
            [master, "-c", str(etc), "-d"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, env=env, cwd=directory, start_new_session=True,
        )
    except OSError as exc:
        raise PostfixUnavailable(f"cannot start the Postfix master: {exc}") from exc
    try:
        yield proc
    finally:
        _stop(proc)
