"""Quiet, exact output (issue 19, sec. 3): the words, levels, exit codes and JSON an operator reads."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import re
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from eemwatchd.adapters.store import Store
from eemwatchd.cli import COMMANDS, build_parser
from eemwatchd.commands.report import print_report
from eemwatchd.config import parse_config
from eemwatchd.core.plan import Action, Report, RouterPlan
from eemwatchd.core.reason import Reason
from eemwatchd.errors import StateLocked
from eemwatchd.logformat import configure_logging
from eemwatchd.reconcile import (
    AddressOutcome,
    AppliedStep,
    Reconciler,
    RouterResult,
    RunReport,
    ServerOutcome,
    StepKind,
    build_alerts,
)
from eemwatchd.reconcile.results import summarize
from tests.support.reconcile_lab import ReconcileLab, cli

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def eemwatchd(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "eemwatchd.cli", *args], capture_output=True, text=True,
                          timeout=50, check=False, cwd=cwd,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


# --- scrapli's CRITICAL for an ordinary failed login -------------------------------------------------------


@pytest.mark.parametrize(("verbosity", "shown"), [(0, []), (1, ["INFO"])], ids=["quiet", "-v"])
def test_a_wrapped_librarys_critical_is_shown_at_our_level(verbosity: int, shown: list[str]) -> None:
    out = io.StringIO()
    configure_logging(verbosity=verbosity, fmt="json", stream=out, env={})
    logging.getLogger("scrapli.transport").critical("all authentication methods failed")
    logging.getLogger("asyncssh").error("connection lost")
    logging.getLogger("eemwatchd.test").error("ours stays an error")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [r["level"] for r in lines if r["logger"] == "scrapli.transport"] == shown
    assert [r["level"] for r in lines if r["logger"] == "eemwatchd.test"] == ["ERROR"]


def test_a_journal_line_of_a_wrapped_library_is_never_crit(tmp_path: Path) -> None:
    stream = (tmp_path / "journal").open("w")
    st = os.fstat(stream.fileno())
    configure_logging(verbosity=1, fmt="text", stream=stream, env={"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
    try:
        logging.getLogger("scrapli.transport").critical("all authentication methods failed")
    finally:
        configure_logging(verbosity=0, fmt="text", stream=io.StringIO(), env={})  # not a closed file for others
        stream.close()
    assert (tmp_path / "journal").read_text().startswith("<6>INFO scrapli.transport: ")


async def test_a_failed_login_is_reported_once_by_us_and_never_as_critical(lab: ReconcileLab) -> None:
    (lab.tmp / "router.pw").write_text("not-the-password\n")
    code, out, err = await cli(lab, "plan", "--router", "r1")
    assert code == 1
    assert "CRITICAL" not in err and "scrapli" not in err, err
    assert [line for line in out.splitlines() if line.startswith("router r1")] == [
        line for line in out.splitlines() if line.startswith("router r1: auth-failed: ")]
    assert out.count("router r1") == 1, out


# --- the timeout that fired -------------------------------------------------------------------------------


async def test_a_port_that_never_sends_a_banner_names_the_connect_timeout(tmp_path: Path) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)  # accepts TCP (the kernel does), never says a word
    (tmp_path / "known_hosts").write_text("")
    try:
        config = parse_config(f"""
state_path: state.db
servers: [{{name: s, host: 127.0.0.1, port: 2525}}]
routers:
  - name: r1
    host: 127.0.0.1
    port: {listener.getsockname()[1]}
    username: u
    password: ${{ROUTER_PW}}
    known_hosts: known_hosts
    applet: A
    servers: [s]
    timeouts: {{connect: 1s, step: 5s, total: 2m}}
""", base=tmp_path, strict_windows=False).config
    except Exception:
        listener.close()
        raise
    try:
        with Store.open(config.state_path) as store:
            started = asyncio.get_running_loop().time()
            result = await Reconciler(config, store).reconcile_router(config.routers[0], apply=False)
            elapsed = asyncio.get_running_loop().time() - started
    finally:
        listener.close()
    assert result.reason is Reason.TIMEOUT
    assert result.error is not None and "timed out during connect" in result.error, result.error
    assert "timeouts.total" not in result.error
    assert elapsed < 10


@pytest.fixture(autouse=True)
def _router_pw(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROUTER_PW", "not-a-secret")


# --- the lock message is the one the README quotes, whoever holds the lock -----------------------------------


def _quoted_lock_message() -> re.Pattern[str]:
    readme = (ROOT / "README.md").read_text()
    quoted = re.search(r"`(another eemwatchd \(pid N, started T\) is applying; try again later)`", readme)
    assert quoted is not None, "the README quotes the lock message"
    return re.compile("^" + re.escape(quoted.group(1)).replace("N", r"\d+").replace("T", r"\S+") + r"( \(.*\))?$")


@pytest.mark.parametrize("purpose", ["daemon", "apply", "onboard", "lab", None])
def test_the_lock_message_is_the_one_the_readme_quotes(purpose: str | None) -> None:
    message = _quoted_lock_message()
    held = StateLocked("/x/state.db.lock", pid=4242, started="2026-03-01T11:58:00+00:00", purpose=purpose)
    assert message.match(str(held)), str(held)
    unknown = StateLocked("/x/state.db.lock", pid=None, started=None, purpose=None, detail="it has not written")
    assert str(unknown).startswith("another eemwatchd is applying; try again later (")


# --- check-config --------------------------------------------------------------------------------------------

DEFAULTS_TYPO = """\
servers:
  - name: s
    host: smtp.example.net
