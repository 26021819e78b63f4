"""Observing SMTP servers: fetch every address, judge each chain (verify, complete via AIA).

`eemwatchd fetch` and the reconcile service both observe through `judge_results`/`observe_server`, so a
chain is judged the same way whether a person looks at it or the daemon acts on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from eemwatchd.adapters.aia import AiaLimits, complete_chain
from eemwatchd.adapters.smtp import AddressResult, FetchTimeouts, Mode, fetch_server
from eemwatchd.core.certificate import Certificate
from eemwatchd.core.chain import ChainObservation, Verification, verify_chain
from eemwatchd.errors import AiaError


async def judge_chain(
    address: str,
    port: int,
    chain: tuple[Certificate, ...],
    *,
    hostname: str,
    anchors: Sequence[Certificate],
    now: datetime,
    aia: bool = True,
) -> ChainObservation:
    """Verify a chain as sent; when it does not verify, complete missing issuers over AIA and try again."""
    verification = verify_chain(chain, hostname=hostname, anchors=anchors, now=now)
    fetched: tuple[Certificate, ...] = ()
    if not verification.verified and aia:
        try:
            fetched = await complete_chain(chain, anchors=anchors, limits=AiaLimits())
        except AiaError as exc:
            verification = Verification(False, verification.hostname, error=f"{verification.error}; AIA: {exc}")
        else:
            if fetched:
                completed = verify_chain((*chain, *fetched), hostname=hostname, anchors=anchors, now=now)
                if completed.verified:
                    verification = completed
    return ChainObservation(address, port, chain, verification, aia_fetched=fetched)


async def judge_results(
    results: Sequence[AddressResult],
    *,
    hostname: str,
    anchors: Sequence[Certificate],
    now: datetime,
    aia: bool = True,
) -> list[ChainObservation]:
    """One observation per fetched address; a fetch failure is an observation with its one-line reason."""
    out: list[ChainObservation] = []
    for result in results:
        if result.error is not None:
            out.append(ChainObservation(result.address, result.port, error=str(result.error).splitlines()[0]))
        elif not result.chain:
            out.append(ChainObservation(result.address, result.port, error="no certificate sent"))
        else:
            out.append(await judge_chain(result.address, result.port, tuple(result.chain), hostname=hostname,
                                         anchors=anchors, now=now, aia=aia))
    return out


async def observe_server(
    host: str,
    port: int,
    *,
    mode: Mode,
    anchors: Sequence[Certificate],
    now: datetime,
    servername: str | None = None,
    aia: bool = True,
    timeouts: FetchTimeouts = FetchTimeouts(),  # noqa: B008 - frozen dataclass
    max_concurrency: int = 10,
) -> list[ChainObservation]:
    """Fetch from every address and judge each chain.

    Raises ResolveError when the name has no address; every other failure is in its observation.
    """
    bare = host.strip("[]")
    results = await fetch_server(bare, port, mode=mode, servername=servername, timeouts=timeouts,
                                 max_concurrency=max_concurrency)
    return await judge_results(results, hostname=servername or bare, anchors=anchors, now=now, aia=aia)
