"""Issue 8 against the lab routers and the lab SMTP server: success only from evidence, refusals are errors,
the audit explains the router after any interruption, unsaved and unproven states, one writer, bad input,
timeouts, words and exit codes, and the router's mail password kept out of everything."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from eemwatchd.adapters.router import RouterSession, RouterTimeouts
from eemwatchd.config import RouterConfig
from eemwatchd.core.certificate import Certificate
from eemwatchd.errors import CommandFailed, RouterUnreachable
from eemwatchd.reconcile import Reason, Reconciler, RouterSessionLike, target_from_config
from eemwatchd_lab.router import READ_ONLY_COMMANDS, User
from tests.support.reconcile_lab import (
    APPLET,
    ROUTER_PASSWORD,
    SMTP_PASSWORD,
    ReconcileLab,
    applet_config,
    cli,
    fast_connector,
)


def read_only(lab: ReconcileLab, name: str) -> None:
    """AAA command authorization: the router's user may only run show and terminal commands."""
    lab.fleet[name].spec.users = (User("admin", ROUTER_PASSWORD, allowed_commands=READ_ONLY_COMMANDS),)


async def confirm_chain(lab: ReconcileLab) -> None:
    """Two sightings of the server's chain, spaced like the daemon would, without touching a router."""
    service = Reconciler(lab.config, lab.store, connect=fast_connector, clock=lab.clock)
    for _ in range(2):
        await service.observe()
        lab.clock.advance(timedelta(minutes=10))


def running(lab: ReconcileLab, name: str) -> dict[str, list[Certificate]]:
    return lab.trustpoints(name)


def startup(lab: ReconcileLab, name: str) -> str:
    return lab.fleet[name].state.startup_config() or ""


# --- sec. 2: AAA refusals anywhere are errors --------------------------------------------------------------


async def test_a_read_only_user_can_plan_but_apply_stops_before_changing_anything(lab: ReconcileLab) -> None:
    read_only(lab, "r1")
    await confirm_chain(lab)
    before = running(lab, "r1")
    planned = await lab.run(apply=False, router="r1")
    [plan] = planned.routers
    assert plan.error is None and plan.plan is not None and len(plan.plan.adds) == 3
    report = await lab.run(router="r1")
    [result] = report.routers
    assert result.reason is Reason.REFUSED
    assert "the router refused 'configure terminal': Command authorization failed." in (result.error or "")
    assert running(lab, "r1") == before
    assert [s for s in result.steps if s.kind == "add" and s.ok] == []
    assert [e.action for e in lab.store.audit(router="r1")] == ["add-failed"]


async def test_a_refused_show_running_config_is_an_error_naming_the_command_never_an_empty_router(
    lab: ReconcileLab,
) -> None:
    lab.fleet["r1"].spec.users = (User("admin", ROUTER_PASSWORD, allowed_commands=("terminal",)),)
    report = await lab.run(apply=False, router="r1")
    [result] = report.routers
    assert result.reason is Reason.REFUSED and result.plan is None and not result.in_sync
    assert "the router refused 'show running-config': Command authorization failed." in (result.error or "")


async def test_a_refused_test_fire_is_a_failure_in_the_audit_with_the_routers_words(lab: ReconcileLab) -> None:
    lab.fleet["r1"].spec.users = (
        User("admin", ROUTER_PASSWORD, allowed_commands=(*READ_ONLY_COMMANDS, "configure", "crypto", "end",
                                                          "enrollment", "revocation-check", "chain-validation",
                                                          "fingerprint", "no", "exit", "send log", "write")),)
    await confirm_chain(lab)
    report = await lab.run(router="r1")
    [result] = report.routers
    assert result.reason is Reason.TESTFIRE_FAILED, result.error  # not a success: the run was refused
    fire = lab.store.audit(router="r1")[-1]
    assert fire.action == "test-fire" and (fire.test_fire or "").startswith("failed")
    assert "Command authorization failed." in (fire.evidence or "")
    assert "save" not in [e.action for e in lab.store.audit(router="r1")]  # nothing unproven saved
    assert "EEMW-" not in startup(lab, "r1")


# --- sec. 3: the audit and the saved config tell the truth after any interruption ---------------------------