defaults:
  routers:
    username: u
    password: ${ROUTER_PW_UNSET_FOR_TEST}
    knownhosts: known_hosts
    applet: A
    servers: [s]
routers:
  - {name: r1, host: 192.0.2.1}
  - {name: r2, host: 192.0.2.2}
  - {name: r3, host: 192.0.2.3}
"""


def test_a_typo_and_an_unset_variable_in_defaults_are_one_line_each(tmp_path: Path) -> None:
    (tmp_path / "known_hosts").write_text("")
    (tmp_path / "c.yaml").write_text(DEFAULTS_TYPO)
    done = eemwatchd("check-config", "-c", "c.yaml", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "c.yaml: 2 problems",
        "  defaults.routers.knownhosts: is not a known key (did you mean known_hosts? check the spelling; see "
        "config/eemwatchd.example.yaml)",
        "  defaults.routers.password: environment variable ROUTER_PW_UNSET_FOR_TEST is not set; export it or use "
        "password_file:",
    ]


def test_an_entrys_own_secret_replaces_the_defaults_either_way(tmp_path: Path) -> None:
    (tmp_path / "known_hosts").write_text("")
    (tmp_path / "r2.pw").write_text("own-password\n")
    text = DEFAULTS_TYPO.replace("knownhosts", "known_hosts").replace(
        "  - {name: r2, host: 192.0.2.2}", "  - {name: r2, host: 192.0.2.2, password_file: r2.pw}")
    os.environ["ROUTER_PW_UNSET_FOR_TEST"] = "shared-password"
    try:
        config = parse_config(text, base=tmp_path).config
    finally:
        del os.environ["ROUTER_PW_UNSET_FOR_TEST"]
    passwords = [r.password.reveal() if r.password else None for r in config.routers]
    assert passwords == ["shared-password", "own-password", "shared-password"]


def test_check_config_exit_codes_and_json(tmp_path: Path) -> None:
    missing = eemwatchd("check-config", "-c", "nope.yaml", "--json", cwd=tmp_path)
    assert missing.returncode == 2
    doc = json.loads(missing.stdout)
    assert doc["ok"] is False and doc["problems"] == ["cannot read the file (No such file or directory)"]
    (tmp_path / "bad.yaml").write_text("servers: [{name: s, host: h, port: 0}]\n")
    assert eemwatchd("check-config", "-c", "bad.yaml", cwd=tmp_path).returncode == 2
    (tmp_path / "known_hosts").write_text("")
    (tmp_path / "good.yaml").write_text(DEFAULTS_TYPO.replace("knownhosts", "known_hosts"))
    good = eemwatchd("check-config", "-c", "good.yaml", "--json", cwd=tmp_path,
                     env={"ROUTER_PW_UNSET_FOR_TEST": "x"})
    assert good.returncode == 0, good.stderr
    assert json.loads(good.stdout) == {"config": "good.yaml", "ok": True, "problems": [], "warnings": [],
                                       "servers": 1, "routers": 3, "prestaged": []}


# --- fetch on a name that does not resolve ------------------------------------------------------------------


def test_fetch_json_on_a_name_that_does_not_resolve(tmp_path: Path) -> None:
    done = eemwatchd("fetch", "nonexistent.invalid:2525", "--json", "--timeout", "5", cwd=tmp_path)
    assert done.returncode == 1
    doc = json.loads(done.stdout)
    assert doc["ok"] is False and doc["addresses"] == []
    assert "nonexistent.invalid" in doc["error"]
    assert "Traceback" not in done.stderr


# --- audit --verify without a store -----------------------------------------------------------------------


def test_audit_verify_on_a_missing_store_says_so_and_creates_nothing(tmp_path: Path) -> None:
    (tmp_path / "known_hosts").write_text("")
    (tmp_path / "c.yaml").write_text("state_path: state.db\n" + DEFAULTS_TYPO.replace("knownhosts", "known_hosts"))
    done = eemwatchd("audit", "-c", "c.yaml", "--verify", cwd=tmp_path, env={"ROUTER_PW_UNSET_FOR_TEST": "x"})
    assert done.returncode == 2
    assert "no state store at" in done.stderr and "nothing was created" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml", "known_hosts"]


# --- apply --json: one field per meaning ---------------------------------------------------------------------


def test_apply_json_result_is_the_reason_code_and_summary_the_words() -> None:
    plan = RouterPlan(actions=(Action("add", "EEMW-AB", "cc" * 32, "anchor"),
                               Action("add", "EEMW-CD", "dd" * 32, "intermediate")), reports=())
    failed = RouterResult("r1", reachable=True, applying=True, plan=plan, error="router r1: test-fire failed",
                          error_reason=Reason.TESTFIRE_FAILED,
                          steps=[AppliedStep(StepKind.ADD, "EEMW-AB", "cc" * 32, True, "anchor"),
                                 AppliedStep(StepKind.TEST_FIRE, None, None, False, "535 auth failed")])
    failed.result = summarize(failed)
    doc = failed.to_json()
    assert (doc["result"], doc["summary"]) == ("testfire-failed", "failed after 1 change(s)")
    assert "reason" not in doc  # apply's code is `result`; plan's is `reason`
    planned = RouterResult("r1", reachable=True, plan=plan).to_json()
    assert planned["reason"] == "drift" and "result" not in planned and "summary" not in planned


# --- wording of plan's report -------------------------------------------------------------------------------


def test_plan_words_a_failed_fetch_found_differences_and_kept_trustpoints() -> None:
    plan = RouterPlan(actions=(), reports=(
        Report("kept", "EEMW-OLD1", "not retired: the chain is not confirmed"),
        Report("kept", "EEMW-OLD2", "not retired: the chain is not confirmed"),
    ))
    router = RouterResult("r1", reachable=True, plan=plan, steps=[
        AppliedStep(StepKind.OBSERVED, "EEMW-NEW", "ee" * 32, True,
                    "observed-add: found on the router, not in the audit")])
    report = RunReport([ServerOutcome("gmail", (AddressOutcome("192.0.2.25", (), False, "connection refused"),))],
                       [router], [])
    out = io.StringIO()
    print_report(report, out=out)
    text = out.getvalue()
    assert "server gmail 192.0.2.25: fetch failed: connection refused\n" in text
    assert "verified" not in text
    assert "  note   kept EEMW-OLD1: not retired" in text and "  note   kept EEMW-OLD2: not retired" in text
    assert "  found  EEMW-NEW: observed-add: found on the router, not in the audit\n" in text
    assert "done" not in text


# --- alert noise: states are not faults ---------------------------------------------------------------------


def test_an_interrupted_router_raises_no_alert_and_resolves_nothing() -> None:
    plan = RouterPlan(actions=(Action("add", "EEMW-AB", "cc" * 32, "anchor"),), reports=())
    stopped = RouterResult("r1", reachable=True, applying=True, plan=plan,
                           error="interrupted (SIGINT) before add EEMW-AB", error_reason=Reason.INTERRUPTED)
    stopped.result = summarize(stopped)
    assert build_alerts(RunReport([], [stopped], []), at=NOW) == []


def test_a_not_onboarded_router_is_one_condition_naming_the_onboard_command() -> None:
    plan = RouterPlan(actions=(), reports=(Report("pending", None, "s 192.0.2.25 chain AA: seen 1 of 2 times"),),
                      waiting=("s 192.0.2.25 chain AA",), unprovable="applet MAIL is not configured on the router")
    alerts = build_alerts(RunReport([], [RouterResult("r9", reachable=True, plan=plan)], []), at=NOW)
    assert [(a.event, a.subject) for a in alerts] == [("router_drift", "r9")]
    assert alerts[0].summary.startswith("router r9 is not onboarded: applet MAIL is not configured")
    assert "`eemwatchd onboard -c FILE --router r9 --to ADDRESS --yes`" in alerts[0].summary
    assert alerts[0].details["reason"] == "not-onboarded"


def test_the_apply_timer_unit_counts_awaiting_confirmation_a_success() -> None:
    unit = (ROOT / "systemd" / "eemwatchd-apply.service").read_text()
    assert re.search(r"^SuccessExitStatus=3$", unit, re.MULTILINE)


# --- the command line ---------------------------------------------------------------------------------------


def _help(name: str) -> str:
    parser = build_parser()
    with pytest.raises(SystemExit), _stdout() as out:
        parser.parse_args([name, "--help"])
    return out.getvalue()


class _stdout:
    def __enter__(self) -> io.StringIO:
        self._saved, sys.stdout = sys.stdout, io.StringIO()
        return sys.stdout

    def __exit__(self, *exc: object) -> None:
        sys.stdout = self._saved


@pytest.mark.parametrize("name", [c.name for c in COMMANDS])
def test_every_command_has_a_description_and_config_help(name: str) -> None:
    text = _help(name)
    usage, _, rest = text.partition("\n\n")
    description, _, options = rest.partition("\n\noptions:")
    assert description.strip() and not description.startswith("options"), text
    if "-c FILE" in usage:
        line = re.search(r"-c FILE, --config FILE\s+(\S.*)", options)
        assert line is not None and "configuration file" in line.group(1), options


def test_verbose_is_accepted_after_the_command_too() -> None:
    assert build_parser().parse_args(["-v", "plan", "-c", "x", "-v"]).command_verbose == 1
    args = build_parser().parse_args(["check-config", "-vv", "-c", "x"])
    assert (args.verbose, args.command_verbose) == (0, 2)


def test_verbose_after_the_command_turns_on_info(tmp_path: Path) -> None:
    done = eemwatchd("check-config", "-c", "nope.yaml", "-v", cwd=tmp_path)
    assert done.returncode == 2 and "unrecognized arguments" not in done.stderr
