"""`eemwatchd check-config` as a process: its exit codes and what it prints."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.config_texts import MINIMAL


def test_check_config_command_exit_codes(config_dir: Path) -> None:
    good = config_dir / "good.yaml"
    good.write_text(MINIMAL)
    bad = config_dir / "bad.yaml"
    bad.write_text("servers: [{name: s, host: h, port: 0}]\n")
    run = [sys.executable, "-m", "eemwatchd.cli", "check-config", "-c"]
    ok = subprocess.run([*run, str(good)], capture_output=True, text=True, timeout=30, check=False)
    assert ok.returncode == 0, ok.stderr
    assert "OK (1 servers, 1 routers)" in ok.stdout
    fail = subprocess.run([*run, str(bad)], capture_output=True, text=True, timeout=30, check=False)
    assert fail.returncode == 2
    assert "servers[0].port: must be 1-65535" in fail.stderr
    assert "Traceback" not in fail.stderr
    missing = subprocess.run([*run, str(config_dir / "nope.yaml")], capture_output=True, text=True, timeout=30,
                             check=False)
    assert missing.returncode == 2
    assert "cannot read the file" in missing.stderr
