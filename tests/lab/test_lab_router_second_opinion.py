"""A second opinion on every dialogue the adapter uses: netmiko (an independent client, `cisco_xe`) drives the lab
router, and each exchange is compared with the real transcript lines in tests/transcripts/.

The lab router and the adapter are written by the same team; netmiko's prompt detection, paging setup
(`terminal width 511` / `terminal length 0`), `enable`, config mode and `save_config` are not.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from eemwatchd.core.ios.parsers import parse_event_history, parse_log_lines
from eemwatchd_lab.router import DeviceSpec, LabDevice, User
from tests.support.lab_router import PASSWORD, router_spec_for
from tests.support.transcripts import transcript_lines

netmiko = pytest.importorskip("netmiko")

SECRET = "en-secret-2"
QYTANG = "crypto_pki_authenticate_terminal_paste__gh_qytang_c8kv.txt"
T = TypeVar("T")


@pytest.fixture
def router_spec(tmp_path: Path) -> DeviceSpec:
    """CSR3, as in the transcripts, with a privilege-1 user and an enable secret."""
    return router_spec_for(tmp_path, hostname="CSR3", enable_secret=SECRET,
                           users=(User("admin", PASSWORD), User("oper", "oper-pw", privilege=1)))


async def _with_netmiko(router: LabDevice, flow: Callable[[Any], T], **options: object) -> T:
    """Run ``flow(connection)`` in a thread with a netmiko `cisco_xe` session, bounded in time."""

    def run() -> T:
        params: dict[str, object] = {
            "device_type": "cisco_xe", "host": "127.0.0.1", "port": router.port, "username": "admin",
            "password": PASSWORD, "conn_timeout": 5, "auth_timeout": 5, "banner_timeout": 5,
            "read_timeout_override": 10,
        }
        params.update(options)
        conn = netmiko.ConnectHandler(**params)
        try:
            return flow(conn)
        finally:
            conn.disconnect()

    return await asyncio.wait_for(asyncio.to_thread(run), 40)


def _lines(text: str) -> list[str]:
    return text.replace("\r", "").split("\n")


def _qytang() -> tuple[list[str], list[str]]:
    """(the pasted PEM lines, the whole dialogue) of the C8000v `crypto pki authenticate DTLS` capture."""
    real = transcript_lines(QYTANG)
    begin, end = real.index("-----BEGIN CERTIFICATE-----"), real.index("-----END CERTIFICATE-----")
    return real[begin : end + 1], real


async def test_login_with_and_without_enable_and_paging(router: LabDevice) -> None:
    def privileged(conn: Any) -> tuple[str, str, bool]:
        return conn.find_prompt(), conn.send_command("show running-config"), conn.check_enable_mode()

    prompt, running, enabled = await _with_netmiko(router, privileged)
    assert (prompt, enabled) == ("CSR3#", True)
    # netmiko disabled paging itself (`terminal length 0`): the whole config, no pager debris
    assert "--More--" not in running
    assert running.rstrip().endswith("end")
    head = transcript_lines("show_running-config_head__gh_ansible_facts_csr1000v_17_3.txt")
    assert _lines(running)[:2] == head[:2]  # `Building configuration...`, blank
    assert re.fullmatch(r"Current configuration : \d+ bytes", _lines(running)[2])
    assert re.fullmatch(r"Current configuration : \d+ bytes", head[2])

    def via_enable(conn: Any) -> tuple[str, str]:
        before = conn.find_prompt()
        conn.enable()
        return before, conn.find_prompt()

    before, after = await _with_netmiko(router, via_enable, username="oper", password="oper-pw", secret=SECRET)
    assert (before, after) == ("CSR3>", "CSR3#")


async def test_config_mode_and_the_authenticate_paste_are_the_c8kv_transcript(router: LabDevice) -> None:
    pem, real = _qytang()

    def flow(conn: Any) -> tuple[str, str]:
        entered = conn.config_mode()
        conn.send_config_set(["crypto pki trustpoint DTLS", "enrollment terminal", "revocation-check none", "exit"],
                             exit_config_mode=False)
        out = conn.send_command("crypto pki authenticate DTLS", expect_string=r"on a line by itself",
                                cmd_verify=False)
        # the paste ends with a blank line, as in the capture (send_command would strip it)
        conn.write_channel("\n".join(pem) + "\n\n")
        out += conn.read_until_pattern(r"\[yes/no\]: ", read_timeout=10)
        # strip_command=False: keep the router's echo of the answer, as the capture shows it
        out += conn.send_command("yes", expect_string=r"\(config\)#", cmd_verify=False, strip_command=False)
        conn.exit_config_mode()
        return entered, out

    entered, out = await _with_netmiko(router, flow)
    # the banner of config mode, with its two spaces (eem_applet_mail_fmpd_smtp_error__gh_iosv.txt)
    banner = next(ln for ln in transcript_lines("eem_applet_mail_fmpd_smtp_error__gh_iosv.txt") if "one per line" in ln)
    assert banner in _lines(entered)
    assert "CSR3(config)#" in entered
    got = [ln for ln in _lines(out) if ln.strip()]
    want = [ln for ln in real[1:] if ln.strip() and ln not in pem]
    # banner, fingerprints of the SAME certificate (byte for byte), the question, the answer, accepted, imported
    assert [ln for ln in got if ln not in pem][: len(want)] == want
    assert router.state.trustpoints["DTLS"].ca_cert is not None


async def test_no_trustpoint_confirmation_is_the_c9800_transcript(router: LabDevice) -> None:
    real = transcript_lines("no_crypto_pki_trustpoint__genielibs_wsim_c9800.txt")
    start = next(i for i, ln in enumerate(real) if ln.endswith("#no crypto pki trustpoint manual_certs"))
    stop = next(i for i, ln in enumerate(real) if i > start and ln.endswith("#crypto key zeroize rsa manual_certs"))
    # WSIM echoes the answer a second time (`y` on its own line): that is the tool's, not the router's
    want = [ln for ln in real[start + 1 : stop] if ln != "y"]
    pem, _ = _qytang()

    def flow(conn: Any) -> str:
        conn.config_mode()
        conn.send_config_set(["crypto pki trustpoint manual_certs", "enrollment terminal", "exit"],
                             exit_config_mode=False)
        conn.send_command("crypto pki authenticate manual_certs", expect_string=r"by itself", cmd_verify=False)
        conn.write_channel("\n".join(pem) + "\n\n")
        conn.read_until_pattern(r"\[yes/no\]: ", read_timeout=10)
        conn.send_command("yes", expect_string=r"\(config\)#", cmd_verify=False)
        out = conn.send_command("no crypto pki trustpoint manual_certs", expect_string=r"\[yes/no\]: ",
                                cmd_verify=False)
        out += conn.send_command("y", expect_string=r"\(config\)#", cmd_verify=False, strip_command=False)
        conn.exit_config_mode()
        return out

    out = await _with_netmiko(router, flow)
    got = _lines(out)
    # netmiko strips the echoed command line; the rest is the router's text, line for line
    assert got[: len(want)] == want
    assert "manual_certs" not in router.state.trustpoints


async def test_event_manager_run_send_log_history_and_write_memory(router: LabDevice) -> None:
    router.state.apply_config([
        "event manager applet TICK",
        " event none",
        ' action 1.0 syslog msg "tick"',
    ])

    def flow(conn: Any) -> dict[str, str]:
        out = {
            "send log": conn.send_command_timing("send log 6 second-opinion-marker"),
            "run": conn.send_command("event manager run TICK"),
        }
        for _ in range(50):  # the job ends within milliseconds; poll like the adapter does
            out["history"] = conn.send_command("show event manager history events")
            if "applet: TICK" in out["history"]:
                break
        out["logging"] = conn.send_command("show logging")
        out["write"] = conn.send_command("write memory", expect_string=r"#", read_timeout=10)
        out["copy"] = conn.send_command_timing("copy running-config startup-config")
        if "Destination filename" in out["copy"]:
            out["copy"] += conn.send_command_timing("\n")
        out["save"] = conn.save_config()
        return out

    out = await _with_netmiko(router, flow)
    # `send log` and `event manager run` print nothing (send_log_severity_userlog__gh_rt01_iol.txt,
    # event_manager_run__genielibs_c9500_mock.txt: the recorded response is '')
    assert out["send log"].strip() in ("", "CSR3#")
    assert out["run"].strip() == ""
    # the USERLOG line as a 7200 logged it for an SSH user (send_log_userlog_info_vty__gh_lambreca_cmdrunner.txt)
    real_user = transcript_lines("send_log_userlog_info_vty__gh_lambreca_cmdrunner.txt")[0]
    entries = parse_log_lines(out["logging"], marker="second-opinion-marker")
    marker = next(ln for ln in _lines(out["logging"]) if "second-opinion-marker" in ln)
    shape = re.compile(r"\*\w{3} +\d+ (?:\d{4} )?[\d:.]+: %SYS-6-USERLOG_INFO: Message from tty\d\(user id: \S+\): ")
    assert shape.match(real_user) and shape.match(marker)
    assert [(e.tag, e.message) for e in entries] == [("%HA_EM-6-LOG", "TICK: tick")]
    # history header as the rolling-pcap capture, our row read back by the product's parser
    header = transcript_lines("show_event_manager_history_events__gh_rolling_pcap_iosxe.txt")[2]
    assert header in _lines(out["history"])
    (row,) = parse_event_history(out["history"])
    assert (row.status, row.name) == ("success", "TICK")
    # write memory / copy: `Building configuration...` then `[OK]`
    # (copy_running-config_startup-config__gh_cm-s6-h001.txt)
    copy_real = transcript_lines("copy_running-config_startup-config__gh_cm-s6-h001.txt")
    assert [ln for ln in _lines(out["write"]) if ln.strip()][:2] == copy_real[2:4]
    assert "Destination filename [startup-config]? " in out["copy"].replace("\r", "") + "\n"
    assert copy_real[1] == "Destination filename [startup-config]? "
    assert "[OK]" in out["copy"] and "[OK]" in out["save"]
    assert (router.spec.state_dir / "startup-config").exists()
