"""`eemwatchd lab`, the README's main command: the whole rotation scenario over real SSH and SMTP on 127.0.0.1."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.timeout(120)
def test_lab_rotation_keeps_every_router_mailing(tmp_path: Path) -> None:
    state = tmp_path / "lab"
    done = subprocess.run(
        [sys.executable, "-m", "eemwatchd.cli", "lab", "--once", "--routers", "2", "--state-dir", str(state)],
        capture_output=True, text=True, timeout=110, check=False,
    )
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    # before eemwatchd: no router can mail; after every step: all of them can
    assert "0/2 mails delivered" in out
    for step in ("1. eemwatchd installs", "2. The provider rotates its intermediate", "3. The provider moves",
                 "4. Old chains are no longer served", "5. A second apply changes nothing"):
        assert f"{step}" in out
    assert out.count("2/2 mails delivered") == 5
    assert "5. A second apply changes nothing: 0 change(s), 2/2 routers mailed" in out
    assert "retire EEMW-" in out
    assert ": FAILED" not in out
    assert ": ERROR" not in out
    # the routers' saved configs hold our trustpoints in IOS's own format
    startup = (state / "routers" / "lab-rtr-01").glob("startup-config*")
    text = "".join(p.read_text() for p in startup)
    assert "crypto pki trustpoint EEMW-" in text
    assert "  \tquit" in text
    # the lab's secrets never reach its output or eemwatchd's state store
    router_password = (state / "router.password").read_text().strip()
    mail_password = text.split("_email_server alerts:", 1)[1].split("@", 1)[0]
    db = (state / "state.db").read_bytes()
    for secret in (router_password, mail_password):
        assert len(secret) >= 12
        assert secret not in out
        assert secret not in done.stderr
        assert secret.encode() not in db
