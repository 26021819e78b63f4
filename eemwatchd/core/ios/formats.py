"""IOS text formats of a certificate: the running-config hex dump (both ways) and the authenticate paste.

Hex dump shape, from the CSR1000V 17.3 capture
(shared transcript show_running-config_crypto_pki_section__gh_ansible_facts_csr1000v_17_3.txt):
two leading spaces, up to 8 words of 8 uppercase hex characters one space apart, every full line
ends with one trailing space, the last line is shorter and has none, then two spaces, a TAB, ``quit``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from eemwatchd.core.certificate import Certificate
from eemwatchd.errors import CertificateError

WORD_CHARS = 8
WORDS_PER_LINE = 8
HEX_END = "  \tquit"
_HEX_LINE = re.compile(r"^[0-9A-Fa-f\s]+$")


def render_hex_lines(der: bytes) -> list[str]:
    """The hex lines IOS shows for ``der`` in running-config, without the closing ``quit`` line."""
    text = der.hex().upper()
    words = [text[i : i + WORD_CHARS] for i in range(0, len(text), WORD_CHARS)]
    lines: list[str] = []
    for i in range(0, len(words), WORDS_PER_LINE):
        chunk = words[i : i + WORDS_PER_LINE]
        line = "  " + " ".join(chunk)
        if len("".join(chunk)) == WORD_CHARS * WORDS_PER_LINE:
            # Full lines carry one trailing space on the device. Inferred: no capture shows a DER
            # whose length is a multiple of 32 bytes; its last (full) line gets the space too.
            line += " "
        lines.append(line)
    return lines


def render_certificate_block(cert: Certificate, *, kind: str = "ca") -> list[str]:
    """` certificate ca <SERIAL>`, the hex lines and `  <TAB>quit`.

    ``kind`` is ``ca``, ``self-signed`` or ``""`` for an identity certificate (no keyword).
    """
    head = f" certificate {kind} {cert.serial_ios}" if kind else f" certificate {cert.serial_ios}"
    return [head, *render_hex_lines(cert.der), HEX_END]


def parse_hex_lines(lines: Iterable[str], *, what: str = "certificate hex") -> bytes:
    """DER from hex lines, tolerant of expanded tabs, missing trailing spaces and CR characters.

    Stops at a ``quit`` line. Raises CertificateError naming the first line that is not hex.
    """
    digits: list[str] = []
    for raw in lines:
        line = raw.replace("\r", "").strip()
        if not line:
            continue
        if line == "quit":
            break
        if not _HEX_LINE.match(line):
            raise CertificateError(f"{what}: not a hex line: {line[:80]!r}")
        digits.append("".join(line.split()))
    text = "".join(digits)
    if not text:
        raise CertificateError(f"{what}: no hex data")
    if len(text) % 2:
        raise CertificateError(f"{what}: odd number of hex digits ({len(text)})")
    return bytes.fromhex(text)