@contextlib.asynccontextmanager
async def read_back_drops(router: RouterConfig) -> AsyncIterator[RouterSessionLike]:
    """The real session, but the connection "drops" during the read-back after the first install."""

    class Dropping:
        def __init__(self, inner: RouterSession) -> None:
            self.inner = inner
            self.installs = 0

        def __getattr__(self, name: str) -> object:
            return getattr(self.inner, name)

        async def install_certificate(self, trustpoint: str, certificate: Certificate) -> None:
            await self.inner.install_certificate(trustpoint, certificate)  # the router holds it now
            self.installs += 1
            raise RouterUnreachable(router.name, "connection lost during show running-config")

    target = dataclasses.replace(target_from_config(router), timeouts=fast_target_timeouts())
    async with RouterSession(target) as session:
        yield Dropping(session)  # type: ignore[misc]


def fast_target_timeouts() -> RouterTimeouts:
    return RouterTimeouts(connect=5.0, command=10.0, poll_interval=0.2, fire_grace=2.0)


async def test_an_install_whose_read_back_dropped_gets_an_observed_add_and_a_test_fire(lab: ReconcileLab) -> None:
    await confirm_chain(lab)
    broken = Reconciler(lab.config, lab.store, connect=read_back_drops, clock=lab.clock)
    [result] = (await broken.run(apply=True, router="r1")).routers
    assert result.reason is Reason.UNREACHABLE
    assert [e.action for e in lab.store.audit(router="r1")] == ["add-failed"]
    held = [n for n in running(lab, "r1") if n.startswith("EEMW-")]
    assert len(held) == 1  # really installed, although the audit says the add failed

    lab.clock.advance(timedelta(minutes=10))
    [plan] = (await lab.run(apply=False, router="r1")).routers
    assert [(s.kind, s.trustpoint) for s in plan.steps] == [("observed", held[0])]
    [again] = (await lab.run(router="r1")).routers
    actions = [e.action for e in lab.store.audit(router="r1")]
    assert actions[:2] == ["add-failed", "observed-add"]
    assert actions.count("observed-add") == 1  # the reader (plan) wrote nothing; the writer wrote it once
    assert again.reason is Reason.APPLIED and actions[-2:] == ["test-fire", "save"]


async def test_a_trustpoint_removed_without_its_retire_row_gets_an_observed_retire(lab: ReconcileLab) -> None:
    await confirm_chain(lab)
    [first] = (await lab.run(router="r1")).routers
    assert first.reason is Reason.APPLIED
    gone = next(n for n in running(lab, "r1") if n.startswith("EEMW-"))
    del lab.fleet["r1"].state.trustpoints[gone]  # as a retire whose session dropped before its audit row
    lab.clock.advance(timedelta(minutes=10))
    [result] = (await lab.run(router="r1")).routers
    rows = [(e.action, e.trustpoint) for e in lab.store.audit(router="r1")]
    assert ("observed-retire", gone) in rows
    assert result.reason is Reason.APPLIED  # put back (an add), proven, saved


async def test_a_dropped_write_memory_is_unsaved_and_the_next_apply_test_fires_then_saves(lab: ReconcileLab) -> None:
    await confirm_chain(lab)
    lab.fleet["r1"].spec.faults.drop_at_command = "write memory"
    [first] = (await lab.run(router="r1")).routers
    assert first.reason is not Reason.APPLIED and not first.in_sync
    assert "EEMW-" not in startup(lab, "r1")
    lab.fleet["r1"].spec.faults.drop_at_command = None
    lab.clock.advance(timedelta(minutes=10))
    [plan] = (await lab.run(apply=False, router="r1")).routers
    assert plan.reason is Reason.UNSAVED and plan.plan is not None and plan.plan.unsaved
    [second] = (await lab.run(router="r1")).routers
    assert second.reason is Reason.APPLIED
    assert [s.kind for s in second.steps] == ["test-fire", "save"]
    assert "EEMW-" in startup(lab, "r1")
    [third] = (await lab.run(router="r1")).routers
    assert third.reason is Reason.IN_SYNC and third.steps == []


