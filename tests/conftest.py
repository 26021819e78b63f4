"""Fixtures the tiers share, each name defined here once.

The lab routers check eemwatchd's invariants in every test (save only what a test-fire proved, never below, one
writer; docs/design.md "Invariants"): `lab_invariants` fails the test that caused a violation, whatever it checks.

Built things (`router`, `mail_server`, `lab`, `live_lab`, ...) are defined only here. A module that needs them
built differently overrides the small spec fixture they are built from (`router_spec`, `mail_server_user`,
`live_lab_routers`), never the built fixture itself. Helpers that are not fixtures live in tests/support/.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from eemwatchd.adapters.router import RouterTarget
from eemwatchd_lab.pki import GmailShapedPki
from eemwatchd_lab.router import DeviceSpec, LabDevice, invariants
from eemwatchd_lab.scenario import Lab as ScenarioLab
from eemwatchd_lab.smtp import LabSmtpServer
from tests.support.clock import NOW, PINNED
from tests.support.lab_router import SMTP_PASSWORD, router_spec_for, running_router
from tests.support.reconcile_lab import ReconcileLab, reconcile_lab
from tests.support.router_adapter import FAST, admin_password
from tests.support.webhook import Receiver, serve_webhook

CORE = Path(__file__).resolve().parent / "core"


# --- invariants ----------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def lab_invariants(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fails the test when a lab router saw eemwatchd break an invariant during it. A test that drives the router
    adapter below the reconciler on purpose names what it breaks: `@pytest.mark.breaks_invariants("save")`."""
    invariants.take_violations()  # a violation belongs to the test that caused it
    yield
    allowed = {kind for mark in request.node.iter_markers("breaks_invariants") for kind in mark.args}
    broken = [v for v in invariants.take_violations() if v.invariant not in allowed]
    if broken:
        pytest.fail("the lab routers saw eemwatchd break its promises:\n" + "\n".join(f"  {v}" for v in broken),
                    pytrace=False)


# --- tiers -------------------------------------------------------------------------------------------------


def _refused(what: str) -> Callable[..., None]:
    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError(f"a test in tests/core {what}: it belongs in tests/adapters, tests/lab or tests/e2e")

    return refuse


@pytest.fixture(autouse=True)
def _core_tier_stays_pure(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """A test under tests/core opens no socket and starts no process (so `./dev test --fast` needs no peer)."""
    if not request.path.is_relative_to(CORE):
        return
    for method in ("bind", "connect", "connect_ex"):
        monkeypatch.setattr(socket.socket, method, _refused(f"opened a socket (socket.{method})"))
    monkeypatch.setattr(subprocess.Popen, "__init__", _refused("started a process"))


# --- certificates ------------------------------------------------------------------------------------------


@pytest.fixture
def pki() -> GmailShapedPki:
    """A Gmail-shaped PKI (old root, new root cross-signed by it, intermediate, leaf) minted at the pinned NOW."""
    return GmailShapedPki.create(now=NOW)


@pytest.fixture
def wall_clock_pki() -> GmailShapedPki:
    """The same PKI minted at this moment, for peers that judge validity by the host's clock (OpenSSL in a
    TLS handshake, smtplib, Postfix, a lab router left on the wall clock): only relative times matter."""
    return GmailShapedPki.create()


# --- configuration files ----------------------------------------------------------------------------------


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    """A directory for a config file, holding the secret files the configs refer to: `pw`, `smtp.pw`."""
    (tmp_path / "pw").write_text("s3cret-pw\n")
    (tmp_path / "smtp.pw").write_text("app-pass-123\n")
    return tmp_path


# --- one simulated router ----------------------------------------------------------------------------------


@pytest.fixture
def router_spec(tmp_path: Path) -> DeviceSpec:
    """What `router` is built from: r1, hostname R1, one admin, the clock ticking from PINNED.

    Override it in a module that needs other users, an enable secret, a version or another clock."""
    return router_spec_for(tmp_path)


@pytest.fixture
async def router(router_spec: DeviceSpec) -> AsyncIterator[LabDevice]:
    """One lab router (IOS XE simulator) over real SSH on 127.0.0.1, built from `router_spec`."""
    async with running_router(router_spec) as device:
        yield device


@pytest.fixture
def router_target(router: LabDevice, tmp_path: Path) -> RouterTarget:
    """How the router adapter reaches `router`: as its admin, the host key pinned, short timeouts."""
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(router.known_hosts_line() + "\n")
    return RouterTarget(router.spec.name, router.host, router.port, "admin", password=admin_password(router.spec),
                        known_hosts=known_hosts, timeouts=FAST)


@pytest.fixture
def mail_server_user() -> str:
    """The account `mail_server` accepts (with SMTP_PASSWORD)."""
    return "user"


@pytest.fixture
async def mail_server(mail_server_user: str) -> AsyncIterator[tuple[LabSmtpServer, GmailShapedPki]]:
    """A lab SMTP server (STARTTLS) for the routers' mail, serving a PKI minted at the router's PINNED clock."""
    pki = GmailShapedPki.create(now=PINNED)
    server = LabSmtpServer(mode="starttls", certs=pki.served, key=pki.leaf.key, username=mail_server_user,
                           password=SMTP_PASSWORD)
    async with server:
        yield server, pki


# --- labs: routers, a mail server and eemwatchd's config over them -----------------------------------------


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[ReconcileLab]:
    """Two lab routers (r2 trusting the old root in a trustpoint of its own), a lab SMTP server, the config and
    the store over them; drive it with ``lab.run()`` (the real Reconciler) or ``support.reconcile_lab.cli``."""
    async with reconcile_lab(tmp_path) as made:
        yield made


@pytest.fixture
def live_lab_routers() -> int:
    """How many routers `live_lab` runs."""
    return 2


@pytest.fixture
def live_lab_prestage() -> bool:
    """Whether `live_lab`'s config pre-stages the lab provider's announced next root (`eemwatchd lab --prestage`)."""
    return False


@pytest.fixture
async def live_lab(tmp_path: Path, live_lab_routers: int, live_lab_prestage: bool) -> AsyncIterator[ScenarioLab]:
    """The `eemwatchd lab` scenario's lab, live (routers and SMTP server on the wall clock), for a daemon run as a
    process against ``live_lab.config_path``."""
    async with ScenarioLab(tmp_path / "lab", routers=live_lab_routers, say=lambda _text: None, live=True,
                           prestage=live_lab_prestage) as made:
        yield made


# --- peers that listen for eemwatchd -----------------------------------------------------------------------


@pytest.fixture
def webhook_receiver() -> Iterator[Receiver]:
    """A real HTTP server on 127.0.0.1 (port 0) recording every POST: where webhook alerts go."""
    with serve_webhook() as state:
        yield state
