"""Issue 16 finding 3: one writer per router, sharded or not. A writer's claim (its shard's routers, or the routers
it names) is checked against every live writer of the same fleet before it takes its lock: an `apply` beside a
running `shard: "0/2"` daemon, with the same config or without the key, no longer acts on the daemon's routers."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from eemwatchd.adapters.lock import StateLock
from eemwatchd.core.shard import Claim, Shard
from eemwatchd.errors import StateLocked

FLEET = tuple(f"edge-{i:02d}" for i in range(12))
ROOT = Path(__file__).resolve().parent.parent


def owned_by(shard: Shard) -> list[str]:
    return [r for r in FLEET if shard.owns(r)]


def writer(tmp_path: Path, shard: Shard | None, routers: list[str] | None = None, purpose: str = "apply") -> StateLock:
    base = tmp_path / "state.db"
    state = base if shard is None else base.with_name(f"state.{shard.suffix}.db")
    return StateLock(state, purpose=purpose, claim=Claim(FLEET, shard, frozenset(routers) if routers else None),
                     base_state_path=base, clock=lambda: datetime(2026, 3, 1, 12, 0, tzinfo=UTC))


S0, S1 = Shard(0, 2), Shard(1, 2)


@pytest.mark.parametrize(
    ("holder", "contender", "conflict"),
    [
        pytest.param((S0, None), (None, None), True, id="unsharded-apply-beside-shard-daemon"),
        pytest.param((S0, None), (S0, None), True, id="same-shard"),
        pytest.param((S0, None), (S1, None), False, id="other-shard"),
        pytest.param((S0, None), (None, "S1-router"), False, id="apply-router-of-the-other-shard"),
        pytest.param((S0, None), (None, "S0-router"), True, id="apply-router-of-the-daemons-shard"),
        pytest.param((S0, None), (Shard(0, 3), None), True, id="another-shard-count-overlaps"),
        pytest.param((None, "S0-router"), (S0, None), True, id="daemon-starting-beside-apply-router"),
        pytest.param((None, "S1-router"), (S0, None), False, id="daemon-starting-beside-apply-other-router"),
    ],
)
def test_a_writer_never_claims_a_router_another_live_writer_owns(
    tmp_path: Path, holder: tuple[Shard | None, str | None], contender: tuple[Shard | None, str | None],
    conflict: bool,
) -> None:
    def routers(spec: str | None) -> list[str] | None:
        return None if spec is None else [owned_by(S0 if spec == "S0-router" else S1)[0]]

    held = writer(tmp_path, holder[0], routers(holder[1]), purpose="daemon")
    held.acquire()
    try:
        second = writer(tmp_path, contender[0], routers(contender[1]))
        if conflict:
            with pytest.raises(StateLocked) as info:
                second.acquire()
            assert info.value.exit_code == 75 and info.value.pid == os.getpid()
            if holder[0] is not None and contender[0] != holder[0]:
                assert f"it runs shard {holder[0]} and owns router(s) this would change" in str(info.value)
        else:
            second.acquire()
            second.release()
    finally:
        held.release()


def test_a_dead_writers_claim_holds_nothing(tmp_path: Path) -> None:
    held = writer(tmp_path, S0, purpose="daemon")
    held.acquire()
    held.release()  # as the kernel does when the process dies
    apply = writer(tmp_path, None)
    apply.acquire()
    apply.release()


def test_apply_beside_a_sharded_daemon_exits_75_with_the_same_config_or_without_the_key(tmp_path: Path) -> None:
    """Real processes: the daemon's lock is held by this test process for shard 0/2 of the config's routers; the CLI
    runs in a child with the config as written (no shard key), then with `shard: "0/2"`."""
    routers = "\n".join(f"  - {{name: {name}, host: 127.0.0.1, port: {2200 + i}}}" for i, name in enumerate(FLEET))
    body = f"""state_path: state.db
servers:
  - {{name: smtp, host: 127.0.0.1, port: 2525, interval: 10m, ca_file: anchors.pem}}
defaults:
  routers: {{username: eemwatchd, password: "${{ROUTER_PW}}", known_hosts: known_hosts, applet: MAIL,
            servers: [smtp]}}
routers:
{routers}
"""
    (tmp_path / "anchors.pem").write_text("")
    (tmp_path / "known_hosts").write_text("")
    daemon = StateLock(tmp_path / "state.0-of-2.db", purpose="daemon",
                       claim=Claim(FLEET, S0), base_state_path=tmp_path / "state.db")
    daemon.acquire()
    try:
        for shard_key in ("", 'shard: "0/2"\n'):
            config = tmp_path / "eemwatchd.yaml"
            config.write_text(body + shard_key)
            proc = subprocess.run([sys.executable, "-m", "eemwatchd.cli", "apply", "--yes", "-c", str(config)],
                                  capture_output=True, text=True, timeout=50, check=False, cwd=tmp_path,
                                  env={**os.environ, "ROUTER_PW": "not-a-secret", "PYTHONPATH": str(ROOT)})
            assert proc.returncode == 75, proc.stderr
            assert f"another eemwatchd (pid {os.getpid()}" in proc.stderr and "it is the daemon" in proc.stderr
            assert "Traceback" not in proc.stderr
    finally:
        daemon.release()
