"""Onboarding in one run (issue 19, sec. 1): onboard waits for the chain's confirmations at the spacing the policy
requires (a countdown on a terminal), within a bound; beside a running daemon, the daemon onboards the router.
Real peers only: the lab routers over SSH, the lab SMTP server counting the mail that arrives."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from eemwatchd.adapters.store import Store
from eemwatchd.config import parse_config
from eemwatchd.daemon.control import ControlServer, control_path_for, onboard_through
from eemwatchd.daemon.status import RouterStatus
from eemwatchd.daemon.status_view import narrate_router
from eemwatchd.errors import EemwatchdError
from eemwatchd.reconcile.onboard import OnboardRequest
from eemwatchd.reconcile.results import RouterResult
from tests.support import onboarding_lab as ob
from tests.support.config_texts import STATE_CONFIG
from tests.support.terminal import ANSI, drain

ROOT = Path(__file__).resolve().parents[2]


@contextlib.asynccontextmanager
async def waiting_lab(tmp_path: Path, *, interval: str, confirmations: int = 2) -> AsyncIterator[ob.OnboardingLab]:
    """test_onboarding's lab on the host's clock, with a server interval whose half is the sightings' spacing."""
    async with ob.make_onboarding_lab(tmp_path, now=datetime.now(UTC), clock=None) as lab:
        text = (lab.tmp / "eemwatchd.yaml").read_text()
        text = text.replace("interval: 1s", f"interval: {interval}").replace(
            "confirmations: 1", f"confirmations: {confirmations}")
        (lab.tmp / "eemwatchd.yaml").write_text(text)
        yield lab


def onboard_args(lab: ob.OnboardingLab, *extra: str) -> list[str]:
    return ["onboard", "-c", str(lab.tmp / "eemwatchd.yaml"), "--router", "bare", "--to", "noc@lab.example",
            "--yes", *extra]


def sightings(lab: ob.OnboardingLab) -> list[int]:
    with Store.open(lab.tmp / "state.db") as store:
        return [o.times_seen for o in store.observations(servers=["lab"])]


async def test_onboard_waits_for_the_confirmations_then_installs_fires_and_saves(tmp_path: Path) -> None:
    async with waiting_lab(tmp_path, interval="3s") as lab:
        started = time.monotonic()
        ran = await ob.run_cli(*onboard_args(lab))
        elapsed = time.monotonic() - started
        assert ran.code == 0, ran.out + ran.err
        # it said why it waits and for how long, then fetched once more, half the interval after the first
        assert "chain is not confirmed yet (seen 1 of 2 times" in ran.err and "--wait-max" in ran.err
        assert sightings(lab) == [2]
        assert elapsed >= 1.5
        assert re.search(r"waited \d+s for the server's chain to be confirmed", ran.out)
        assert "sent 7 EEM configuration line(s)" in ran.out and "result: applied" in ran.out
        assert len(lab.smtp.messages) == 1  # the test mail really arrived
        assert ob.APPLET in (lab.device("bare").state.startup_config() or "")  # and the setup was saved


async def test_the_wait_bound_ends_with_exit_3_and_leaves_the_router_untouched(tmp_path: Path) -> None:
    async with waiting_lab(tmp_path, interval="1h") as lab:
        before = lab.state_of("bare")
        started = time.monotonic()
        ran = await ob.run_cli(*onboard_args(lab, "--wait-max", "2s"))
        assert ran.code == 3, ran.out + ran.err
        assert time.monotonic() - started < 20
        assert "NOT CONFIRMED: server lab's chain was seen 1 of 2 times" in ran.out
        # the next sighting that can count is half an hour away: it says so at once instead of sleeping to the bound
        assert re.search(r"the next sighting that counts is due in 1[78]\d\ds, beyond the wait bound \(2s, "
                         r"--wait-max\); nothing was sent to the router", ran.out.replace("\n", " ")), ran.out
        assert lab.state_of("bare") == before
        assert lab.smtp.messages == []


async def test_no_wait_configures_eem_at_once_and_exits_3(tmp_path: Path) -> None:
    async with waiting_lab(tmp_path, interval="1h") as lab:
        ran = await ob.run_cli(*onboard_args(lab, "--no-wait"))
        assert ran.code == 3, ran.out + ran.err
        assert "not confirmed yet" not in ran.err
        assert "sent 7 EEM configuration line(s)" in ran.out and "not saved" in ran.out
        assert ob.has_applet(lab)
        assert lab.smtp.messages == []


async def test_the_wait_counts_down_on_a_terminal(tmp_path: Path) -> None:
    async with waiting_lab(tmp_path, interval="4s") as lab:
        master, slave = os.openpty()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "eemwatchd.cli", *onboard_args(lab), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=slave,
            env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "160", "TERM": "xterm"})
        os.close(slave)
        try:
            reader = asyncio.create_task(asyncio.to_thread(drain, master))
            out, _ = await asyncio.wait_for(proc.communicate(), timeout=40)
            terminal = ANSI.sub("", (await asyncio.wait_for(reader, timeout=10)).decode(errors="replace"))
        finally:
            os.close(master)
        assert proc.returncode == 0, terminal
        assert re.search(r"waiting for lab's chain: .* seen 1 of 2, next fetch in \ds at most", terminal), terminal
        assert b"result: applied" in out


