"""How to reach a router: its target and timeouts, its SSH host key (pinned), the SSH algorithms we offer."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from dataclasses import dataclass, field
from pathlib import Path

import asyncssh

from eemwatchd.errors import HostKeyRejected, RouterTimeout, RouterUnreachable

logger = logging.getLogger("eemwatchd.router")

# SHA-1 algorithms are off unless a router sets legacy_algorithms (old IOS images).
_SHA1_KEX = ("diffie-hellman-group14-sha1", "diffie-hellman-group-exchange-sha1", "diffie-hellman-group1-sha1")
_SHA1_MAC = ("hmac-sha1", "hmac-sha1-etm@openssh.com")
_SHA1_SIG = ("ssh-rsa",)
_GCM_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")


@dataclass(frozen=True)
class RouterTimeouts:
    """Seconds allowed per step. An import can take ~60 s on a busy box (docs/field-notes.md sec. 8)."""

    connect: float = 15.0
    command: float = 30.0
    running_config: float = 60.0
    change: float = 90.0
    poll_interval: float = 1.0  # the longest wait between two looks at the EEM history
    fire_grace: float = 5.0


@dataclass(frozen=True)
class RouterTarget:
    """How to reach one router. Secrets are left out of the repr."""

    name: str
    host: str
    port: int = 22
    username: str = ""
    password: str | None = field(default=None, repr=False)
    key_file: Path | None = None
    enable_secret: str | None = field(default=None, repr=False)
    known_hosts: Path | None = None
    trust_on_first_use: bool = False
    legacy_algorithms: bool = False
    timeouts: RouterTimeouts = field(default_factory=RouterTimeouts)

    @property
    def known_hosts_path(self) -> Path:
        return self.known_hosts if self.known_hosts is not None else Path.home() / ".ssh" / "known_hosts"

    @property
    def host_pattern(self) -> str:
        """How OpenSSH names this host in known_hosts: ``[host]:port`` unless the port is 22."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"


# --- host keys -------------------------------------------------------------------------------------

_KNOWN_HOSTS_LOCKS: dict[Path, asyncio.Lock] = {}
# Parsed known_hosts files by path, with the (inode, size, mtime) they were parsed at. Handing asyncssh the
# path made it re-read and re-parse the whole file for every connection: with one file for the fleet that is
# O(routers) per login, 50 % of a 1000-router plan's CPU (BENCHMARKS.md).
_KNOWN_HOSTS: dict[Path, tuple[tuple[int, int, int], asyncssh.SSHKnownHosts]] = {}


def read_known_hosts(path: Path) -> asyncssh.SSHKnownHosts:
    """The parsed known_hosts file, parsed again only when the file changed.

    A change is a new inode (`ssh-keygen -R` and editors replace the file), size (an appended key, trust on
    first use) or modification time. Raises OSError when unreadable, ValueError when an entry is malformed.
    """
    stat = path.stat()
    version = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
    cached = _KNOWN_HOSTS.get(path)
    if cached is not None and cached[0] == version:
        return cached[1]
    known = asyncssh.read_known_hosts(str(path))
    _KNOWN_HOSTS[path] = (version, known)
    return known


def _has_known_host(target: RouterTarget) -> bool:
    """Whether known_hosts has an entry (plain or hashed, ``[host]:port`` or ``host``) for the router's host, by the
    name or the address it is configured with, as OpenSSH looks it up."""
    path = target.known_hosts_path
    if not path.exists():
        return False
    # asyncssh's match() wants an IP address as its second argument; a name there raised ValueError, so trust on
    # first use recorded only the first router addressed by name and a wrong key showed as "failed".
    result = read_known_hosts(path).match(target.host, _address_of(target.host), target.port)
    return bool(result[0] or result[1])