async def test_trust_never_proven_by_a_test_fire_is_unproven_until_one_succeeds(lab: ReconcileLab) -> None:
    await confirm_chain(lab)
    lab.fleet["r1"].state.apply_config(["no event manager applet " + APPLET,
                                       f"event manager applet {APPLET}", " event none maxrun 20",
                                       ' action 0010 mail server "$_email_server" to "a@b" from "c@d" subject "s" '
                                       'body "b" secure tls port 1'])  # nothing listens on port 1: mail fails
    [first] = (await lab.run(router="r1")).routers
    assert first.reason is Reason.TESTFIRE_FAILED and len(first.plan.adds if first.plan else ()) == 3
    assert "EEMW-" not in startup(lab, "r1")  # added, not proven: not saved
    lab.fleet["r1"].state.apply_config(applet_config(lab.smtp.port))
    lab.clock.advance(timedelta(minutes=10))
    [plan] = (await lab.run(apply=False, router="r1")).routers
    assert plan.reason is Reason.UNPROVEN and plan.plan is not None and plan.plan.actions == ()
    [second] = (await lab.run(router="r1")).routers
    assert second.reason is Reason.APPLIED and [s.kind for s in second.steps] == ["test-fire", "save"]
    assert second.steps[0].evidence and " success " in second.steps[0].evidence


# --- sec. 3: signals during apply ---------------------------------------------------------------------------


async def test_sigterm_during_apply_finishes_the_step_saves_nothing_unproven_and_exits_143(lab: ReconcileLab) -> None:
    await confirm_chain(lab)
    for device in lab.fleet:
        device.spec.faults.output_delay = 0.05  # a slow router: apply takes seconds
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "eemwatchd.cli", "apply", "--yes", "-c", str(lab.tmp / "eemwatchd.yaml"),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        for _ in range(400):  # until the first certificate is on a router (bounded: 40 s)
            if any(n.startswith("EEMW-") for d in ("r1", "r2") for n in running(lab, d)):
                break
            await asyncio.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    finally:
        if proc.returncode is None:
            proc.kill()
    assert proc.returncode == 143, err.decode()
    text = err.decode()
    assert "SIGTERM received: finishing the step under way" in text
    assert "router r1: interrupted" in text or "router r2: interrupted" in text
    for name in ("r1", "r2"):
        assert "EEMW-" not in startup(lab, name)  # nothing that was not test-fired was saved
    assert ROUTER_PASSWORD not in text and SMTP_PASSWORD not in text + out.decode()
    # the next run finds the changes unproven/unsaved, proves and saves them
    for device in lab.fleet:
        device.spec.faults.output_delay = 0.0
    lab.clock.advance(timedelta(minutes=10))
    report = await lab.run()
    assert all(r.reason is Reason.APPLIED for r in report.routers), [r.error for r in report.routers]
    assert all("EEMW-" in startup(lab, n) for n in ("r1", "r2"))


# --- sec. 4: one writer -------------------------------------------------------------------------------------


async def test_a_second_apply_exits_75_naming_the_holder(lab: ReconcileLab) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom eemwatchd.adapters.lock import StateLock\n"
         "lock = StateLock(sys.argv[1], purpose='apply'); lock.acquire(); print('held', flush=True)\n"
         "time.sleep(30)", str(lab.config.state_path)], stdout=subprocess.PIPE)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"held\n"
        code, _, err = await cli(lab, "apply", "--yes")
        assert code == 75
        assert f"another eemwatchd (pid {holder.pid}, started " in err and "is applying; try again later" in err
        code, _, _ = await cli(lab, "plan")  # a reader needs no lock
        assert code in (0, 1)
    finally:
        holder.kill()
        holder.wait(timeout=10)
        if holder.stdout is not None:
            holder.stdout.close()
    assert running(lab, "r1") == lab.unmanaged("r1")


# --- sec. 5: bad input never reaches a router ---------------------------------------------------------------


async def test_a_name_that_is_not_one_ios_token_is_never_sent(lab: ReconcileLab) -> None:
    target = dataclasses.replace(target_from_config(lab.config.router("r1")), timeouts=fast_target_timeouts())
    hostname = lab.fleet["r1"].state.hostname
    async with RouterSession(target) as session:
        with pytest.raises(CommandFailed, match="nothing was sent"):
            await session.retire_trustpoint("EEMW-X\nhostname PWNED")
        with pytest.raises(CommandFailed, match="nothing was sent"):
            await session.fire_applet("X\nconfigure terminal", maxrun=1.0)
        with pytest.raises(CommandFailed, match="nothing was sent"):
            await session.configure(["hostname A\nhostname B"])
    assert lab.fleet["r1"].state.hostname == hostname