# --- beside a running daemon ----------------------------------------------------------------------------------


async def test_the_live_labs_onboarding_demo_works_as_printed(tmp_path: Path) -> None:
    lab = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "eemwatchd.cli", "lab", "--bare", "1", "--routers", "2", "--rotate-every", "0",
        "--dir", str(tmp_path / "lab"), stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert lab.stdout is not None
    said: list[str] = []
    try:
        command: list[str] = []
        async with asyncio.timeout(30):
            while not any("(first pass done)" in line for line in said):
                line = (await lab.stdout.readline()).decode()
                assert line, "\n".join(said)
                said.append(line.rstrip("\n"))
                found = re.search(r"watch it onboarded with: (eemwatchd onboard .*)$", line)
                if found:
                    command = found.group(1).split()
        assert command, "\n".join(said)
        ran = await ob.run_cli(*command[1:])  # exactly the printed command, while the lab's daemon runs
        assert ran.code == 0, ran.out + ran.err
        assert "the eemwatchd daemon (pid " in ran.err and "it onboards router lab-rtr-02" in ran.err
        assert "sent 7 EEM configuration line(s)" in ran.out and "result: applied" in ran.out
        async with asyncio.timeout(15):
            while not any("lab-rtr-02: onboarding done: in sync, proven by a test mail" in s for s in said):
                line = (await lab.stdout.readline()).decode()
                assert line, "\n".join(said)
                said.append(line.rstrip("\n"))
    finally:
        if lab.returncode is None:
            lab.send_signal(signal.SIGINT)
        with contextlib.suppress(TimeoutError):
            rest, _ = await asyncio.wait_for(lab.communicate(), timeout=20)
            said += rest.decode().splitlines()
        if lab.returncode is None:
            lab.kill()
            await lab.wait()
    text = "\n".join(said)
    # before it was onboarded, the daemon reported the bare router once, with the command, and never fired it
    not_onboarded = [s for s in said if "router lab-rtr-02: not-onboarded:" in s]
    assert len(not_onboarded) == 1 and "eemwatchd onboard -c" in not_onboarded[0], text
    before = text.split("onboarding for `eemwatchd onboard`")[0]
    assert "router lab-rtr-02: test-fire" not in before
    assert lab.returncode == 0, text


async def test_the_control_socket_refuses_what_it_cannot_do(tmp_path: Path) -> None:
    class Host:  # a daemon whose only router is r1 (what _refusal reads of it)
        config = parse_config(STATE_CONFIG, base=tmp_path).config
        store = None
        reconciler = None

    path = control_path_for(tmp_path / ("x" * 90) / "state.db")  # longer than a socket address may be
    path.parent.mkdir()
    server = await ControlServer.start(path, Host(), after=lambda _name: None)
    try:
        assert path.stat().st_mode & 0o777 == 0o600
        with pytest.raises(EemwatchdError, match="the daemon refused: router 'r1' is not one of this daemon's routers"):
            await onboard_through(path, OnboardRequest(router="r1"), show_secrets=False, on_wait=lambda _s: None)
        reader, writer = await asyncio.open_unix_connection(f"/proc/self/fd/{os.open(path.parent, os.O_RDONLY)}"
                                                            f"/{path.name}")
        writer.write(b'{"op": "reboot"}\n')
        answer = await asyncio.wait_for(reader.readline(), timeout=5)
        writer.close()
        assert b'"refused"' in answer and b"not a valid request" in answer
    finally:
        await server.close()
    assert not path.exists()


def test_a_state_that_is_not_an_error_is_narrated_once() -> None:
    from eemwatchd.core.plan import Report, RouterPlan

    plan = RouterPlan(actions=(), reports=(Report("not-onboarded", None, "applet A is not configured; nothing is "
                                                                         "changed or fired"),),
                      unprovable="applet A is not configured")
    result = RouterResult("r9", reachable=True, plan=plan)
    first = narrate_router(result, previous=None, config="/etc/eemwatchd/eemwatchd.yaml")
    assert first == ["router r9: not-onboarded: applet A is not configured; nothing is changed or fired; onboard it "
                     "with: `eemwatchd onboard -c /etc/eemwatchd/eemwatchd.yaml --router r9 --to ADDRESS --yes`"]
    seen = RouterStatus(name="r9", host="h", up=True, in_sync=False, state="not-onboarded",
                        detail="applet A is not configured; nothing is changed or fired",
                        last_check=datetime(2026, 3, 1, tzinfo=UTC))
    assert narrate_router(result, previous=seen) == []
