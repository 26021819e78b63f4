"""Reading and checking ``servers[].prestage`` when the config is loaded: the files here, the judgement in the core.

Every load checks them (check-config, the daemon's start and each SIGHUP, plan and apply): a file that cannot be
read or holds no certificate, a certificate that is not a CA, is outside its validity, or is neither trusted by
the server's trust store nor matches its pin is a problem naming the key path, the file and the reason, and the
config is refused (a reload keeps the running one). What passed is carried in the config
(``PrestageFile.certificates``), so what was checked is what the routers get.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from eemwatchd.adapters.truststore import load_anchors
from eemwatchd.core.certificate import Certificate, load_certificates
from eemwatchd.core.prestage import judge_prestaged
from eemwatchd.errors import CertificateError, ConfigError

# A PEM file of a few CA certificates is a few KiB; a root bundle ~200 KiB. Larger is not what it should be.
MAX_PRESTAGE_BYTES = 1024 * 1024
_ITEM_KEYS = ("file", "sha256")


def _read(path: Path) -> list[Certificate] | str:
    """The certificates in ``path`` (PEM; DER and PKCS#7 are read too), or why there are none."""
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_PRESTAGE_BYTES + 1)
    except OSError as exc:
        return f"cannot read it ({exc.strerror or exc}); fix the path (relative paths start at the config file)"
    if len(data) > MAX_PRESTAGE_BYTES:
        return "is larger than 1 MiB: not a file of a few CA certificates"
    if not data.strip():
        return "is empty: it holds no certificate"
    try:
        certs = load_certificates(data, what=str(path))
    except CertificateError as exc:
        return f"holds no readable certificate ({exc})"
    return certs if certs else "holds no certificate"


def _pin_of(item: Mapping[str, Any]) -> str | None:
    pin = item.get("sha256")
    if not isinstance(pin, str):
        return None
    compact = pin.replace(":", "").strip().lower()
    return compact if len(compact) == 64 and all(c in "0123456789abcdef" for c in compact) else None


class _Problems:
    """Problems in order, each once (a default's problem is the same for every server that takes it)."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems

    def add(self, text: str) -> None:
        if text not in self.problems:
            self.problems.append(text)


_Read = list[tuple[int, dict[str, Any], list[Certificate]]]  # (index, entry, its certificates)


def _read_items(items: list[Any], home: str, problems: _Problems) -> _Read:
    """The entries whose file reads, with its certificates; the others' problems recorded."""
    read: _Read = []
    for j, item in enumerate(items):
        where = f"{home}[{j}]"
        entry = {"file": item} if isinstance(item, str) else item
        if not isinstance(entry, dict) or not isinstance(entry.get("file"), str):
            continue  # the model names what is wrong with it
        if set(entry) - set(_ITEM_KEYS):
            continue  # the model names the unknown key; the entry is not what its author meant
        path = Path(entry["file"])
        certs = _read(path)
        if isinstance(certs, str):
            problems.add(f"{where}: {path} {certs}")
        elif entry.get("sha256") is not None and len(certs) != 1:
            problems.add(f"{where}: {path} holds {len(certs)} certificates, and one sha256 pins one certificate: "
                         "put each pinned certificate in a file of its own")
        else:
            read.append((j, entry, certs))
    return read


def _anchors(source: str) -> list[Certificate] | str:
    try:
        return load_anchors(source)
    except ConfigError as exc:
        return "; ".join(exc.problems)


def load_prestage(raw: dict[str, Any], *, problems: list[str], now: datetime,
                  inherited: set[int] | frozenset[int] = frozenset()) -> None:
    """Read and judge every ``servers[i].prestage`` file of the raw config (paths already absolute); record each
    problem; give each item that passed its ``certificates``. ``inherited``: indices of servers whose list came
    from ``defaults.servers.prestage`` (its problems are reported there, once)."""
    policy = raw.get("policy")
    store = policy.get("trust_store", "system") if isinstance(policy, dict) else "system"
    found = _Problems(problems)
    servers = raw.get("servers")
    for index, server in enumerate(servers if isinstance(servers, list) else []):
        if not isinstance(server, dict) or not isinstance(server.get("prestage"), list):
            continue  # not a list: the model says so
        items: list[Any] = server["prestage"]
        home = "defaults.servers.prestage" if index in inherited else f"servers[{index}].prestage"
        name = server["name"] if isinstance(server.get("name"), str) else f"servers[{index}]"
        read = _read_items(items, home, found)
        others = [c for _, _, certs in read for c in certs]
        anchors: list[Certificate] | str | None = None  # read once, when an entry without a pin needs them
        for j, entry, certs in read:
            where, pin = f"{home}[{j}]", _pin_of(entry)
            if entry.get("sha256") is not None and pin is None:
                continue  # a malformed pin: the model reports it
            if pin is None and anchors is None:
                anchors = _anchors(str(server.get("ca_file") or store))
            if pin is None and isinstance(anchors, str):
                found.add(f"{where}: {entry['file']}: cannot be checked against the trust store of {name}: {anchors}")
                continue
            verdicts = [(cert, judge_prestaged(cert, anchors=anchors if isinstance(anchors, list) else [],
                                               intermediates=others, pin=pin, now=now)) for cert in certs]
            refused = [f"{where}: {entry['file']}: {cert.describe()} {verdict.reason}"
                       + (f" (the trust store of {name})" if index in inherited and verdict.trust_store else "")
                       for cert, verdict in verdicts if not verdict.ok]
            for text in refused:
                found.add(text)
            if not refused:
                items[j] = {"file": entry["file"], "sha256": entry.get("sha256"), "certificates": tuple(certs)}