def _address_of(host: str) -> str:
    """``host`` when it is an IP address, else "" (a name: matched by name only)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return ""
    return host


def _host_key_advice(target: RouterTarget) -> str:
    path = target.known_hosts_path
    return f"`ssh-keyscan -p {target.port} {target.host} >> {path}` (after checking the key out of band)"


def host_key_rejection(target: RouterTarget) -> HostKeyRejected:
    path = target.known_hosts_path
    if not path.exists():
        return HostKeyRejected(
            target.name,
            f"known_hosts file {path} does not exist; add the router's key with {_host_key_advice(target)}, "
            "or enable trust_on_first_use for this router",
        )
    if _has_known_host(target):
        return HostKeyRejected(
            target.name,
            f"host key of {target.host_pattern} does NOT match the one in {path} (device replaced, key "
            "regenerated, or someone in the path); if the change is expected run "
            f"`ssh-keygen -R '{target.host_pattern}' -f {path}` and then {_host_key_advice(target)}",
        )
    return HostKeyRejected(
        target.name,
        f"host key of {target.host_pattern} is not in {path}; add it with {_host_key_advice(target)}, "
        "or enable trust_on_first_use for this router",
    )


async def record_first_host_key(target: RouterTarget) -> bool:
    """Trust on first use: append the router's current host key when known_hosts has none for it.

    Returns True when a key was recorded. An existing (possibly different) entry is never replaced.
    """
    path = target.known_hosts_path
    lock = _KNOWN_HOSTS_LOCKS.setdefault(path, asyncio.Lock())
    async with lock:
        if _has_known_host(target):
            return False
        try:
            key = await asyncio.wait_for(
                asyncssh.get_server_host_key(target.host, target.port), timeout=target.timeouts.connect
            )
        except TimeoutError as exc:
            raise RouterTimeout(target.name, "fetching the SSH host key") from exc
        except ConnectionRefusedError as exc:
            reason = (f"{target.host}:{target.port}: connection refused while fetching the SSH host key "
                      "(is SSH enabled, and is that the right port?)")
            raise RouterUnreachable(target.name, reason) from exc
        except (OSError, asyncssh.Error) as exc:
            raise RouterUnreachable(target.name, f"cannot fetch the SSH host key: {exc}") from exc
        if key is None:
            raise HostKeyRejected(target.name, "the server presented no host key")
        algorithm, blob = key.export_public_key("openssh").decode("ascii").split()[:2]
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="ascii") as handle:
            handle.write(f"{target.host_pattern} {algorithm} {blob}\n")
        path.chmod(0o600)
        logger.warning(
            "router %s: trusted SSH host key on first use: %s %s %s -> %s",
            target.name,
            target.host_pattern,
            algorithm,
            key.get_fingerprint("sha256"),
            path,
            extra={"event": "host_key_recorded", "router": target.name, "fingerprint": key.get_fingerprint()},
        )
        return True


def ssh_algorithms(*, legacy: bool) -> dict[str, list[str]]:
    """asyncssh algorithm lists without SHA-1 key exchange, MACs and `ssh-rsa` signatures (unless legacy),
    AES-GCM preferred."""
    from asyncssh.encryption import get_default_encryption_algs
    from asyncssh.kex import get_default_kex_algs, get_kex_algs
    from asyncssh.mac import get_default_mac_algs, get_mac_algs
    from asyncssh.public_key import get_default_public_key_algs

    kex = [a.decode() for a in get_default_kex_algs()]
    mac = [a.decode() for a in get_default_mac_algs()]
    sig = [a.decode() for a in get_default_public_key_algs()]
    ciphers = [a.decode() for a in get_default_encryption_algs()]
    # AES-GCM before asyncssh's first choice ChaCha20-Poly1305: AES-NI does it in hardware, while asyncssh
    # builds a ChaCha20 context in Python for every packet (a bare client's fleet pass took 0.73x the time
    # with AES-GCM; BENCHMARKS.md). IOS XE offers aes128-gcm/aes256-gcm and no ChaCha20, so a real router
    # negotiated AES already; the order matters against servers offering both, the lab router among them.
    ciphers = [a for a in _GCM_CIPHERS if a in ciphers] + [a for a in ciphers if a not in _GCM_CIPHERS]
    if legacy:
        known_kex = {a.decode() for a in get_kex_algs()}
        known_mac = {a.decode() for a in get_mac_algs()}
        return {
            "kex_algs": kex + [a for a in _SHA1_KEX if a in known_kex and a not in kex],
            "mac_algs": mac + [a for a in _SHA1_MAC if a in known_mac and a not in mac],
            "signature_algs": sig,
            "server_host_key_algs": sig,
            "encryption_algs": ciphers,
        }
    strict_sig = [a for a in sig if a not in _SHA1_SIG]
    return {
        "kex_algs": [a for a in kex if not a.endswith("-sha1")],
        "mac_algs": [a for a in mac if a not in _SHA1_MAC],
        "signature_algs": strict_sig,
        "server_host_key_algs": strict_sig,
        "encryption_algs": ciphers,
    }
