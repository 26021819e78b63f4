"""The systemd units: systemd's own checks (verify, security), the directives we rely on, the commands they run,
and the lab's whole story run under the service's seccomp rules (SystemCallFilter, MemoryDenyWriteExecute,
RestrictAddressFamilies) rebuilt with libseccomp."""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from eemwatchd.cli import build_parser
from tests.support.repo import REPO

UNITS = REPO / "systemd"
INSTALLED_BINARY = "/usr/local/bin/eemwatchd"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_systemd_analyze = pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed")


def directives(path: Path) -> dict[str, dict[str, list[str]]]:
    """Section -> key -> every value (systemd allows a key more than once), comments dropped."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key, []).append(value)
    return sections


def staged(tmp_path: Path) -> Path:
    """The units copied to tmp_path with ExecStart= naming an executable that exists here (verify checks)."""
    real = Path(sys.executable).parent / "eemwatchd"
    binary = str(real if real.exists() else Path(sys.executable))
    for unit in UNITS.iterdir():
        (tmp_path / unit.name).write_text(unit.read_text().replace(INSTALLED_BINARY, binary))
    return tmp_path


# --- systemd's own checks -------------------------------------------------------------------------------


@needs_systemd_analyze
@pytest.mark.parametrize("unit", ["eemwatchd.service", "eemwatchd-apply.service", "eemwatchd-apply.timer",
                                  "eemwatchd@0-3.service"])
def test_systemd_analyze_verify_is_silent(unit: str, tmp_path: Path) -> None:
    assert SYSTEMD_ANALYZE is not None
    where = staged(tmp_path)
    done = subprocess.run([SYSTEMD_ANALYZE, "verify", f"./{unit}"], cwd=where, capture_output=True, text=True,
                          timeout=30, check=False)
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


@needs_systemd_analyze
@pytest.mark.parametrize("unit", ["eemwatchd.service", "eemwatchd-apply.service", "eemwatchd@0-3.service"])
def test_systemd_analyze_security_exposure_stays_low(unit: str, tmp_path: Path) -> None:
    assert SYSTEMD_ANALYZE is not None
    where = staged(tmp_path)
    # --threshold is exposure x 10: 20 means "2.0 OK" or better (both units score 1.1 with systemd 252)
    done = subprocess.run([SYSTEMD_ANALYZE, "security", "--offline=yes", "--threshold=20", f"./{unit}"],
                          cwd=where, capture_output=True, text=True, timeout=30, check=False)
    overall = re.search(r"Overall exposure level for \S+: (\d+\.\d)", done.stdout)
    assert overall, done.stdout + done.stderr
    assert done.returncode == 0, f"exposure {overall.group(1)} is above 2.0:\n{done.stdout}"


# --- what we rely on ------------------------------------------------------------------------------------

HARDENING = {
    "UMask": "0077",
    "NoNewPrivileges": "yes",
    "CapabilityBoundingSet": "",
    "AmbientCapabilities": "",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    "RestrictNamespaces": "yes",
    "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes",
    "SystemCallArchitectures": "native",
    "StateDirectory": "eemwatchd",
    "StateDirectoryMode": "0700",
    "User": "eemwatchd",
    # a socket per router session: policy.max_parallel_routers (at most 500) plus the store, HTTP and fetches
    "LimitNOFILE": "65536",
}

DAEMON = {
    **HARDENING,
    "Type": "notify",
    "NotifyAccess": "main",
    "ExecStart": f"{INSTALLED_BINARY} run -c /etc/eemwatchd/eemwatchd.yaml --log-format json",
    "ExecReload": "/bin/kill -HUP $MAINPID",
    "Restart": "on-failure",
    "RestartSec": "30s",
    "WatchdogSec": "60s",
    "TimeoutStopSec": "150s",
}

ONESHOT = {
    **HARDENING,
    "Type": "oneshot",
    "ExecStart": f"{INSTALLED_BINARY} apply -c /etc/eemwatchd/eemwatchd.yaml --yes",
}


@pytest.mark.parametrize(("unit", "expected"), [("eemwatchd.service", DAEMON), ("eemwatchd-apply.service", ONESHOT)])
def test_service_has_the_directives_we_rely_on(unit: str, expected: dict[str, str]) -> None:
    service = directives(UNITS / unit)["Service"]
    found = {key: service.get(key, ["(missing)"])[-1] for key in expected}
    assert found == expected
    assert service["SystemCallFilter"] == ["@system-service", "~@privileged @resources"]
    assert any(v.startswith("router-password:/etc/eemwatchd/credentials/") for v in service["LoadCredential"])


@pytest.mark.parametrize("unit", ["eemwatchd.service", "eemwatchd-apply.service"])
def test_credential_paths_named_in_a_unit_are_that_units_own(unit: str) -> None:
    # systemd puts credentials under /run/credentials/<unit name>/; a path copied from the other unit is empty
    named = set(re.findall(r"/run/credentials/([^/\s]+)/", (UNITS / unit).read_text()))
    assert named == {unit}


def _commands(unit: str) -> list[list[str]]:
    service = directives(UNITS / unit)["Service"]
    return [shlex.split(v)[1:] for key in ("ExecStartPre", "ExecStart") for v in service.get(key, [])]


@pytest.mark.parametrize("unit", ["eemwatchd.service", "eemwatchd-apply.service"])
def test_the_units_commands_are_ones_the_cli_accepts(unit: str) -> None:
    parser = build_parser()
    known = {name for action in parser._actions if isinstance(action, argparse._SubParsersAction)
             for name in action.choices}
    for argv in _commands(unit):
        if argv[0] not in known:
            pytest.skip(f"`eemwatchd {argv[0]}` is not in this tree yet")
        args = parser.parse_args(argv)
        assert args.command == argv[0]


# --- the sandbox, for real ------------------------------------------------------------------------------

# libseccomp's Python binding comes from Debian (python3-seccomp), built for the same CPython 3.11
_DIST_PACKAGES = "/usr/lib/python3/dist-packages"


def _have_seccomp() -> bool:
    probe = f"import sys; sys.path.append({_DIST_PACKAGES!r}); import seccomp"
    return subprocess.run([sys.executable, "-c", probe], capture_output=True, timeout=30, check=False).returncode == 0


@needs_systemd_analyze
@pytest.mark.timeout(120)
def test_the_lab_story_runs_under_the_services_seccomp_rules(tmp_path: Path) -> None:
    """SMTP STARTTLS, SSH to the lab routers, cryptography, SQLite: the whole `eemwatchd lab` story, in a
    process confined by the unit's SystemCallFilter= (EPERM), MemoryDenyWriteExecute= and
    RestrictAddressFamilies=, built the way systemd builds them."""
    if not _have_seccomp():
        pytest.skip("libseccomp's Python binding is missing: apt-get install python3-seccomp")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, __file__, str(UNITS / "eemwatchd.service"), "lab", "--once", "--routers", "1",
         "--state-dir", str(tmp_path / "lab")],
        capture_output=True, text=True, timeout=110, env=env, check=False, cwd=tmp_path,
    )
    assert "sandbox: W+X memory refused, setgroups refused, AF_PACKET refused" in done.stderr, done.stderr
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "every router kept sending mail through both rotations" in done.stdout


def _syscalls(group: str) -> set[str]:
    """A systemd syscall group, nested groups expanded, as this systemd defines it."""
    assert SYSTEMD_ANALYZE is not None
    listing = subprocess.run([SYSTEMD_ANALYZE, "syscall-filter", group], capture_output=True, text=True,
                             timeout=30, check=True).stdout
    names: set[str] = set()
    for line in listing.splitlines()[1:]:
        word = line.strip()
        if word and not word.startswith("#"):
            names |= _syscalls(word) if word.startswith("@") else {word}
    return names


def _confine_like(unit: Path) -> None:  # pragma: no cover - runs in the child process
    import mmap
    import socket

    sys.path.append(_DIST_PACKAGES)
    import seccomp  # type: ignore[import-not-found]

    service = directives(unit)["Service"]
    # MemoryDenyWriteExecute=yes as systemd's seccomp-util builds it: no W+X mapping, no PROT_EXEC later.
    # Loaded first: the allow-list below does not allow seccomp() itself (systemd loads all before exec).
    mdwe = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
    wx, x = mmap.PROT_WRITE | mmap.PROT_EXEC, mmap.PROT_EXEC
    mdwe.add_rule(seccomp.ERRNO(1), "mmap", seccomp.Arg(2, seccomp.MASKED_EQ, wx, wx))
    mdwe.add_rule(seccomp.ERRNO(1), "mprotect", seccomp.Arg(2, seccomp.MASKED_EQ, x, x))
    mdwe.add_rule(seccomp.ERRNO(1), "pkey_mprotect", seccomp.Arg(2, seccomp.MASKED_EQ, x, x))
    mdwe.add_rule(seccomp.ERRNO(1), "shmat", seccomp.Arg(2, seccomp.MASKED_EQ, 0o100000, 0o100000))  # SHM_EXEC
    families = {getattr(socket, name) for name in service["RestrictAddressFamilies"][-1].split()}
    for family in range(64):
        if family not in families:
            mdwe.add_rule(seccomp.ERRNO(97), "socket", seccomp.Arg(0, seccomp.EQ, family))  # EAFNOSUPPORT
    mdwe.load()
    # SystemCallFilter=: an allow-list, later ~lines remove from it; the rest fails with SystemCallErrorNumber=
    allowed: set[str] = set()
    for value in service["SystemCallFilter"]:
        names = set().union(*(_syscalls(w) if w.startswith("@") else {w} for w in value.lstrip("~").split()))
        allowed = allowed - names if value.startswith("~") else allowed | names
    assert service["SystemCallErrorNumber"] == ["EPERM"]
    allow = seccomp.SyscallFilter(defaction=seccomp.ERRNO(1))
    for name in sorted(allowed):
        with contextlib.suppress(RuntimeError, ValueError):  # a name this kernel or libseccomp does not know
            allow.add_rule(seccomp.ALLOW, name)
    allow.load()
    refused = []
    try:
        mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    except OSError:
        refused.append("W+X memory")
    try:
        os.setgroups(os.getgroups())  # @privileged; would work for root without the filter
    except PermissionError:
        refused.append("setgroups")
    try:
        socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    except OSError:
        refused.append("AF_PACKET")
    print(f"sandbox: {', '.join(r + ' refused' for r in refused)}", file=sys.stderr, flush=True)


if __name__ == "__main__":  # pragma: no cover - the child of the sandbox test
    _confine_like(Path(sys.argv[1]))
    from eemwatchd.cli import main

    sys.exit(main(sys.argv[2:]))


@pytest.mark.parametrize("unit", ["eemwatchd.service", "eemwatchd-apply.service", "eemwatchd@.service"])
def test_the_open_file_limit_holds_the_largest_number_of_routers_in_parallel(unit: str) -> None:
    from annotated_types import Le

    from eemwatchd.config.model import PolicyConfig

    field = PolicyConfig.model_fields["max_parallel_routers"]
    largest = next(m.le for m in field.metadata if isinstance(m, Le))
    (limit,) = directives(UNITS / unit)["Service"]["LimitNOFILE"]  # one line per unit
    # one socket per session, ~20 for the store, the HTTP endpoint and the event loop, fetches under way
    assert int(limit) >= int(largest) + 100
