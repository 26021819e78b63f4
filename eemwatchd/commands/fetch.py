"""`eemwatchd fetch HOST[:PORT]`: show and judge the chain every address of an SMTP server sends."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

from eemwatchd.adapters.smtp import (
    DEFAULT_PORTS,
    MODES,
    FetchTimeouts,
    Mode,
    format_endpoint,
    is_ip_literal,
)
from eemwatchd.adapters.truststore import load_anchors
from eemwatchd.core.certificate import Certificate
from eemwatchd.core.chain import ChainObservation, certificate_facts, issuer_common_name, role
from eemwatchd.errors import FetchError


def parse_target(text: str) -> tuple[str, int | None]:
    """``host``, ``host:port``, ``[v6]``, ``[v6]:port`` or a bare IPv6 literal (no port then)."""
    text = text.strip()
    port_text: str | None = None
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise argparse.ArgumentTypeError(f"{text!r}: write IPv6 as [ADDRESS] or [ADDRESS]:PORT")
        port_text = rest[1:] if rest else None
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    else:
        host = text  # a name, an IPv4 address or a bare IPv6 literal
    if not host:
        raise argparse.ArgumentTypeError(f"{text!r}: no host name")
    if ":" in host and not is_ip_literal(host):
        raise argparse.ArgumentTypeError(f"{text!r}: not a host name or IP address")
    if port_text is None:
        return host, None
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r}: the port must be a number from 1 to 65535")
    return host, int(port_text)


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError("the timeout must be between 0 and 3600 seconds")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Fetch the certificate chain from every address of an SMTP server (STARTTLS or implicit TLS), "
        "exactly as sent, and verify it for the server's name. Exit status 0 only when every address "
        "was fetched and verified."
    )
    parser.add_argument("target", metavar="HOST[:PORT]", type=parse_target,
                        help="server name or address; IPv6 as [ADDRESS]:PORT (default 587; 465 implicit)")
    parser.add_argument("--mode", choices=MODES, default="starttls",
                        help="starttls (ports 587/25) or implicit TLS (port 465); default starttls")
    parser.add_argument("--servername", metavar="NAME",
                        help="name to send as SNI and to verify the leaf against (default: HOST when a name)")
    parser.add_argument("--ca-file", metavar="FILE",
                        help="trust anchors from this PEM/DER/PKCS#7 file instead of the trust store")
    parser.add_argument("--trust-store", choices=("system", "certifi"), default="system",
                        help="trust anchors when no --ca-file is given (default: system)")
    parser.add_argument("--no-aia", action="store_true",
                        help="do not download missing issuers from AIA caIssuers URLs")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--pem", action="store_true", help="also print each chain as PEM, as sent")
    parser.add_argument("--timeout", metavar="S", type=_positive_seconds, default=30.0,
                        help="seconds allowed per address for the whole fetch (default 30)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # Imported here: `eemwatchd.reconcile` brings the router side (scrapli, asyncssh), which `fetch --help`
    # does not need (and `fetch` itself would not, were reconcile/__init__ lazy; see BENCHMARKS.md).
    from eemwatchd.reconcile.observe import observe_server

    host, port_given = args.target
    mode: Mode = args.mode
    port = port_given or DEFAULT_PORTS[mode]
    source = args.ca_file or args.trust_store
    anchors = load_anchors(source)
    step = min(10.0, args.timeout)
    timeouts = FetchTimeouts(connect=step, step=step, total=args.timeout)
    try:
        observations = asyncio.run(
            observe_server(host, port, mode=mode, anchors=anchors, now=datetime.now(UTC),
                           servername=args.servername, aia=not args.no_aia, timeouts=timeouts)
        )
    except FetchError as exc:  # the name did not resolve: no address to fetch from, a failure of the target
        if args.json:
            document = build_document(host, port, mode=mode, servername=args.servername, trust_store=source,
                                      observations=[], error=str(exc))
            json.dump(document, sys.stdout, indent=2)
            sys.stdout.write("\n")
        print(f"eemwatchd fetch: {exc}", file=sys.stderr)
        return 1
    if args.json:
        document = build_document(host, port, mode=mode, servername=args.servername, trust_store=source,
                                  observations=observations)
        json.dump(document, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print_report(host, port, mode=mode, servername=args.servername, trust_store=source,
                     observations=observations, pem=args.pem, out=sys.stdout)
    problem = summarise_failures(observations)
    if problem is not None:
        print(f"eemwatchd fetch: {problem}", file=sys.stderr)
        return 1
    return 0


def failure_line(obs: ChainObservation) -> str | None:
    endpoint = format_endpoint(obs.address, obs.port)
    if obs.error is not None:
        return obs.error if obs.error.startswith(endpoint) else f"{endpoint}: {obs.error}"
    if obs.verification is not None and not obs.verification.verified:
        return f"{endpoint}: chain not verified for {obs.verification.hostname}: {obs.verification.error}"
    return None


def summarise_failures(observations: Sequence[ChainObservation]) -> str | None:
    """One line for stderr: the failure, or how many addresses failed and the first reason."""
    failures = [line for line in map(failure_line, observations) if line is not None]
    if not failures:
        return None
    if len(failures) == 1 and len(observations) == 1:
        return failures[0]
    return f"{len(failures)} of {len(observations)} addresses failed; first: {failures[0]}"


# --- output -----------------------------------------------------------------------------------------


def build_document(
    host: str,
    port: int,
    *,
    mode: str,
    servername: str | None,
    trust_store: str,
    observations: Sequence[ChainObservation],
    error: str | None = None,
) -> dict[str, Any]:
    """The --json document (issue 2 sec. 5 keys, plus the IOS formats and the path). ``error``: why there is no
    address at all (the name did not resolve); ``ok`` is then false."""
    addresses = []
    for obs in observations:
        ver = obs.verification
        addresses.append({
            "address": obs.address,
            "port": obs.port,
            "chain": [certificate_facts(c, i) for i, c in enumerate(obs.chain)],
            "verified": obs.verified,
            "error": failure_line(obs),
            "anchor_sha256": ver.anchor.sha256 if ver is not None and ver.anchor is not None else None,
            "anchor_subject": ver.anchor.subject if ver is not None and ver.anchor is not None else None,
            "path_sha256": [c.sha256 for c in ver.path] if ver is not None else [],
            "aia_fetched": [certificate_facts(c, len(obs.chain) + i) for i, c in enumerate(obs.aia_fetched)],
        })
    return {
        "server": host,
        "port": port,
        "mode": mode,
        "servername": servername,
        "trust_store": trust_store,
        "ok": error is None and bool(observations) and all(obs.verified for obs in observations),
        "error": error,
        "addresses": addresses,
    }


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def chain_table(chain: Sequence[Certificate]) -> list[str]:
    """Rows of position, role, subject CN, issuer CN, not-after, SHA-256 (full: compare it by eye)."""
    header = ("#", "role", "subject", "issuer", "not after (UTC)", "SHA-256")
    rows = [
        (str(i), role(c, i), _short(c.common_name, 36), _short(issuer_common_name(c), 36),
         c.not_after.strftime("%Y-%m-%d %H:%M"), c.sha256)
        for i, c in enumerate(chain)
    ]
    widths = [max(len(r[col]) for r in (header, *rows)) for col in range(len(header))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
            for row in (header, *rows)]


def print_report(
    host: str,
    port: int,
    *,
    mode: str,
    servername: str | None,
    trust_store: str,
    observations: Sequence[ChainObservation],
    pem: bool,
    out: TextIO,
) -> None:
    sni = servername or (None if is_ip_literal(host.strip("[]")) else host)
    count = len(observations)
    endpoint = format_endpoint(host.strip("[]"), port)
    print(f"{endpoint} ({mode}, SNI {sni or 'none'}, trust store {trust_store}): "
          f"{count} address{'es' if count != 1 else ''}", file=out)
    for obs in observations:
        print(f"\n== {format_endpoint(obs.address, obs.port)} ==", file=out)
        if obs.error is not None:
            print(f"  fetch FAILED: {obs.error}", file=out)
            continue
        for line in chain_table(obs.chain):
            print(f"  {line}", file=out)
        ver = obs.verification
        if obs.aia_fetched:
            names = ", ".join(c.describe() for c in obs.aia_fetched)
            print(f"  not sent, fetched via AIA: {names}", file=out)
        if ver is not None and ver.verified and ver.anchor is not None:
            print(f"  verified for {ver.hostname}: " + " -> ".join(c.common_name for c in ver.path), file=out)
            print(f"  anchor: {ver.anchor.common_name} (SHA-256 {ver.anchor.sha256})", file=out)
        elif ver is not None:
            print(f"  NOT verified for {ver.hostname}: {ver.error}", file=out)
        if pem:
            print("", file=out)
            for cert in obs.chain:
                out.write(cert.pem)
