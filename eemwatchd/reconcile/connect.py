"""The default outside parties of a reconcile run: the SMTP fetcher and the SSH router session."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Protocol

from eemwatchd.adapters.router import RouterSession
from eemwatchd.adapters.router_access import RouterTarget, RouterTimeouts
from eemwatchd.adapters.smtp import AddressResult, FetchTimeouts, fetch_server
from eemwatchd.config import RouterConfig, ServerConfig
from eemwatchd.core.certificate import Certificate
from eemwatchd.core.router_state import RouterSnapshot
from eemwatchd.core.testfire import FireResult


class RouterSessionLike(Protocol):
    """What a reconcile job needs from a router session (eemwatchd.adapters.router.RouterSession fits)."""

    async def read_snapshot(self) -> RouterSnapshot: ...

    async def read_saved_trustpoints(self) -> Mapping[str, Sequence[str]]: ...

    async def install_certificate(self, trustpoint: str, certificate: Certificate) -> object: ...

    async def retire_trustpoint(self, name: str) -> object: ...

    async def save_config(self) -> object: ...

    async def fire_applet(
        self, applet: str, *, maxrun: float, success_messages: Sequence[str] = ()
    ) -> FireResult: ...


RouterConnector = Callable[[RouterConfig], contextlib.AbstractAsyncContextManager[RouterSessionLike]]
ServerFetcher = Callable[[ServerConfig], Awaitable[list[AddressResult]]]


async def default_fetcher(server: ServerConfig) -> list[AddressResult]:
    t = server.timeouts
    return await fetch_server(
        server.host,
        server.effective_port,
        mode=server.mode,
        servername=server.servername,
        timeouts=FetchTimeouts(connect=t.connect, step=t.step, total=t.total),
    )


def target_from_config(router: RouterConfig) -> RouterTarget:
    """The router adapter's RouterTarget for a configured router (secrets revealed only here)."""
    t = router.timeouts
    return RouterTarget(
        name=router.name,
        host=router.host,
        port=router.port,
        username=router.username,
        password=router.password.reveal() if router.password is not None else None,
        key_file=router.key_file,
        enable_secret=router.enable_secret.reveal() if router.enable_secret is not None else None,
        known_hosts=router.known_hosts,
        trust_on_first_use=router.trust_on_first_use,
        legacy_algorithms=router.legacy_algorithms,
        timeouts=RouterTimeouts(connect=t.connect, command=t.step, running_config=max(t.step, 60.0)),
    )


@contextlib.asynccontextmanager
async def default_connector(router: RouterConfig) -> AsyncIterator[RouterSessionLike]:
    """An SSH session through eemwatchd.adapters.router."""
    async with RouterSession(target_from_config(router)) as session:
        yield session
