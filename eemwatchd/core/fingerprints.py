"""How certificates are named to people: short fingerprints and chains of them (no cryptography import, so a
command's output code can use it without loading the X.509 stack)."""

from __future__ import annotations

from collections.abc import Iterable


def short_fingerprint(sha256: str) -> str:
    """How a certificate is named to people and in trustpoint names: the first 8 hex characters of its SHA-256,
    uppercase (`EEMW-3425C869`)."""
    return sha256[:8].upper()


def chain_text(sha256s: Iterable[str]) -> str:
    """A chain as people read it: its certificates' short fingerprints, leaf first (`D3C6DCAA/9CBACB9A/6B29A2D8`)."""
    return "/".join(short_fingerprint(s) for s in sha256s)
