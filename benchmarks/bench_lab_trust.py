"""The lab router's chain verdict per mail: the lab's own rule vs the product's and vs `openssl verify`.

Run: .venv/bin/python benchmarks/bench_lab_trust.py [--chains 2000] [--openssl 30]

The lab router judges the chain of every mail it sends (tests, soak runs of thousands of mails) with
`eemwatchd_lab.router.trust.validate_chain` (cryptography's X.509 path validation, one question per sent
certificate). Measured on a Gmail-shaped chain (leaf, intermediate, cross-signed root; the cross-signer and
the self-signed twin installed), per chain, in microseconds (median of 7 batches):
- lab strict (the default) and lab lenient (one question, for the leaf);
- the product's `validate_as_ios` on the same input, the baseline (a pure-Python walk with signature checks);
- `openssl verify -partial_chain`, one process per sent certificate: what a subprocess-based oracle costs.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from eemwatchd.core.ios.trust import validate_as_ios
from eemwatchd_lab.pki import GmailShapedPki
from eemwatchd_lab.router.trust import validate_chain

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def _per_call_us(call: Callable[[], object], count: int, batches: int = 7) -> float:
    samples = []
    for _ in range(batches):
        start = time.perf_counter()
        for _ in range(count):
            call()
        samples.append((time.perf_counter() - start) / count * 1e6)
    return statistics.median(samples)


def _openssl_chain(pki: GmailShapedPki, workdir: Path) -> None:
    (workdir / "trusted.pem").write_text(pki.old_root.cert.pem + pki.new_root.cert.pem, encoding="ascii")
    for index, cert in enumerate(pki.served):
        (workdir / "target.pem").write_text(cert.pem, encoding="ascii")
        others = [c for i, c in enumerate(pki.served) if i != index]
        (workdir / "untrusted.pem").write_text("".join(c.pem for c in others), encoding="ascii")
        subprocess.run(
            ["openssl", "verify", "-no-CApath", "-no-CAstore", "-partial_chain", "-attime",
             str(int(NOW.timestamp())), "-CAfile", str(workdir / "trusted.pem"),
             "-untrusted", str(workdir / "untrusted.pem"), str(workdir / "target.pem")],
            capture_output=True, check=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chains", type=int, default=2000, help="chains per batch for the in-process rules")
    parser.add_argument("--openssl", type=int, default=30, help="chains per batch for openssl verify")
    args = parser.parse_args()
    pki = GmailShapedPki.create(now=NOW)
    trustpoints = {"CA-GTS-R1": [pki.new_root.cert], "CA-GLOBALSIGN": [pki.old_root.cert]}
    assert validate_chain(pki.served, trustpoints, NOW).ok
    assert validate_as_ios(pki.served, trustpoints, NOW).ok
    rows = [
        ("lab strict", _per_call_us(lambda: validate_chain(pki.served, trustpoints, NOW), args.chains)),
        ("lab lenient", _per_call_us(lambda: validate_chain(pki.served, trustpoints, NOW, lenient=True), args.chains)),
        ("product strict", _per_call_us(lambda: validate_as_ios(pki.served, trustpoints, NOW), args.chains)),
    ]
    if shutil.which("openssl"):
        with tempfile.TemporaryDirectory() as tmp:
            rows.append(("openssl verify x3", _per_call_us(lambda: _openssl_chain(pki, Path(tmp)), args.openssl, 3)))
    baseline = rows[2][1]
    print(f"{'rule':<20} {'us/chain':>10} {'vs product':>11}")
    for name, micros in rows:
        print(f"{name:<20} {micros:>10.0f} {micros / baseline:>10.2f}x")


if __name__ == "__main__":
    main()