async def test_timeouts_total_is_enforced_per_router(lab: ReconcileLab) -> None:
    await confirm_chain(lab)
    lab.fleet["r1"].spec.faults.output_delay = 0.4
    r1 = lab.config.router("r1")
    slow = r1.model_copy(update={"timeouts": r1.timeouts.model_copy(update={"total": 3.0, "step": 2.0})})
    config = lab.config.model_copy(update={"routers": (slow, lab.config.router("r2"))})
    service = Reconciler(config, lab.store, connect=fast_connector, clock=lab.clock)
    started = asyncio.get_running_loop().time()
    report = await service.run(apply=True, observe=False)
    elapsed = asyncio.get_running_loop().time() - started
    r1, r2 = report.routers
    assert r1.reason is Reason.TIMEOUT and "timeouts.total (3s)" in (r1.error or "")
    assert r2.reason is Reason.APPLIED  # the other router is not held up
    assert elapsed < 3.0 + 2.0 + 15.0


# --- sec. 8: words and exit codes ---------------------------------------------------------------------------


async def test_waiting_is_not_applied_and_an_unverified_chain_exits_non_zero(lab: ReconcileLab) -> None:
    config_file = lab.tmp / "eemwatchd.yaml"
    config_file.write_text(config_file.read_text().replace("interval: 10m", "interval: 1s"))
    code, out, _ = await cli(lab, "apply", "--yes", "--json")
    doc = json.loads(out)
    assert code == 3  # awaiting confirmation: not in sync, not a failure (the apply timer unit counts it a success)
    assert [r["result"] for r in doc["routers"]] == ["unconfirmed", "unconfirmed"]
    intruder_chain(lab)
    code, out, _ = await cli(lab, "plan")
    assert code == 1 and "NOT verified" in out


def intruder_chain(lab: ReconcileLab) -> None:
    from eemwatchd_lab.pki import GmailShapedPki

    intruder = GmailShapedPki.create(prefix="Intruder")
    lab.smtp.set_chain(intruder.served, intruder.leaf.key)


async def test_a_router_error_is_printed_once_and_a_parse_error_is_not_unreachable(lab: ReconcileLab) -> None:
    lab.fleet["r2"].spec.faults.command_errors = {
        "show running-config": "crypto pki certificate chain EEMW-BAD\n certificate ca 01\n  ZZZZZZZZ\n  \tquit"}
    code, out, err = await cli(lab, "plan")
    assert code == 1
    line = next(ln for ln in (out + err).splitlines() if "router r2" in ln)
    assert "parse-error" in line and "unreachable" not in line
    assert (out + err).count("ZZZZZZZZ") == 1 and (out + err).count("router r2") == 1


# --- sec. 6: the router's own mail password ------------------------------------------------------------------


async def test_the_mail_password_a_router_logs_never_reaches_the_store_or_the_output(lab: ReconcileLab) -> None:
    for device in lab.fleet:  # the applet logs the server string, password and all
        device.state.apply_config([*applet_config(lab.smtp.port)[:-1],
                                   ' action 0020 syslog msg "sent via $_email_server"'])
    await confirm_chain(lab)
    config_file = lab.tmp / "eemwatchd.yaml"
    code, out, err = await cli(lab, "apply", "--yes", "--json")
    assert code == 0, err
    assert "sent via" in out  # the evidence is there ...
    assert SMTP_PASSWORD not in out + err  # ... without the password
    lab.store.close()
    for path in config_file.parent.glob("state.db*"):
        assert SMTP_PASSWORD.encode() not in path.read_bytes()
    with sqlite3.connect(config_file.parent / "state.db") as db:
        assert all(SMTP_PASSWORD not in str(row) for row in db.execute("SELECT * FROM audit"))
    assert os.stat(config_file.parent / "state.db").st_mode & 0o777 == 0o600



async def test_a_router_error_quoting_a_mail_password_is_scrubbed(lab: ReconcileLab) -> None:
    leak = "alerts:Leaky-pw-77@smtp.example"
    lab.fleet["r2"].spec.faults.command_errors = {
        "show running-config": f"crypto pki certificate chain EEMW-BAD\n certificate ca 01\n  {leak}\n  \tquit"}
    code, out, err = await cli(lab, "plan", "--json")
    assert code == 1
    assert "Leaky-pw-77" not in out + err
    assert "parse-error" in out
